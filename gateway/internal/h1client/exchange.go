package h1client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"time"

	"github.com/basaltplatform/basalt/kernel/discovery"
	"github.com/basaltplatform/basalt/kernel/rpcclient"

	"github.com/basaltplatform/basalt/gateway/internal/httpwire"
)

// Balancer chooses the instances an exchange goes to. The kernel's rpcclient.Client is one: its
// Send brings the balancing, retries and passive health checks of the services' clients to
// calls it does not send itself.
type Balancer interface {
	Send(ctx context.Context, service string, idempotent bool, a rpcclient.Attempter) error
}

var _ Balancer = (*rpcclient.Client)(nil)

// RequestWriter writes one HTTP/1.1 request, request line to body, for an instance at host.
// It is called again when the call is sent to another instance, and must write the same call.
type RequestWriter interface {
	WriteRequest(w *bufio.Writer, host string) error
}

// Exchange describes a unary call that its caller writes in HTTP/1.1 wire format itself: a
// proxy that already holds a request's bytes forwards it this way without building net/http's
// request and response, and without a goroutine or a context per call. The answer is read as the
// answer to a request that may have a body: a HEAD request cannot be sent this way.
type Exchange struct {
	// Request writes the call.
	Request RequestWriter
	// Idempotent allows sending the call to another instance after its connection broke.
	Idempotent bool
	// Deadline bounds every read and write of the call; zero leaves it unbounded. The bound
	// may fall later by a 32nd of the time left, at most a second, so that calls in quick
	// succession on one connection share a deadline rather than each setting its own.
	Deadline time.Time
	// Start is when the caller began the call, if it read the clock for it already; the first
	// attempt takes it as the time now rather than read the clock again. Zero reads the clock.
	Start time.Time
}

// deadlineSlack divides the time left to a call into what its connection's deadline may
// overrun it by.
const deadlineSlack = 32

// Answer is an upstream's answer to an Exchange. Its body must be read to the end and the
// answer closed for its connection to be used again. Its headers are valid until Close.
type Answer struct {
	// Status is the HTTP status.
	Status int
	// ContentLength is the body's length, or -1 when it arrives in chunks or until the
	// connection closes.
	ContentLength int64
	answerState
	// pending is the exchange under way, which Attempt sends to each instance tried.
	pending pending
}

// pending is what an Answer's exchange sends: a copy of the caller's Exchange rather than a
// pointer to it, so that the caller's may stay on its stack.
type pending struct {
	t       *Transport
	service string
	x       Exchange
}

// maxKeptFields is the most header fields a connection remembers of its last answer.
const maxKeptFields = 64

// answerState is what an exchange sets anew in its answer.
type answerState struct {
	body   io.Reader
	length lengthBody
	chunks chunkedBody
	conn   *h1Conn
	t      *Transport
	// fields are the answer's header fields: the connection's memo of them, which is the
	// answer's until Close gives the connection back, rather than a copy.
	fields []answerField
	// start is when the exchange began, which the connection counts as idle since when it
	// returns to the pool, rather than read the clock again.
	start time.Time
	timed bool
	keep  bool
	eof   bool
	done  bool
}

// ErrDeadline is the cause of an exchange that outlived its deadline.
var ErrDeadline = fmt.Errorf("h1client: the call's deadline passed: %w", context.DeadlineExceeded)

// Exchange sends x to an instance of service that b chooses, over a pooled HTTP/1.1
// connection, and reads the head of its answer into a. The service must be served over plain
// http.
func (t *Transport) Exchange(ctx context.Context, b Balancer, service string, x *Exchange, a *Answer) error {
	a.pending = pending{t: t, service: service, x: *x}
	// The Answer, which the caller holds already, is the Attempter: a function would be
	// allocated for every call, since b's Send is called through an interface.
	err := b.Send(ctx, service, x.Idempotent, (*attempter)(a))
	a.pending = pending{}
	return err
}

