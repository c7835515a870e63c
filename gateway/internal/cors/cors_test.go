package cors_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/basaltplatform/basalt/gateway/internal/cors"
)

func TestAllowed(t *testing.T) {
	t.Parallel()
	p := cors.New([]string{"http://localhost:*", "http://127.0.0.1:*", "https://app.example.com", "HTTPS://Admin.Example.com"}, true, time.Hour)
	tests := []struct {
		origin string
		want   bool
	}{
		// Any port of localhost, and no port at all.
		{"http://localhost", true},
		{"http://localhost:5173", true},
		{"http://localhost:1", true},
		{"http://localhost:65535", true},
		{"http://LOCALHOST:8080", true}, // hosts are case-insensitive
		{"http://127.0.0.1:3000", true},
		// Not a port: refused.
		{"http://localhost:0", false},
		{"http://localhost:65536", false},
		{"http://localhost:99999", false},
		{"http://localhost:", false},
		{"http://localhost:05173", false},
		{"http://localhost:+80", false},
		{"http://localhost:-1", false},
		{"http://localhost:80a", false},
		{"http://localhost:5173/", false},
		{"http://localhost:5173@evil.com", false},
		// Other hosts that start the same way, other schemes.
		{"http://localhost.evil.com", false},
		{"http://localhost.evil.com:5173", false},
		{"http://localhostevil.com", false},
		{"https://localhost:5173", false},
		{"https://localhost", false},
		{"ws://localhost:5173", false},
		{"http://127.0.0.10:3000", false},
		// Exact origins match exactly, without case.
		{"https://app.example.com", true},
		{"https://APP.example.com", true},
		{"https://admin.example.com", true},
		{"https://app.example.com:443", false},
		{"https://app.example.com:8443", false},
		{"http://app.example.com", false},
		{"https://app.example.com.evil.com", false},
		{"https://evil.app.example.com", false},
		{"https://app.example.co", false},
		{"", false},
		{"null", false},
	}
	for _, tt := range tests {
		t.Run(tt.origin, func(t *testing.T) {
			t.Parallel()
			if got := p.Allowed(tt.origin); got != tt.want {
				t.Fatalf("Allowed(%q) = %v, want %v", tt.origin, got, tt.want)
			}
		})
	}
}

func TestAllowedNone(t *testing.T) {
	t.Parallel()
	p := cors.New(nil, true, time.Hour)
	for _, o := range []string{"http://localhost", "https://app.example.com", "null", "*"} {
		if p.Allowed(o) {
			t.Fatalf("a policy without origins allowed %q", o)
		}
	}
}

func preflight(origin, method string, requestHeaders ...string) *http.Request {
	r := httptest.NewRequest(http.MethodOptions, "/basalt.auth.v1.AuthService/Login", nil)
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	if method != "" {
		r.Header.Set("Access-Control-Request-Method", method)
	}
	for _, h := range requestHeaders {
		r.Header.Add("Access-Control-Request-Headers", h)
	}
	return r
}

// list splits a comma-separated header into its lower-cased elements.
func list(h http.Header, name string) []string {
	var out []string
	for _, v := range h.Values(name) {
		for e := range strings.SplitSeq(v, ",") {
			if e = strings.ToLower(strings.TrimSpace(e)); e != "" {
				out = append(out, e)
			}
		}
	}
	return out
}

func corsHeaders(h http.Header) []string {
	var out []string
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			out = append(out, k)
		}
	}
	return out
}

