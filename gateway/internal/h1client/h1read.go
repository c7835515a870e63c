package h1client

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/basaltplatform/basalt/gateway/internal/httpwire"
)

// maxResponseHeaderBytes bounds the status line and header block of one answer.
const maxResponseHeaderBytes = 1 << 20

// errMalformed is the cause of every answer the lean transport refuses to parse.
var errMalformed = errors.New("h1client: malformed HTTP/1.1 response")

// readResponse reads the answer to req from br. It allocates what it must once per answer:
// the header block is copied into a single string that every key and value of the header
// points into, where net/http's reader allocates a string per line. Informational (1xx)
// answers are skipped. A body framed by both Content-Length and chunked encoding, or by two
// different lengths, is refused, since a proxy that guessed would let an upstream smuggle a
// second answer into the connection.
func readResponse(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	for {
		resp, err := readHead(br, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue
		}
		return resp, setBody(resp, br)
	}
}

// readHead reads the status line and the header block.
func readHead(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	head, err := readBlock(br)
	if err != nil {
		return nil, err
	}
	status, rest, _ := strings.Cut(head, "\n")
	resp, err := parseStatus(strings.TrimSuffix(status, "\r"), req)
	if err != nil {
		return nil, err
	}
	h, err := parseHeader(rest)
	if err != nil {
		return nil, err
	}
	resp.Header = h
	return resp, nil
}

// readBlock reads lines up to and including the first empty one, as one string. The block of
// a small answer arrives in one read, and is then copied out of the buffer once.
func readBlock(br *bufio.Reader) (string, error) {
	block, err := peekBlock(br)
	return string(block), err
}

// peekBlock reads lines up to and including the first empty one. The block is valid until the
// next read from br: a block that arrived whole is left in br's buffer.
func peekBlock(br *bufio.Reader) ([]byte, error) {
	if _, err := br.Peek(1); err != nil {
		return nil, err
	}
	if buf, _ := br.Peek(br.Buffered()); len(buf) > 0 {
		if end := blockEnd(buf); end > 0 {
			_, _ = br.Discard(end)
			return buf[:end], nil
		}
	}
	var block []byte
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return nil, fmt.Errorf("%w: a header line is too long", errMalformed)
			}
			if len(block) > 0 && err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		block = append(block, line...)
		if len(block) > maxResponseHeaderBytes {
			return nil, fmt.Errorf("%w: the header block is too large", errMalformed)
		}
		if len(block) > len(line) && (len(line) == 1 || (len(line) == 2 && line[0] == '\r')) {
			return block, nil
		}
	}
}

// blockEnd returns the length of the block in buf that ends with its first empty line, or 0
// when buf holds no empty line yet. Answers end their lines with CRLF, which a vectorised search
// finds; a block with bare LF line ends is looked for byte by byte.
func blockEnd(buf []byte) int {
	if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 && onlyCRLF(buf[:i+2]) {
		return i + 4
	}
	for i := 0; i < len(buf); i++ {
		if buf[i] != '\n' {
			continue
		}
		switch {
		case i+1 < len(buf) && buf[i+1] == '\n':
			return i + 2
		case i+2 < len(buf) && buf[i+1] == '\r' && buf[i+2] == '\n':
			return i + 3
		}
	}
	return 0
}

// onlyCRLF reports whether every line of b ends with CRLF, so that its first empty line can be
// found by looking for CRLF CRLF.
func onlyCRLF(b []byte) bool {
	for off := 0; ; {
		j := bytes.IndexByte(b[off:], '\n')
		if j < 0 {
			return true
		}
		if off+j == 0 || b[off+j-1] != '\r' {
			return false
		}
		off += j + 1
	}
}

// parseStatus reads "HTTP/1.x 200 OK".
func parseStatus(line string, req *http.Request) (*http.Response, error) {
	code, minor, err := parseStatusLine(line)
	if err != nil {
		return nil, err
	}
	proto, rest, _ := strings.Cut(line, " ")
	return &http.Response{
		Status: rest, StatusCode: code, Proto: proto, ProtoMajor: 1, ProtoMinor: minor,
		Request: req, Close: minor == 0,
	}, nil
}