// attempter is an Answer as the rpcclient.Attempter of its pending exchange.
type attempter Answer

// Attempt sends the pending exchange to ep.
func (p *attempter) Attempt(ctx context.Context, ep discovery.Endpoint, attempt int) (int, error) {
	a := (*Answer)(p)
	t, x := a.pending.t, &a.pending.x
	if ep.Scheme != "" && ep.Scheme != "http" {
		return 0, rpcclient.Refused(fmt.Errorf("h1client: %s is served over %s; exchanges need plain http", a.pending.service, ep.Scheme))
	}
	now := x.Start
	if attempt > 1 || now.IsZero() {
		now = t.now()
	}
	if err := t.exchange(ctx, ep.Host, x, a, now); err != nil {
		return 0, err
	}
	return a.Status, nil
}

// exchange makes one attempt of x on a connection to host, at now.
func (t *Transport) exchange(ctx context.Context, host string, x *Exchange, a *Answer, now time.Time) error {
	a.Status, a.ContentLength = 0, 0
	a.answerState = answerState{t: t}
	var slack time.Duration
	if !x.Deadline.IsZero() {
		left := x.Deadline.Sub(now)
		if left <= 0 {
			// Nothing was sent, and the instance is not to blame.
			return rpcclient.Refused(ErrDeadline)
		}
		slack = min(left/deadlineSlack, time.Second)
	}
	c, reused, err := t.get(ctx, host, x.Deadline, now)
	if err != nil {
		if !x.Deadline.IsZero() && errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return fmt.Errorf("h1client: dial %s: %w", host, ErrDeadline)
		}
		return err
	}
	c.setDeadline(x.Deadline, slack)
	a.timed = !x.Deadline.IsZero()
	fail := func(op string, err error) error {
		c.nc.Close()
		if a.timed && isTimeout(err) {
			return ErrDeadline
		}
		return t.failure(ctx, op, host, err, reused)
	}
	if err := x.Request.WriteRequest(c.bw, host); err != nil {
		return fail("write", err)
	}
	if err := c.send(); err != nil {
		return fail("write", err)
	}
	if err := a.readHead(c); err != nil {
		if werr := c.unsent(err); werr != nil {
			return fail("write", werr)
		}
		return fail("read", err)
	}
	a.conn, a.start = c, now
	return nil
}

// readHead reads the status line and header block, skipping informational answers, and frames
// the body. The lines come through the connection's Lines, so that those an upstream repeats
// from one answer to the next are not copied again, and what was parsed from a repeated line
// is taken from the connection's memo rather than parsed again.
func (a *Answer) readHead(c *h1Conn) error {
	for {
		split, err := c.head()
		if err != nil {
			return err
		}
		m := &c.memo
		if !m.valid || !c.lines.Same(0) {
			// The memo is marked invalid until every line of this block is in it, so that an
			// answer refused part-way leaves nothing behind that a later one could take.
			m.valid = false
			m.status, m.minor, err = parseStatusLine(split[0])
			if err != nil {
				return err
			}
		}
		code, minor := m.status, m.minor
		if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
			m.valid = false
			continue
		}
		var te, cl [2]string
		var nte, ncl int
		closing := minor == 0
		reuse := m.valid
		m.valid = false
		m.fields = resizeFields(m.fields, len(split)-1)
		for i, line := range split[1:] {
			f := &m.fields[i]
			if !reuse || !c.lines.Same(i+1) {
				k, v, err := parseField(line)
				if err != nil {
					return err
				}
				*f = answerField{name: k, value: v, kind: kindOf(k)}
			}
			switch f.kind {
			case contentLengthField:
				if ncl < len(cl) {
					cl[ncl] = f.value
				}
				ncl++
			case transferEncodingField:
				if nte < len(te) {
					te[nte] = f.value
				}
				nte++
			case connectionField:
				closing = closing || tokens([]string{f.value}, "close")
			}
		}
		a.fields = m.fields
		if cap(m.fields) > maxKeptFields {
			// An answer with unusually many fields is not remembered.
			m.fields = nil
		} else {
			m.valid = true
		}
		if ncl > len(cl) || nte > len(te) {
			return fmt.Errorf("%w: repeated framing headers", errMalformed)
		}
		n, chunked, err := bodyFraming(te[:nte], cl[:ncl])
		if err != nil {
			return err
		}
		a.Status, a.keep = code, !closing
		switch {
		case !statusHasBody(a.Status) || n == 0:
			a.ContentLength, a.eof = 0, true
		case chunked:
			a.ContentLength = -1
			a.chunks = chunkedBody{r: httputil.NewChunkedReader(c.br), br: c.br}
			a.body = &a.chunks
		case n > 0:
			a.ContentLength = n
			a.length = lengthBody{r: io.LimitedReader{R: c.br, N: n}}
			a.body = &a.length
		default:
			a.ContentLength, a.keep = -1, false
			a.body = c.br
		}
		return nil
	}
}

