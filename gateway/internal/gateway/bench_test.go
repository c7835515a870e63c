package gateway

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"

	"google.golang.org/protobuf/proto"

	identityv1 "github.com/basaltplatform/basalt/gen/go/basalt/identity/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/identity/v1/identityv1connect"
	"github.com/basaltplatform/basalt/kernel/testkit"

	"github.com/basaltplatform/basalt/gateway/internal/accesslog"
	"github.com/basaltplatform/basalt/gateway/internal/config"
)

// BenchmarkUnaryThroughGateway measures one authenticated unary call from an HTTP/1.1 client
// through the gateway (token verification, rate limiting, JSON access log) to a kernel server,
// all on loopback in this process. Its allocations per call are the gateway's, the client's and
// the upstream's together; the client and upstream stay the same from run to run, so a change
// in allocs/op is a change in the gateway's hot path.
func BenchmarkUnaryThroughGateway(b *testing.B) {
	k := newKeys(b)
	up := startUpstream(b, "upstream-a", k.jwks)
	cfg := config.Defaults()
	cfg.Auth.Issuer, cfg.Auth.Audience = testIssuer, testAudience
	cfg.Upstreams = map[string][]string{"auth": {up.url}, "identity": {up.url}}
	cfg.RateLimits.Authenticated.Rate, cfg.RateLimits.Authenticated.Burst = 1e9, 1e9
	// No admin listener: its default port may be another gateway's on this machine.
	cfg.AdminListen = ""
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	// The logs are written as in production (JSON at info), to nowhere.
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	g, err := New(cfg, WithLogger(log), WithAccessLog(accesslog.New(io.Discard)), WithListener(ln))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(g.Close)
	testkit.Serve(b, g)
	body, err := proto.Marshal(&identityv1.GetCurrentUserRequest{})
	if err != nil {
		b.Fatal(err)
	}
	url := "http://" + g.Addr().String() + identityv1connect.IdentityServiceGetCurrentUserProcedure
	token := "Bearer " + k.token(b, "bench-user")
	client := testkit.HTTP1Client(b)
	call := func() error {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header["Content-Type"] = []string{"application/proto"}
		req.Header["Connect-Protocol-Version"] = []string{"1"}
		req.Header["Authorization"] = []string{token}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return &statusError{resp.StatusCode}
		}
		return nil
	}
	// The first call loads the signing keys and opens the connections.
	if err := call(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := call(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

type statusError struct{ status int }

func (e *statusError) Error() string { return "unexpected status " + http.StatusText(e.status) }
