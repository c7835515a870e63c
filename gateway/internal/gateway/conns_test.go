package gateway

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/basaltplatform/basalt/kernel/testkit"

	"github.com/basaltplatform/basalt/gateway/internal/config"
)

// route is one way a client connection reaches the gateway: its own HTTP/1.1 server (the fast
// path, which hands what it does not serve to net/http), net/http alone, or TLS.
type route struct {
	name string
	edit func(*config.Config)
	// tls is the pool that trusts the gateway's certificate, for a TLS path.
	tls *x509.CertPool
}

// paths returns every path, each with edit applied to its configuration as well.
func routesIn(t *testing.T, edit func(*config.Config)) []route {
	certFile, keyFile, pool := selfSignedFiles(t)
	return []route{
		{name: "fast path", edit: edit},
		{name: "net/http", edit: func(c *config.Config) {
			edit(c)
			c.Limits.DisableFastPath = true
		}},
		{name: "TLS", tls: pool, edit: func(c *config.Config) {
			edit(c)
			c.TLS.CertFile, c.TLS.KeyFile = certFile, keyFile
		}},
	}
}

// dial opens a raw connection to f over p, with a deadline far past every bound under test, so
// that a gateway that never answers fails the test rather than hang it.
func (p route) dial(t *testing.T, f *fixture) net.Conn {
	t.Helper()
	var c net.Conn
	var err error
	if p.tls != nil {
		c, err = tls.Dial("tcp", f.gw.Addr().String(), &tls.Config{RootCAs: p.tls, NextProtos: []string{"http/1.1"}})
	} else {
		c, err = net.Dial("tcp", f.gw.Addr().String())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return c
}

// wantEnd reads c until the gateway closes it, and fails when the deadline comes first.
func wantEnd(t *testing.T, c net.Conn, what string) string {
	t.Helper()
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: the gateway kept the connection open (read %q)", what, got)
	}
	return string(got)
}

// TestAConnectionThatSendsNothingEndsByTheHeaderTimeout connects on every path and sends
// nothing: the gateway closes the connection once the header timeout passes, not the idle
// limit (ten minutes here).
func TestAConnectionThatSendsNothingEndsByTheHeaderTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 200 * time.Millisecond
	edit := func(c *config.Config) {
		c.Limits.ReadHeaderTimeout = config.Duration(timeout)
		c.Limits.IdleTimeout = config.Duration(10 * time.Minute)
	}
	for _, p := range routesIn(t, edit) {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, 1, p.edit)
			// The clock starts before the dial: the gateway's starts when it accepts, later.
			start := time.Now()
			var c net.Conn
			if p.tls != nil {
				// A TLS client that connects and sends nothing never finishes its handshake.
				var err error
				if c, err = net.Dial("tcp", f.gw.Addr().String()); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			} else {
				c = p.dial(t, f)
			}
			wantEnd(t, c, "a connection that sent nothing")
			if elapsed := time.Since(start); elapsed < timeout-10*time.Millisecond {
				t.Errorf("closed after %v, before the %v timeout", elapsed, timeout)
			}
		})
	}
}

// TestAStalledBodyEndsByTheBodyTimeout sends heads with a Content-Length and only part of the
// body, on every path, to requests the gateway answers without reading the body (no token,
// which net/http then has to discard the body for) and to ones it reads (a REST call, a
// Connect call on the fast path): each is answered once the body timeout passes, and the
// connection closes.
func TestAStalledBodyEndsByTheBodyTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 200 * time.Millisecond
	edit := func(c *config.Config) { c.Limits.BodyTimeout = config.Duration(timeout) }
	requests := []struct {
		name, head string
	}{
		{"an answer that needs no body", "POST /basalt.identity.v1.IdentityService/GetCurrentUser HTTP/1.1\r\nHost: gw\r\n" +
			"Content-Type: application/json; charset=utf-8\r\nContent-Length: 100\r\n\r\n{}"},
		{"a REST body", "POST /v1/auth/login HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\""},
		{"a Connect body", "POST /basalt.auth.v1.AuthService/Login HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\""},
	}
	for _, p := range routesIn(t, edit) {
		f := newFixture(t, 1, p.edit)
		for _, r := range requests {
			t.Run(p.name+"/"+r.name, func(t *testing.T) {
				t.Parallel()
				c := p.dial(t, f)
				if _, err := io.WriteString(c, r.head); err != nil {
					t.Fatal(err)
				}
				br := bufio.NewReader(c)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("no answer to a body that stopped coming: %v", err)
				}
				resp.Body.Close()
				if resp.StatusCode < 400 {
					t.Errorf("answered %d", resp.StatusCode)
				}
				wantEnd(t, c, "a connection whose body stopped coming")
			})
		}
	}
}