func TestIsPreflight(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		r    *http.Request
		want bool
	}{
		{"OPTIONS with Origin and a method", preflight("http://localhost:5173", "POST"), true},
		{"OPTIONS without the requested method", preflight("http://localhost:5173", ""), false},
		{"OPTIONS without Origin", preflight("", "POST"), false},
		{"POST with both headers", func() *http.Request {
			r := preflight("http://localhost:5173", "POST")
			r.Method = http.MethodPost
			return r
		}(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := cors.IsPreflight(tt.r); got != tt.want {
				t.Fatalf("IsPreflight = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPreflight(t *testing.T) {
	t.Parallel()
	p := cors.New([]string{"http://localhost:*", "https://app.example.com"}, true, 2*time.Hour)
	tests := []struct {
		name    string
		r       *http.Request
		allowed bool
	}{
		{"a Connect call", preflight("http://localhost:5173", "POST", "content-type,connect-protocol-version,connect-timeout-ms"), true},
		{"a gRPC-Web call", preflight("https://app.example.com", "POST", "content-type, x-grpc-web, x-user-agent, grpc-timeout"), true},
		{"an authenticated call", preflight("https://app.example.com", "POST", "authorization", "content-type"), true},
		{"headers in any case", preflight("https://app.example.com", "POST", "Authorization, Content-Type, X-Request-Id"), true},
		{"a GET without extra headers", preflight("http://localhost", "GET"), true},
		{"a REST DELETE", preflight("http://localhost:3000", "DELETE", "authorization"), true},
		{"empty elements", preflight("http://localhost:3000", "POST", " , content-type,, "), true},
		{"an unknown header", preflight("http://localhost:5173", "POST", "content-type, x-custom"), false},
		{"an unknown header in a second line", preflight("http://localhost:5173", "POST", "content-type", "cookie"), false},
		{"a refused origin", preflight("https://evil.example.com", "POST", "content-type"), false},
		{"a refused port", preflight("http://localhost:0", "POST"), false},
		{"a refused scheme", preflight("https://localhost:5173", "POST"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := httptest.NewRecorder()
			p.Preflight(w, tt.r)
			h := w.Header()
			if !slices.Contains(list(h, "Vary"), "origin") {
				t.Fatalf("Vary = %q, want it to name Origin", h.Values("Vary"))
			}
			if !tt.allowed {
				if w.Code != http.StatusForbidden {
					t.Fatalf("status %d, want 403", w.Code)
				}
				if got := corsHeaders(h); len(got) > 0 {
					t.Fatalf("a refused preflight carries CORS headers %v", got)
				}
				return
			}
			if w.Code != http.StatusNoContent {
				t.Fatalf("status %d, want 204", w.Code)
			}
			if got := h.Get("Access-Control-Allow-Origin"); got != tt.r.Header.Get("Origin") {
				t.Fatalf("Access-Control-Allow-Origin = %q, want the origin echoed", got)
			}
			if got := h.Get("Access-Control-Allow-Credentials"); got != "true" {
				t.Fatalf("Access-Control-Allow-Credentials = %q, want true", got)
			}
			methods := list(h, "Access-Control-Allow-Methods")
			for _, m := range []string{"get", "post", "put", "patch", "delete"} {
				if !slices.Contains(methods, m) {
					t.Fatalf("Access-Control-Allow-Methods = %v, missing %s", methods, m)
				}
			}
			headers := list(h, "Access-Control-Allow-Headers")
			for _, want := range []string{"content-type", "connect-protocol-version", "connect-timeout-ms", "grpc-timeout", "x-grpc-web", "x-user-agent", "authorization", "x-request-id"} {
				if !slices.Contains(headers, want) {
					t.Fatalf("Access-Control-Allow-Headers = %v, missing %s", headers, want)
				}
			}
			if got := h.Get("Access-Control-Max-Age"); got != "7200" {
				t.Fatalf("Access-Control-Max-Age = %q, want 7200", got)
			}
			if w.Body.Len() != 0 {
				t.Fatalf("a preflight answer has a body: %q", w.Body.String())
			}
		})
	}
}

func TestDecorate(t *testing.T) {
	t.Parallel()
	exposed := []string{"grpc-status", "grpc-message", "grpc-status-details-bin", "x-request-id", "retry-after"}
	tests := []struct {
		name            string
		origins         []string
		credentials     bool
		origin          string
		wantOrigin      string // Access-Control-Allow-Origin, "" for none
		wantCredentials bool
	}{
		{"an allowed origin", []string{"http://localhost:*"}, true, "http://localhost:5173", "http://localhost:5173", true},
		{"an allowed origin without credentials", []string{"https://app.example.com"}, false, "https://app.example.com", "https://app.example.com", false},
		{"a refused origin", []string{"http://localhost:*"}, true, "http://localhost.evil.com", "", false},
		{"no origin", []string{"http://localhost:*"}, true, "", "", false},
		// "*" is never answered together with credentials, even when asked to: a browser
		// refuses that combination, and echoing the origin instead would open every origin.
		{"any origin", []string{"*"}, false, "https://anyone.example.com", "*", false},
		{"any origin asked with credentials", []string{"*"}, true, "https://anyone.example.com", "*", false},
		{"any origin beside an exact one", []string{"https://app.example.com", "*"}, true, "https://app.example.com", "*", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := cors.New(tt.origins, tt.credentials, time.Hour)
			h := http.Header{}
			p.Decorate(h, tt.origin)
			// Whatever the origin, also none, the response depends on it.
			if !slices.Contains(list(h, "Vary"), "origin") {
				t.Fatalf("Vary = %q, want it to name Origin", h.Values("Vary"))
			}
			if got := h.Get("Access-Control-Allow-Origin"); got != tt.wantOrigin {
				t.Fatalf("Access-Control-Allow-Origin = %q, want %q", got, tt.wantOrigin)
			}
			if got := h.Get("Access-Control-Allow-Credentials") == "true"; got != tt.wantCredentials {
				t.Fatalf("Access-Control-Allow-Credentials = %q, want credentials %v", h.Get("Access-Control-Allow-Credentials"), tt.wantCredentials)
			}
			if tt.wantOrigin == "" {
				if got := corsHeaders(h); len(got) > 0 {
					t.Fatalf("a refused origin got CORS headers %v", got)
				}
				return
			}
			got := list(h, "Access-Control-Expose-Headers")
			for _, e := range exposed {
				if !slices.Contains(got, e) {
					t.Fatalf("Access-Control-Expose-Headers = %v, missing %s", got, e)
				}
			}
			// Preflight-only headers do not belong on an actual response.
			for _, k := range []string{"Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Access-Control-Max-Age"} {
				if v := h.Get(k); v != "" {
					t.Fatalf("%s = %q on an actual response", k, v)
				}
			}
		})
	}
}

// TestDecorateKeepsVary checks that Decorate adds to a Vary the response already has rather
// than replacing it.
func TestDecorateKeepsVary(t *testing.T) {
	t.Parallel()
	p := cors.New([]string{"http://localhost:*"}, true, time.Hour)
	h := http.Header{"Vary": {"Accept-Encoding"}}
	p.Decorate(h, "http://localhost:5173")
	if got := list(h, "Vary"); !slices.Contains(got, "origin") || !slices.Contains(got, "accept-encoding") {
		t.Fatalf("Vary = %v, want Accept-Encoding and Origin", got)
	}
}

func TestPreflightWithAnyOrigin(t *testing.T) {
	t.Parallel()
	p := cors.New([]string{"*"}, true, 10*time.Minute)
	w := httptest.NewRecorder()
	p.Preflight(w, preflight("https://anyone.example.com", "POST", "content-type"))
	h := w.Header()
	if w.Code != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != "*" || h.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("status %d, Allow-Origin %q, Allow-Credentials %q; want 204, *, none",
			w.Code, h.Get("Access-Control-Allow-Origin"), h.Get("Access-Control-Allow-Credentials"))
	}
	if got := h.Get("Access-Control-Max-Age"); got != "600" {
		t.Fatalf("Access-Control-Max-Age = %q, want 600", got)
	}
}

// TestDecorateVariesByOriginWithoutOne checks that an answer to a request without Origin says
// it varies by Origin too, and that what one answer adds to its Vary reaches no other.
func TestDecorateVariesByOriginWithoutOne(t *testing.T) {
	t.Parallel()
	p := cors.New([]string{"http://localhost:*"}, true, time.Hour)
	first, second := http.Header{}, http.Header{}
	p.Decorate(first, "")
	first.Add("Vary", "Accept-Encoding")
	p.Decorate(second, "")
	if got := second.Values("Vary"); !slices.Equal(got, []string{"Origin"}) || second.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("Vary %q, Access-Control-Allow-Origin %q; want Origin and none", got, second.Get("Access-Control-Allow-Origin"))
	}
	if got := first.Values("Vary"); !slices.Equal(got, []string{"Origin", "Accept-Encoding"}) {
		t.Fatalf("Vary %q, want Origin and Accept-Encoding", got)
	}
}
