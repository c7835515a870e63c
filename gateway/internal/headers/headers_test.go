package headers

import (
	"net/http"
	"slices"
	"testing"
)

func TestUpstream(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		want Rule
	}{
		{"Content-Type", Pass},
		{"authorization", Pass},
		{"X-Custom", Pass},
		{"X-Basalt", Pass},
		{"X-Basalt-Subject", Drop},
		{"x-basalt-service-token", Drop},
		{"Connection", Drop},
		{"keep-alive", Drop},
		{"Proxy-Connection", Drop},
		{"Proxy-Authorization", Drop},
		{"Transfer-Encoding", Drop},
		{"Upgrade", Drop},
		{"Trailer", Drop},
		{"Host", Drop},
		{"Content-Length", Drop},
		{"X-Forwarded-For", Drop},
		{"x-forwarded-proto", Drop},
		{"X-Request-Id", Drop},
		{"Traceparent", Drop},
		{"Baggage", Drop},
		{"TE", Trailers},
		{"Connect-Timeout-Ms", Deadline},
		{"grpc-timeout", Deadline},
	}
	for _, tt := range tests {
		if got := Upstream(tt.name); got != tt.want {
			t.Errorf("Upstream(%q) = %d, want %d", tt.name, got, tt.want)
		}
	}
	for v, want := range map[string]string{"trailers": "trailers", "Trailers, deflate": "trailers", "deflate": "", "": ""} {
		if got := TE(v); got != want {
			t.Errorf("TE(%q) = %q, want %q", v, got, want)
		}
	}
}

func TestAdded(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name             string
		added            Added
		forwarding, call []string
	}{
		{"a public call from a plain client", Added{ClientIP: "192.0.2.1", RequestID: "r-1"},
			[]string{"X-Forwarded-For: 192.0.2.1"}, []string{"X-Request-Id: r-1"}},
		{"an authenticated call over TLS with a deadline and a trace", Added{
			ClientIP: "192.0.2.1", TLS: true, RequestID: "r-2", Subject: "user-1",
			Trace:       http.Header{"Traceparent": {"00-1-2-01"}},
			TimeoutName: ConnectTimeout, Timeout: "900",
		}, []string{"X-Forwarded-For: 192.0.2.1", "X-Forwarded-Proto: https"},
			[]string{"X-Request-Id: r-2", "X-Basalt-Subject: user-1", "Traceparent: 00-1-2-01", "Connect-Timeout-Ms: 900"}},
		{"an unknown client address", Added{RequestID: "r-3"}, nil, []string{"X-Request-Id: r-3"}},
	}
	for _, tt := range tests {
		var forwarding, call []string
		tt.added.Forwarding(func(k, v string) { forwarding = append(forwarding, k+": "+v) })
		tt.added.Call(func(k, v string) { call = append(call, k+": "+v) })
		if !slices.Equal(forwarding, tt.forwarding) || !slices.Equal(call, tt.call) {
			t.Errorf("%s: forwarding %q, call %q; want %q, %q", tt.name, forwarding, call, tt.forwarding, tt.call)
		}
	}
}

func TestAnswer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		own  bool
		want Relay
	}{
		{"Content-Type", false, Copy},
		{"Grpc-Status", false, Copy},
		{"x-custom", false, Copy},
		{"Www-Authenticate", false, Copy},
		{"Access-Control-Allow-Origin", true, Skip},
		{"Retry-After", true, Skip},
		{"X-Request-Id", false, Skip},
		{"x-request-id", true, Skip},
		{"Keep-Alive", false, Skip},
		{"Trailer", false, Skip},
		{"Vary", false, Join},
		{"vary", true, Join},
	}
	for _, tt := range tests {
		if got := Answer(tt.name, tt.own); got != tt.want {
			t.Errorf("Answer(%q, %t) = %d, want %d", tt.name, tt.own, got, tt.want)
		}
	}
	if got := Challenge(""); !slices.Equal(got, []string{"Bearer"}) {
		t.Errorf("Challenge without a token = %q", got)
	}
	if got := Challenge("Bearer x.y.z"); !slices.Equal(got, []string{`Bearer error="invalid_token"`}) {
		t.Errorf("Challenge with a token = %q", got)
	}
}
