package proxy

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"

	"connectrpc.com/connect"
)

// A compressed request is bounded by its inflated size: the limit is on what a message holds,
// and a megabyte of gzip can hold a gigabyte. The gateway forwards Connect, gRPC and gRPC-Web
// calls without inflating them, so for those it inflates a compressed message only to count
// its bytes, into nothing, and stops one byte past the limit; a message that reaches it is
// refused with ErrTooLarge before the service sees it. REST bodies are inflated for the
// transcoder, which would otherwise inflate them without a bound (see Limited).
//
// Only gzip is inflated: it is the one encoding the platform's services accept (connect-go's
// default). A body in another encoding passes to the service as it came, which refuses an
// encoding it does not know or bounds its own; the gateway inflates nothing then. A body that
// does not inflate passes too, for the service to say what is wrong with it.

// gzipEncoding is the name of the encoding the gateway inflates, in every protocol's header.
const gzipEncoding = "gzip"

var gzipReaders sync.Pool

// CheckCompressed returns ErrTooLarge when data, compressed with encoding, inflates to more
// than limit bytes. It inflates at most limit+1 bytes, and keeps none of them.
func CheckCompressed(encoding string, data []byte, limit int64) error {
	if encoding != gzipEncoding || len(data) == 0 {
		return nil
	}
	src := bytes.NewReader(data)
	zr, _ := gzipReaders.Get().(*gzip.Reader)
	var err error
	if zr == nil {
		zr, err = gzip.NewReader(src)
	} else {
		err = zr.Reset(src)
	}
	if err != nil {
		return nil
	}
	defer gzipReaders.Put(zr)
	n, _ := io.Copy(io.Discard, io.LimitReader(zr, limit+1))
	if n > limit {
		return ErrTooLarge
	}
	return nil
}

// messageEncoding returns the encoding of the compressed messages of an enveloped call, from
// its protocol's header.
func messageEncoding(h http.Header) string {
	if strings.HasPrefix(h.Get("Content-Type"), "application/connect+") {
		return h.Get("Connect-Content-Encoding")
	}
	return h.Get("Grpc-Encoding")
}

// checkBody checks the inflated size of a whole request body, read before forwarding: each
// compressed message of an enveloped one, or the body of a Connect unary call.
func (p *Proxy) checkBody(r *http.Request, body []byte) error {
	if !enveloped(r.Header) {
		return CheckCompressed(r.Header.Get("Content-Encoding"), body, p.maxBody)
	}
	encoding := messageEncoding(r.Header)
	if encoding != gzipEncoding {
		return nil
	}
	for len(body) >= 5 {
		flags, size := body[0], uint64(binary.BigEndian.Uint32(body[1:5]))
		body = body[5:]
		if size > uint64(len(body)) {
			// A message cut short is the service's to refuse.
			return nil
		}
		if flags&1 != 0 {
			if err := CheckCompressed(encoding, body[:size], p.maxBody); err != nil {
				return err
			}
		}
		body = body[size:]
	}
	return nil
}

// checkQuery checks the inflated size of the message a Connect GET carries in its query.
func (p *Proxy) checkQuery(r *http.Request) error {
	if !strings.Contains(r.URL.RawQuery, "compression=") {
		return nil
	}
	q := r.URL.Query()
	if q.Get("compression") != gzipEncoding {
		return nil
	}
	msg := []byte(q.Get("message"))
	if q.Get("base64") == "1" {
		decoded, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(string(msg), "="))
		if err != nil {
			return nil
		}
		msg = decoded
	}
	return CheckCompressed(gzipEncoding, msg, p.maxBody)
}

// Limited returns body bounded to limit bytes as it is read; with encoding gzip, it returns
// the body inflated, and both the compressed and the inflated bytes are bounded. Past the
// limit a read returns ErrTooLarge, and tooLarge is called first. A body that does not inflate
// reads as gzip's error, which is the client's invalid request.
func Limited(body io.ReadCloser, encoding string, limit int64, tooLarge func()) io.ReadCloser {
	return &limitedBody{raw: body, in: bounded{r: body, left: limit}, gzip: encoding == gzipEncoding, limit: limit, tooLarge: tooLarge}
}

type limitedBody struct {
	raw io.ReadCloser
	// in is the body as it came, and out what zr inflates from it, once the first read made zr.
	in, out  bounded
	zr       *gzip.Reader
	gzip     bool
	limit    int64
	tooLarge func()
	err      error
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	r := &b.in
	if b.gzip {
		if b.zr == nil {
			zr, err := gzip.NewReader(&b.in)
			if err != nil {
				return 0, b.fail(err)
			}
			b.zr, b.out = zr, bounded{r: zr, left: b.limit}
		}
		r = &b.out
	}
	n, err := r.Read(p)
	if err != nil && err != io.EOF {
		return n, b.fail(err)
	}
	return n, err
}

// fail makes err the body's last word, telling tooLarge when it is ErrTooLarge.
func (b *limitedBody) fail(err error) error {
	b.err = err
	if errors.Is(err, ErrTooLarge) && b.tooLarge != nil {
		b.tooLarge()
	}
	return err
}

func (b *limitedBody) Close() error { return b.raw.Close() }

// bounded reads r until left bytes were read, and then refuses to read more.
type bounded struct {
	r    io.Reader
	left int64
}

func (l *bounded) Read(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	if int64(n) > l.left {
		return 0, ErrTooLarge
	}
	l.left -= int64(n)
	return n, err
}

// WriteError answers r with err in its protocol through ew. A request too large is answered
// with HTTP 413 where the protocol's status carries the code (Connect's unary calls), rather
// than the 429 Connect gives resource_exhausted: that one says "later", and a retry of the
// same request would be refused the same way. gRPC, gRPC-Web and Connect's streams carry the
// code in their trailers, under status 200.
func WriteError(ew *connect.ErrorWriter, w http.ResponseWriter, r *http.Request, err error) error {
	if errors.Is(err, ErrTooLarge) {
		w = tooLargeWriter{w}
	}
	return ew.Write(w, r, err)
}

// tooLargeWriter turns the status Connect gives resource_exhausted into 413.
type tooLargeWriter struct{ http.ResponseWriter }

func (w tooLargeWriter) WriteHeader(code int) {
	if code == http.StatusTooManyRequests {
		code = http.StatusRequestEntityTooLarge
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w tooLargeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