// TestAClientThatStopsReadingIsCutOff asks, on every path and over HTTP/2, for an answer far
// larger than the socket buffers and reads none of it: once the client has taken nothing for
// the write timeout, the gateway gives up on the answer, and the call ends (its access log
// line is written) while the client still reads nothing.
func TestAClientThatStopsReadingIsCutOff(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 32<<20)
	up := testkit.StartRawServer(t, testkit.AlwaysReply(testkit.RawReply{Data: "HTTP/1.1 200 OK\r\n" +
		"Content-Type: application/proto\r\nContent-Length: " + strconv.Itoa(len(big)) + "\r\n\r\n" + big}))
	edit := func(c *config.Config) {
		c.Limits.WriteTimeout = config.Duration(200 * time.Millisecond)
		c.Upstreams["identity"] = []string{up.URL}
	}
	const getCurrentUser = "/basalt.identity.v1.IdentityService/GetCurrentUser"
	k := newKeys(t)
	all := routesIn(t, edit)
	all = append(all, route{name: "h2c", edit: func(c *config.Config) {
		edit(c)
		c.Limits.DisableFastPath = true
	}})
	for _, p := range all {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			f := newFixtureWithKeys(t, k, 1, p.edit)
			id := "stalled-" + strings.NewReplacer("/", "-", " ", "-").Replace(p.name)
			if p.name == "h2c" {
				req, err := http.NewRequest(http.MethodPost, f.url+getCurrentUser, strings.NewReader(""))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/proto")
				req.Header.Set("Authorization", "Bearer "+k.token(t, "user-1"))
				req.Header.Set("X-Request-Id", id)
				resp, err := f.h2.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
			} else {
				c := p.dial(t, f)
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.SetReadBuffer(4 << 10)
				}
				if _, err := io.WriteString(c, "POST "+getCurrentUser+" HTTP/1.1\r\nHost: gw\r\nContent-Type: application/proto\r\n"+
					"Authorization: Bearer "+k.token(t, "user-1")+"\r\nX-Request-Id: "+id+"\r\nContent-Length: 0\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
			}
			testkitEventually(t, func() bool {
				for line := range strings.Lines(f.logs.String()) {
					if strings.Contains(line, `"request_id":"`+id+`"`) && strings.Contains(line, getCurrentUser) {
						return true
					}
				}
				return false
			})
		})
	}
}

// TestConnectionsPastTheLimitAreRefused opens limits.max_connections connections and one more,
// on the fast path's listener and on TLS: the one more is closed at once, before anything is
// read, and counted; once one of the others closes, a new connection is served again.
func TestConnectionsPastTheLimitAreRefused(t *testing.T) {
	t.Parallel()
	const most = 3
	for _, p := range routesIn(t, func(c *config.Config) { c.Limits.MaxConnections = most }) {
		if p.name == "net/http" {
			continue // the same listener as the fast path's
		}
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, 1, p.edit)
			var open []net.Conn
			for range most {
				c := p.dial(t, f)
				// A request answered on each shows that the gateway serves it.
				get(t, c, "/healthz")
				open = append(open, c)
			}
			refused, err := net.Dial("tcp", f.gw.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer refused.Close()
			_ = refused.SetDeadline(time.Now().Add(20 * time.Second))
			if got := wantEnd(t, refused, "a connection past the limit"); got != "" {
				t.Errorf("a connection past the limit was answered %q", got)
			}
			if n := metricValue(t, f, "basalt_gateway_refused_connections_total"); n != 1 {
				t.Errorf("%d refused connections counted, want 1", n)
			}
			if n := metricValue(t, f, "basalt_gateway_open_connections"); n != most {
				t.Errorf("%d open connections counted, want %d", n, most)
			}
			open[0].Close()
			testkitEventually(t, func() bool { return metricValue(t, f, "basalt_gateway_open_connections") == most-1 })
			get(t, p.dial(t, f), "/healthz")
		})
	}
}

// get sends GET path on c and wants 200.
func get(t *testing.T, c net.Conn, path string) {
	t.Helper()
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: gw\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d", path, resp.StatusCode)
	}
}

// metricValue reads a metric without labels from the gateway's admin listener.
func metricValue(t *testing.T, f *fixture, name string) int {
	t.Helper()
	resp, err := http.Get(f.adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			n := 0
			for _, c := range strings.TrimSpace(v) {
				if c < '0' || c > '9' {
					t.Fatalf("%s %q", name, v)
				}
				n = n*10 + int(c-'0')
			}
			return n
		}
	}
	t.Fatalf("no %s in the metrics", name)
	return 0
}

// TestAmbiguousFramingClosesTheConnection sends, on every path, a request with both
// Content-Length and Transfer-Encoding, and one whose Transfer-Encoding is folded onto a second
// line: each is answered, and the connection closes after the answer (RFC 9112, section 6.1),
// so that a request the client sends after it is never read on it.
func TestAmbiguousFramingClosesTheConnection(t *testing.T) {
	t.Parallel()
	const body = `{"email":"a@example.com","password":"right"}`
	chunked := strconv.FormatInt(int64(len(body)), 16) + "\r\n" + body + "\r\n0\r\n\r\n"
	head := "POST /basalt.auth.v1.AuthService/Login HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
	requests := []struct{ name, request string }{
		{"Content-Length and Transfer-Encoding", head + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked},
		{"Transfer-Encoding and Content-Length", head + "Transfer-Encoding: chunked\r\nContent-Length: 500\r\n\r\n" + chunked},
		{"a folded Transfer-Encoding", head + "Transfer-Encoding:\r\n chunked\r\n\r\n" + chunked},
	}
	for _, p := range routesIn(t, func(*config.Config) {}) {
		f := newFixture(t, 1, p.edit)
		for _, r := range requests {
			t.Run(p.name+"/"+r.name, func(t *testing.T) {
				t.Parallel()
				c := p.dial(t, f)
				// The second request follows at once; only a connection kept open would answer it.
				if _, err := io.WriteString(c, r.request+"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				br := bufio.NewReader(c)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || !resp.Close {
					t.Errorf("answered %d %q (Connection %q), want 200 and the connection closed", resp.StatusCode, got, resp.Header.Get("Connection"))
				}
				if rest, err := io.ReadAll(br); len(rest) != 0 || err != nil {
					t.Errorf("after the answer the connection gave %q, %v; want its end", rest, err)
				}
			})
		}
	}
}