// headMemo is what readHead parsed from a connection's last answer head, line by line, for the
// next answer, whose lines mostly repeat: the status line's code and version, and each field
// line's name, value and framing role. It is valid only when it describes every line of the
// last head Lines found.
type headMemo struct {
	valid         bool
	status, minor int
	fields        []answerField
}

// answerField is one field line of an answer head, parsed.
type answerField struct {
	name, value string
	kind        fieldKind
}

// fieldKind tells the headers that frame an answer, and the other hop-by-hop headers, from the
// end-to-end ones.
type fieldKind uint8

const (
	endToEndField fieldKind = iota
	contentLengthField
	transferEncodingField
	connectionField
	hopByHopField
)

// kindOf returns the kind of a header named k, in any case.
func kindOf(k string) fieldKind {
	switch {
	case len(k) == len("Content-Length") && strings.EqualFold(k, "Content-Length"):
		return contentLengthField
	case len(k) == len("Transfer-Encoding") && strings.EqualFold(k, "Transfer-Encoding"):
		return transferEncodingField
	case len(k) == len("Connection") && strings.EqualFold(k, "Connection"):
		return connectionField
	case httpwire.HopByHop(k):
		return hopByHopField
	}
	return endToEndField
}

// resizeFields returns f with length n, keeping what it holds and clearing what it no longer
// does.
func resizeFields(f []answerField, n int) []answerField {
	if n <= cap(f) {
		if n < len(f) {
			clear(f[n:])
		}
		return f[:n]
	}
	grown := make([]answerField, n, n+n/2)
	copy(grown, f)
	return grown
}

// EndToEnd calls fn, until it returns false, with each header a proxy passes on, its key as
// sent and its value trimmed: all but the hop-by-hop ones (RFC 9110, section 7.6.1) and
// Content-Length, since a proxy frames the body anew. Which kind a header is was found when
// its line first arrived on the connection.
func (a *Answer) EndToEnd(fn func(k, v string) bool) {
	for _, f := range a.fields {
		if f.kind == endToEndField && !fn(f.name, f.value) {
			return
		}
	}
}

// Read reads the body.
func (a *Answer) Read(p []byte) (int, error) {
	if a.eof {
		return 0, io.EOF
	}
	if a.done || a.body == nil {
		return 0, net.ErrClosed
	}
	n, err := a.body.Read(p)
	switch {
	case err == io.EOF:
		a.eof = true
	case err != nil:
		a.keep = false
		if a.timed && isTimeout(err) {
			err = ErrDeadline
		}
	}
	return n, err
}

// Close releases the connection: back to the pool when the body was read to the end, closed
// otherwise.
func (a *Answer) Close() error {
	if a.done || a.conn == nil {
		return nil
	}
	a.done = true
	c := a.conn
	// The fields are the connection's, which another exchange may take once it is back.
	a.conn, a.fields = nil, nil
	if a.keep && a.eof {
		a.t.put(c, a.start)
		return nil
	}
	return c.nc.Close()
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
