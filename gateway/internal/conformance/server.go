package conformance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/basaltplatform/basalt/gateway/internal/config"
	"github.com/basaltplatform/basalt/gateway/internal/gateway"
)

// Service is the suite's service, which the gateway routes to the reference server.
const Service = "connectrpc.conformance.v1.ConformanceService"

// The runner waits 10s for a server's answer and gives it 5s between SIGTERM and SIGKILL; the
// bounds here fit inside both.
const (
	referenceTimeout = 8 * time.Second
	stopGrace        = 2 * time.Second
)

type options struct {
	reference []string
	log       *slog.Logger
	stderr    io.Writer
	now       func() time.Time
}

// Option configures Run.
type Option func(*options)

// WithReferenceServer sets the command that runs the suite's reference server (required):
// the path of the referenceserver binary and any arguments.
func WithReferenceServer(argv ...string) Option {
	return func(o *options) { o.reference = argv }
}

// WithLogger sets the gateway's logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithReferenceStderr sends the reference server's stderr to w (default: discard).
func WithReferenceStderr(w io.Writer) Option { return func(o *options) { o.stderr = w } }

// Run is a server under test for the runner's server mode: it reads one ServerCompatRequest
// from in, starts the reference server and a gateway in front of it, writes the gateway's
// ServerCompatResponse to out, and serves until ctx is done (the runner sends SIGTERM). It
// then stops the gateway and the reference server and waits for both.
//
// The gateway reaches an upstream over HTTP/1.1 for some calls and over h2c for others (gRPC
// and full-duplex streams), and a reference server process serves only one of the two, so
// two of them run, behind a splitter that sends each connection to the one that speaks it.
//
// The runner closes in right after writing the request, so the end of in is no signal to
// stop. Run returns early with an error when a reference server or the gateway stops on its
// own, so the runner sees the server under test fail rather than hang.
func Run(ctx context.Context, in io.Reader, out io.Writer, opts ...Option) (err error) {
	o := options{log: slog.New(slog.DiscardHandler), stderr: io.Discard, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	b, err := ReadMessage(in)
	if err != nil {
		return err
	}
	var req ServerCompatRequest
	if err := req.Unmarshal(b); err != nil {
		return err
	}
	if req.HTTPVersion == HTTPVersion3 {
		return errors.New("conformance: the gateway does not serve HTTP/3")
	}
	if len(req.ClientTLSCert) > 0 && !req.UseTLS {
		return errors.New("conformance: client certificates were asked for without TLS")
	}

	// keep records the first error of the deferred clean-ups when Run has none of its own.
	keep := func(cerr error) {
		if cerr != nil && err == nil {
			err = cerr
		}
	}
	refs := make([]*reference, 0, 2)
	defer func() {
		for _, ref := range refs {
			keep(ref.Stop(stopGrace))
		}
	}()
	for _, v := range []HTTPVersion{HTTPVersion1, HTTPVersion2} {
		ref, err := startReference(o.reference, req.Upstream(v), o.stderr, referenceTimeout)
		if err != nil {
			return err
		}
		refs = append(refs, ref)
	}
	split, err := newSplitter(refs[0].Addr, refs[1].Addr)
	if err != nil {
		return fmt.Errorf("conformance: %w", err)
	}
	// Deferred after the references' Stop, so it runs before it: the relays end first.
	defer func() { keep(split.Close()) }()

	cfg := gatewayConfig("http://" + split.Addr())
	var pemCert []byte
	if req.UseTLS {
		dir, err := os.MkdirTemp("", "gatewayconformance-")
		if err != nil {
			return fmt.Errorf("conformance: %w", err)
		}
		defer os.RemoveAll(dir)
		if pemCert, err = writeTLSFiles(dir, &cfg.TLS, req.ClientTLSCert, o.now()); err != nil {
			return err
		}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("conformance: %w", err)
	}
	g, err := gateway.New(cfg, gateway.WithLogger(o.log), gateway.WithListener(ln))
	if err != nil {
		ln.Close()
		return err
	}
	defer g.Close()
	runCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- g.Run(runCtx) }()
	// However Run returns, the gateway has stopped serving before the splitter and the
	// reference servers go, so that in-flight calls end against a live upstream.
	gatewayDone := false
	defer func() {
		stop()
		if !gatewayDone {
			keep(<-served)
		}
	}()

	select {
	case <-g.Ready():
	case err := <-served:
		gatewayDone = true
		if err == nil {
			err = errors.New("the gateway stopped before serving")
		}
		return fmt.Errorf("conformance: %w", err)
	case <-ctx.Done():
		return nil
	}
	resp := ServerCompatResponse{Host: "127.0.0.1", Port: uint32(g.Addr().Port), PEMCert: pemCert}
	if err := WriteMessage(out, resp.Marshal()); err != nil {
		return err
	}

	var failure error
	select {
	case <-ctx.Done():
	case err := <-served:
		gatewayDone = true
		failure = fmt.Errorf("conformance: the gateway stopped on its own: %v", err)
	case <-refs[0].Done():
		failure = fmt.Errorf("conformance: the HTTP/1.1 reference server exited on its own: %v", refs[0].exitErr())
	case <-refs[1].Done():
		failure = fmt.Errorf("conformance: the HTTP/2 reference server exited on its own: %v", refs[1].exitErr())
	}
	if ctx.Err() != nil {
		// A signal to the whole process group (^C in a terminal) may end a reference server
		// before Run hears of it; that is a stop, not a failure.
		return nil
	}
	return failure
}

