//go:build unix

// These tests check, with signal 0, that the reference server processes are gone.

package conformance

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeReferenceEnv makes the test binary act as the suite's reference server, so Run can be
// tested end to end without building the real one.
const fakeReferenceEnv = "GATEWAYCONFORMANCE_FAKE_REFERENCE"

func TestMain(m *testing.M) {
	if os.Getenv(fakeReferenceEnv) != "" {
		if err := fakeReference(); err != nil {
			fmt.Fprintln(os.Stderr, "fake reference server:", err)
			os.Exit(3)
		}
		return
	}
	os.Exit(m.Run())
}

// fakeReference speaks the reference server's side of the protocol: it reads a request,
// serves the HTTP version it names (and only that one, as the real one does), answers with
// its address and serves until it is signalled. Every answer describes what it saw.
func fakeReference() error {
	b, err := ReadMessage(os.Stdin)
	if err != nil {
		return err
	}
	var req ServerCompatRequest
	if err := req.Unmarshal(b); err != nil {
		return err
	}
	if req.UseTLS || req.ClientTLSCert != nil || req.ServerCreds != nil {
		return errors.New("the request has TLS fields")
	}
	protocols := new(http.Protocols)
	switch req.HTTPVersion {
	case HTTPVersion1:
		protocols.SetHTTP1(true)
	case HTTPVersion2:
		protocols.SetUnencryptedHTTP2(true)
	default:
		return fmt.Errorf("unexpected HTTP version %d", req.HTTPVersion)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{
		Protocols: protocols,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("Content-Type", "application/proto")
			fmt.Fprintf(w, "version=%d proto=%s protocol=%d limit=%d pid=%d body=%s",
				req.HTTPVersion, r.Proto, req.Protocol, req.MessageReceiveLimit, os.Getpid(), body)
		}),
	}
	go func() { _ = srv.Serve(ln) }()
	// The real server leaves a host empty for 127.0.0.1 at times; the caller must cope.
	resp := ServerCompatResponse{Port: uint32(ln.Addr().(*net.TCPAddr).Port)}
	if err := WriteMessage(os.Stdout, resp.Marshal()); err != nil {
		return err
	}
	// Like the real reference server, it ends by the default action of SIGTERM.
	select {}
}

// running is a Run in progress.
type running struct {
	resp ServerCompatResponse
	stop context.CancelFunc
	done chan error
}

// startRun starts Run with req and the fake reference server, and waits for its response.
func startRun(t *testing.T, req *ServerCompatRequest) *running {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var in bytes.Buffer
	if err := WriteMessage(&in, req.Marshal()); err != nil {
		t.Fatal(err)
	}
	outR, outW := io.Pipe()
	ctx, stop := context.WithCancel(t.Context())
	r := &running{stop: stop, done: make(chan error, 1)}
	go func() {
		err := Run(ctx, &in, outW,
			WithReferenceServer("/usr/bin/env", fakeReferenceEnv+"=1", exe),
			WithReferenceStderr(os.Stderr),
		)
		outW.CloseWithError(fmt.Errorf("Run returned: %v", err))
		r.done <- err
	}()
	b, err := ReadMessage(outR)
	if err != nil {
		stop()
		t.Fatalf("no response: %v", err)
	}
	if err := r.resp.Unmarshal(b); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.stop() })
	return r
}

// finish stops Run and returns its error.
func (r *running) finish(t *testing.T) error {
	t.Helper()
	r.stop()
	select {
	case err := <-r.done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
		return nil
	}
}

// call makes a Connect unary call through the gateway and returns the fake's description.
func call(t *testing.T, client *http.Client, scheme string, resp ServerCompatResponse) string {
	t.Helper()
	url := scheme + "://" + net.JoinHostPort(resp.Host, strconv.Itoa(int(resp.Port))) + "/" + Service + "/Unary"
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/proto")
	req.Header.Set("Connect-Protocol-Version", "1")
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", res.StatusCode, body)
	}
	return string(body)
}

// h1Client and h2Client each clone tc: a transport that speaks HTTP/2 adds "h2" to its TLS
// config's ALPN list in place, and an HTTP/1.1-only client offering it would get HTTP/2.
func h1Client(tc *tls.Config) *http.Client {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	return &http.Client{Transport: &http.Transport{Protocols: p, TLSClientConfig: tc.Clone()}}
}

func h2Client(tc *tls.Config) *http.Client {
	p := new(http.Protocols)
	if tc == nil {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP2(true)
	}
	return &http.Client{Transport: &http.Transport{Protocols: p, TLSClientConfig: tc.Clone()}}
}

// pidOf reads the fake's pid from its answer.
func pidOf(t *testing.T, answer string) int {
	t.Helper()
	for f := range strings.FieldsSeq(answer) {
		if v, ok := strings.CutPrefix(f, "pid="); ok {
			pid, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
	}
	t.Fatalf("no pid in %q", answer)
	return 0
}

// assertExited checks that the reference server processes are gone, not orphaned: Run waits
// for its children, so they are reaped by the time it returns.
func assertExited(t *testing.T, pids ...int) {
	t.Helper()
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("reference server %d still exists after Run returned (kill 0: %v)", pid, err)
		}
	}
}

