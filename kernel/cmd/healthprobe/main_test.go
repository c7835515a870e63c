package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			w.WriteHeader(http.StatusOK)
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/starting":
			http.Error(w, "migrating", http.StatusServiceUnavailable)
		case "/moved":
			http.Redirect(w, r, "/readyz", http.StatusFound)
		case "/slow":
			time.Sleep(500 * time.Millisecond)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	closed := closedAddr(t)

	tests := []struct {
		name       string
		args       []string
		want       int
		wantStderr string
	}{
		{name: "ok", args: []string{srv.URL + "/readyz"}, want: 0},
		{name: "no content is still 2xx", args: []string{srv.URL + "/empty"}, want: 0},
		{name: "unavailable", args: []string{srv.URL + "/starting"}, want: 1, wantStderr: "503"},
		{name: "unavailable body is logged", args: []string{srv.URL + "/starting"}, want: 1, wantStderr: "migrating"},
		{name: "not found", args: []string{srv.URL + "/nope"}, want: 1, wantStderr: "404"},
		{name: "redirect is not followed", args: []string{srv.URL + "/moved"}, want: 1, wantStderr: "302"},
		{name: "timeout", args: []string{"-timeout", "100ms", srv.URL + "/slow"}, want: 1, wantStderr: "deadline"},
		{name: "nothing listens", args: []string{"http://" + closed + "/readyz"}, want: 1, wantStderr: "refused"},
		{name: "no URL", args: nil, want: 2, wantStderr: "usage"},
		{name: "two URLs", args: []string{srv.URL, srv.URL}, want: 2, wantStderr: "usage"},
		{name: "not http", args: []string{"ftp://example.com/readyz"}, want: 2, wantStderr: "not an http(s) URL"},
		{name: "no host", args: []string{"/readyz"}, want: 2, wantStderr: "not an http(s) URL"},
		{name: "unknown flag", args: []string{"-retries", "3", srv.URL}, want: 2, wantStderr: "flag provided but not defined"},
		{name: "zero timeout", args: []string{"-timeout", "0s", srv.URL}, want: 2, wantStderr: "must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			got := run(context.Background(), tt.args, &stderr)
			if got != tt.want {
				t.Fatalf("run(%q) = %d, want %d; stderr: %s", tt.args, got, tt.want, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Fatalf("run(%q) stderr = %q, want it to contain %q", tt.args, stderr.String(), tt.wantStderr)
			}
			if tt.want == 0 && stderr.Len() != 0 {
				t.Fatalf("run(%q) succeeded but wrote %q", tt.args, stderr.String())
			}
		})
	}
}

// closedAddr returns an address that was just listening and no longer is, so a connection to
// it is refused rather than left to time out.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}