// gatewayConfig is the embedded default with the suite's service routed to upstream. Every
// limit that could answer a call in the reference server's stead is raised out of the suite's
// way, so that what the suite measures is the gateway's transparency, not its protection.
func gatewayConfig(upstream string) config.Config {
	cfg := config.Defaults()
	cfg.Listen = "127.0.0.1:0"
	// Several servers run at once; none needs the admin endpoints.
	cfg.AdminListen = ""
	cfg.Environment = "development"
	cfg.Passthrough = []config.Passthrough{{Service: Service, Upstream: upstream}}
	// The suite sends thousands of calls from one address within seconds.
	cfg.RateLimits.Public = config.Rate{Rate: 1e9, Burst: 1 << 30}
	// The suite's largest messages test the reference server's own 200 KiB receive limit;
	// the gateway's limit must sit well above them so that the server's answer is measured.
	cfg.Limits.MaxRequestBytes = 64 << 20
	cfg.Limits.MaxInFlight = 1 << 20
	// The runner kills a server 5s after SIGTERM; by then every call has ended anyway.
	cfg.Limits.ShutdownTimeout = config.Duration(stopGrace)
	return cfg
}

// writeTLSFiles writes a new self-signed certificate and its key into dir and points t at
// them; with clientCert, it also makes the gateway require client certificates signed by it.
// It returns the certificate's PEM for the response.
func writeTLSFiles(dir string, t *config.TLS, clientCert []byte, now time.Time) ([]byte, error) {
	certPEM, keyPEM, err := selfSigned(now)
	if err != nil {
		return nil, err
	}
	t.CertFile = filepath.Join(dir, "cert.pem")
	t.KeyFile = filepath.Join(dir, "key.pem")
	if err := os.WriteFile(t.CertFile, certPEM, 0o600); err != nil {
		return nil, fmt.Errorf("conformance: %w", err)
	}
	if err := os.WriteFile(t.KeyFile, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("conformance: %w", err)
	}
	if len(clientCert) > 0 {
		// The suite's client certificate is self-signed, so it is its own CA.
		t.ClientCAFile = filepath.Join(dir, "client-ca.pem")
		if err := os.WriteFile(t.ClientCAFile, clientCert, 0o600); err != nil {
			return nil, fmt.Errorf("conformance: %w", err)
		}
	}
	return certPEM, nil
}
