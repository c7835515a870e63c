package server

import (
	"errors"
	"fmt"
	"net"
	"net/http"
)

// listenAdmin opens the admin listener: the one WithAdminListener gave, or the configured
// address (a socket handed down for it when there is one); nil when it is off.
func (s *Server) listenAdmin() (net.Listener, error) {
	if s.o.admin != nil {
		return s.o.admin, nil
	}
	if s.cfg.AdminListen == "" {
		return nil, nil
	}
	ln, err := s.cfg.Inherited.Listen(s.cfg.AdminListen)
	if err != nil {
		return nil, fmt.Errorf("server: listen on %s (admin): %w", s.cfg.AdminListen, err)
	}
	return ln, nil
}

// adminServer serves what an operator's tools ask of the process, on a port that can stay
// private: the metrics WithMetrics gave at /metrics, and /healthz and /readyz as on the RPC
// port, for probes that must not depend on the RPC port being reachable.
func (s *Server) adminServer() *http.Server {
	mux := http.NewServeMux()
	if s.o.metrics != nil {
		mux.Handle("GET /metrics", s.o.metrics)
	}
	mux.HandleFunc("GET /healthz", s.serveHealthz)
	mux.HandleFunc("GET /readyz", s.serveReadyz)
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
	}
}

// serveAdmin serves srv on ln until srv closes; the returned channel closes then. A failure
// is logged and does not stop the service, whose RPCs matter more than its metrics.
func (s *Server) serveAdmin(srv *http.Server, ln net.Listener) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.o.log.Error("the admin listener failed; metrics and probes on it are gone", "addr", ln.Addr().String(), "error", err)
		}
	}()
	return done
}