// parseStatusLine returns the status code and the protocol's minor version of a status line.
func parseStatusLine(line string) (code, minor int, err error) {
	proto, rest, ok := strings.Cut(line, " ")
	if !ok {
		return 0, 0, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	major, minor, ok := http.ParseHTTPVersion(proto)
	if !ok || major != 1 {
		return 0, 0, fmt.Errorf("%w: protocol %q", errMalformed, proto)
	}
	codeText, _, _ := strings.Cut(rest, " ")
	if len(codeText) != 3 {
		return 0, 0, fmt.Errorf("%w: status %q", errMalformed, codeText)
	}
	code, err = strconv.Atoi(codeText)
	if err != nil || code < 100 {
		return 0, 0, fmt.Errorf("%w: status %q", errMalformed, codeText)
	}
	return code, minor, nil
}

// parseHeader reads the header lines of block, which ends with its empty line. Keys in
// canonical form, which every Go server sends, are used as they are.
func parseHeader(block string) (http.Header, error) {
	lines := strings.Count(block, "\n") - 1
	h := make(http.Header, lines)
	values := make([]string, 0, lines)
	err := headerLines(block, func(k, v string) {
		k = textproto.CanonicalMIMEHeaderKey(k)
		if vv, seen := h[k]; seen {
			// A repeated key gets a slice of its own, so that appending to it cannot overwrite
			// the value of the key after it in the shared backing array.
			h[k] = append(vv[:len(vv):len(vv)], v)
			return
		}
		values = append(values, v)
		h[k] = values[len(values)-1 : len(values) : len(values)]
	})
	if err != nil {
		return nil, err
	}
	return h, nil
}

// headerLines calls fn with the key, as sent, and the trimmed value of each header line of
// block, up to its empty line. It refuses folded lines and keys that are not tokens.
func headerLines(block string, fn func(k, v string)) error {
	for {
		k, v, rest, err := nextHeader(block)
		if err != nil || k == "" {
			return err
		}
		fn(k, v)
		block = rest
	}
}

// nextHeader splits the first header line off block: its key as sent, its trimmed value and
// the lines after it. The key is empty at the block's empty line or end.
func nextHeader(block string) (k, v, rest string, err error) {
	line, rest, _ := strings.Cut(block, "\n")
	k, v, err = parseField(strings.TrimSuffix(line, "\r"))
	return k, v, rest, err
}

// parseField splits a header line into its key as sent and its trimmed value; both are empty
// for the empty line. Folded lines, keys that are not tokens and values with control characters
// (a carriage return in a line ended by a bare line feed, say) are refused, as net/http's reader
// refuses them.
func parseField(line string) (k, v string, err error) {
	if line == "" {
		return "", "", nil
	}
	if line[0] == ' ' || line[0] == '\t' {
		return "", "", fmt.Errorf("%w: a folded header line", errMalformed)
	}
	k, v, ok := strings.Cut(line, ":")
	if v = httpwire.TrimSpace(v); !ok || !httpwire.ValidName(k) || !httpwire.ValidValue(v) {
		return "", "", fmt.Errorf("%w: header line %q", errMalformed, line)
	}
	return k, v, nil
}

// setBody frames the answer's body: none, a length, chunks (with trailers), or, for an answer
// without either, everything until the upstream closes the connection.
func setBody(resp *http.Response, br *bufio.Reader) error {
	if tokens(resp.Header["Connection"], "close") {
		resp.Close = true
	}
	noBody := resp.Request.Method == http.MethodHead || !statusHasBody(resp.StatusCode)
	n, chunked, err := bodyFraming(resp.Header["Transfer-Encoding"], resp.Header["Content-Length"])
	switch {
	case err != nil:
		return err
	case chunked:
		delete(resp.Header, "Transfer-Encoding")
		resp.TransferEncoding = chunkedEncoding
		resp.ContentLength = -1
		if noBody {
			resp.Body = http.NoBody
			return nil
		}
		resp.Body = &chunkedBody{r: httputil.NewChunkedReader(br), br: br, trailer: &resp.Trailer}
	case noBody || n == 0:
		resp.Body, resp.ContentLength = http.NoBody, max(n, 0)
	case n > 0:
		resp.ContentLength = n
		resp.Body = &lengthBody{r: io.LimitedReader{R: br, N: n}}
	default:
		resp.ContentLength, resp.Close = -1, true
		resp.Body = io.NopCloser(br)
	}
	return nil
}

// statusHasBody reports whether an answer with status may carry a body.
func statusHasBody(status int) bool {
	return status != http.StatusNoContent && status != http.StatusNotModified && status != http.StatusSwitchingProtocols
}

// bodyFraming reads how a body is framed from the Transfer-Encoding and Content-Length values:
// its length, chunks (chunked), or, with neither, -1 for everything until the connection
// closes.
func bodyFraming(te, cl []string) (n int64, chunked bool, err error) {
	switch {
	case len(te) > 0 && len(cl) > 0:
		return 0, false, fmt.Errorf("%w: both Transfer-Encoding and Content-Length", errMalformed)
	case len(te) > 0:
		if len(te) != 1 || !strings.EqualFold(strings.TrimSpace(te[0]), "chunked") {
			// The values are copied into the message so that te, often the caller's array,
			// need not move to the heap.
			return 0, false, fmt.Errorf("%w: transfer encoding %q", errMalformed, strings.Join(te, ", "))
		}
		return -1, true, nil
	case len(cl) > 0:
		n, err := contentLength(cl)
		return n, false, err
	default:
		return -1, false, nil
	}
}

var chunkedEncoding = []string{"chunked"}

// contentLength reads a Content-Length, which may be repeated only with one value.
func contentLength(values []string) (int64, error) {
	first := strings.TrimSpace(values[0])
	for _, v := range values[1:] {
		if strings.TrimSpace(v) != first {
			return 0, fmt.Errorf("%w: conflicting Content-Length values", errMalformed)
		}
	}
	n, err := strconv.ParseInt(first, 10, 64)
	if err != nil || n < 0 || first[0] == '+' {
		return 0, fmt.Errorf("%w: Content-Length %q", errMalformed, first)
	}
	return n, nil
}

// tokens reports whether the comma-separated values hold token.
func tokens(values []string, token string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// lengthBody is a body of known length; reading its last byte reports io.EOF at once, so the
// connection can go back to the pool without another read.
type lengthBody struct {
	r io.LimitedReader
}

func (b *lengthBody) Read(p []byte) (int, error) {
	if b.r.N == 0 {
		return 0, io.EOF
	}
	n, err := b.r.Read(p)
	if err == io.EOF {
		return n, io.ErrUnexpectedEOF
	}
	if err == nil && b.r.N == 0 {
		err = io.EOF
	}
	return n, err
}

func (b *lengthBody) Close() error { return nil }

// chunkedBody reads a chunked body and then its trailer section.
type chunkedBody struct {
	r  io.Reader
	br *bufio.Reader
	// trailer receives the trailer section; nil discards it.
	trailer *http.Header
	err     error
}

func (b *chunkedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.r.Read(p)
	if err == io.EOF {
		if terr := b.readTrailer(); terr != nil {
			err = terr
		}
	}
	if err != nil {
		b.err = err
	}
	return n, err
}

// readTrailer reads the trailer lines after the last chunk, up to the empty line that ends
// the answer.
func (b *chunkedBody) readTrailer() error {
	var block []byte
	for {
		line, err := b.br.ReadSlice('\n')
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		block = append(block, line...)
		if len(block) > maxResponseHeaderBytes {
			return fmt.Errorf("%w: the trailer block is too large", errMalformed)
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break
		}
	}
	if len(block) <= 2 {
		return nil
	}
	t, err := parseHeader(string(block))
	if err != nil {
		return err
	}
	if b.trailer != nil {
		*b.trailer = t
	}
	return nil
}

func (b *chunkedBody) Close() error { return nil }
