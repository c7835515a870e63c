package server_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/basaltplatform/basalt/kernel/server"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestAdminListenerServesMetricsAndProbes checks the admin port: /metrics from the handler
// the server was given, /healthz and /readyz as on the RPC port, while the RPC port itself
// serves no metrics.
func TestAdminListenerServesMetricsAndProbes(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	cfg := httpConfig()
	cfg.AdminListen = "127.0.0.1:0"
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "basalt_test_metric 1\n")
	})
	srv := start(t, cfg, nil, server.WithMetrics(metrics), server.WithReadinessCheck("database", func(context.Context) error {
		if down.Load() {
			return errors.New("connection refused")
		}
		return nil
	}))
	if srv.AdminAddr() == nil || srv.AdminAddr().Port == 0 || srv.AdminAddr().Port == srv.Addr().Port {
		t.Fatalf("admin address %v, want a port of its own beside %v", srv.AdminAddr(), srv.Addr())
	}
	admin := "http://" + srv.AdminAddr().String()
	tests := []struct {
		name, url string
		down      bool
		code      int
		body      string
	}{
		{"metrics", admin + "/metrics", false, http.StatusOK, "basalt_test_metric 1"},
		{"liveness", admin + "/healthz", false, http.StatusOK, `"ok"`},
		{"readiness", admin + "/readyz", false, http.StatusOK, `"ready"`},
		{"readiness with the database down", admin + "/readyz", true, http.StatusServiceUnavailable, `"database"`},
		{"liveness with the database down", admin + "/healthz", true, http.StatusOK, `"ok"`},
		{"no metrics on the RPC port", srv.URL() + "/metrics", false, http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		down.Store(tt.down)
		code, body := get(t, tt.url)
		if code != tt.code || !strings.Contains(body, tt.body) {
			t.Errorf("%s: %s = %d %q, want %d with %q", tt.name, tt.url, code, body, tt.code, tt.body)
		}
	}
}

func TestNoAdminListenerUnlessConfigured(t *testing.T) {
	t.Parallel()
	srv := start(t, httpConfig(), nil, server.WithMetrics(http.NotFoundHandler()))
	if srv.AdminAddr() != nil {
		t.Fatalf("an admin listener at %v without BASALT_ADMIN_LISTEN", srv.AdminAddr())
	}
}

func TestAdminListenerOnTheInheritedSocketClosesWithTheServer(t *testing.T) {
	t.Parallel()
	cfg := httpConfig()
	cfg.AdminListen, cfg.Inherited = testkit.InheritedSocket(t)
	srv := start(t, cfg, nil)
	if srv.AdminAddr().String() != cfg.AdminListen {
		t.Fatalf("admin listener at %v, want the inherited %s", srv.AdminAddr(), cfg.AdminListen)
	}
	if code, _ := get(t, "http://"+cfg.AdminListen+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d", code)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + cfg.AdminListen + "/healthz"); err == nil {
		t.Fatal("the admin listener still answers after the server stopped")
	}
}