func TestRunPlainText(t *testing.T) {
	t.Parallel()
	r := startRun(t, &ServerCompatRequest{Protocol: ProtocolConnect, HTTPVersion: HTTPVersion1, MessageReceiveLimit: 1234})
	if r.resp.Host != "127.0.0.1" || r.resp.Port == 0 || r.resp.PEMCert != nil {
		t.Fatalf("response %+v, want 127.0.0.1, a port and no certificate", r.resp)
	}
	// The gateway forwards an HTTP/1.1 stream over HTTP/1.1 and an HTTP/2 one over h2c; the
	// splitter must hand each to the reference server that speaks it.
	h1 := call(t, h1Client(nil), "http", r.resp)
	if !strings.HasPrefix(h1, "version=1 proto=HTTP/1.1 protocol=1 limit=1234 ") || !strings.HasSuffix(h1, "body=hello") {
		t.Errorf("over HTTP/1.1 the reference server saw %q", h1)
	}
	h2 := call(t, h2Client(nil), "http", r.resp)
	if !strings.HasPrefix(h2, "version=2 proto=HTTP/2.0 protocol=1 limit=1234 ") || !strings.HasSuffix(h2, "body=hello") {
		t.Errorf("over h2c the reference server saw %q", h2)
	}
	if err := r.finish(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	assertExited(t, pidOf(t, h1), pidOf(t, h2))
}

func TestRunTLS(t *testing.T) {
	t.Parallel()
	r := startRun(t, &ServerCompatRequest{
		Protocol:    ProtocolGRPCWeb,
		HTTPVersion: HTTPVersion2,
		UseTLS:      true,
		// The runner offers credentials; the gateway uses its own and says so in PEMCert.
		ServerCreds: &TLSCreds{Cert: []byte("unused"), Key: []byte("unused")},
	})
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(r.resp.PEMCert) {
		t.Fatalf("the response's certificate is not PEM: %q", r.resp.PEMCert)
	}
	tc := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if got := call(t, h2Client(tc), "https", r.resp); !strings.HasPrefix(got, "version=2 proto=HTTP/2.0 protocol=3 ") {
		t.Errorf("over h2 the reference server saw %q", got)
	}
	if got := call(t, h1Client(tc), "https", r.resp); !strings.HasPrefix(got, "version=1 proto=HTTP/1.1 protocol=3 ") {
		t.Errorf("over HTTPS/1.1 the reference server saw %q", got)
	}
	// The certificate also names localhost, as the protocol allows clients to use.
	localhost := r.resp
	localhost.Host = "localhost"
	call(t, h2Client(tc), "https", localhost)
	if err := r.finish(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestRunTLSClientCertificates(t *testing.T) {
	t.Parallel()
	clientCert, clientKey := clientCertificate(t)
	r := startRun(t, &ServerCompatRequest{
		Protocol:      ProtocolConnect,
		HTTPVersion:   HTTPVersion2,
		UseTLS:        true,
		ClientTLSCert: clientCert,
	})
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(r.resp.PEMCert)
	pair, err := tls.X509KeyPair(clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	tc := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if got := call(t, h2Client(tc), "https", r.resp); !strings.HasPrefix(got, "version=2 ") {
		t.Errorf("with a client certificate the reference server saw %q", got)
	}
	anonymous := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	url := "https://" + net.JoinHostPort(r.resp.Host, strconv.Itoa(int(r.resp.Port))) + "/" + Service + "/Unary"
	if res, err := h2Client(anonymous).Post(url, "application/proto", strings.NewReader("x")); err == nil {
		res.Body.Close()
		t.Fatalf("a client without a certificate got status %d", res.StatusCode)
	}
	if err := r.finish(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestRunRejectsWhatTheGatewayCannotServe(t *testing.T) {
	t.Parallel()
	for name, req := range map[string]*ServerCompatRequest{
		"HTTP/3":                   {HTTPVersion: HTTPVersion3, UseTLS: true},
		"client certs without TLS": {HTTPVersion: HTTPVersion1, ClientTLSCert: []byte("cert")},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var in bytes.Buffer
			if err := WriteMessage(&in, req.Marshal()); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			err := Run(t.Context(), &in, &out, WithReferenceServer("/bin/false"))
			if err == nil || out.Len() != 0 {
				t.Fatalf("Run = %v with %d bytes written, want an error and no response", err, out.Len())
			}
		})
	}
}

func TestRunFailsWhenTheReferenceServerDoes(t *testing.T) {
	t.Parallel()
	var in bytes.Buffer
	if err := WriteMessage(&in, (&ServerCompatRequest{HTTPVersion: HTTPVersion1}).Marshal()); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := Run(t.Context(), &in, &out, WithReferenceServer("/bin/false"))
	if err == nil || !strings.Contains(err.Error(), "reference server") || out.Len() != 0 {
		t.Fatalf("Run = %v with %d bytes written, want a reference server error and no response", err, out.Len())
	}
}

// clientCertificate makes a self-signed client certificate, as the runner does.
func clientCertificate(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Conformance Client"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}
