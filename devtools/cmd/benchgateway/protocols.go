package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"

	identityv1 "github.com/basaltplatform/basalt/gen/go/basalt/identity/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/identity/v1/identityv1connect"

	"github.com/basaltplatform/basalt/devtools/internal/loadgen"
)

// protocol is one way of making the benchmark's call: the wire it goes over and the load
// generator that speaks it.
type protocol struct {
	// name is what -protocols selects it by.
	name string
	// title describes the call in the report.
	title string
	// h2 is true for HTTP/2 (h2c): h2load drives it, and the gateway serves it through
	// net/http's server only, so no "net/http" target is measured beside it.
	h2 bool
	// grpc is true when the call is gRPC, whose outcome h2load cannot see (it is in the
	// trailers): each target is checked with a real client before it is measured.
	grpc bool
}

var protocols = []protocol{
	{name: "http1", title: "Connect binary over HTTP/1.1 keep-alive"},
	{name: "grpc", title: "gRPC over h2c", h2: true, grpc: true},
	{name: "connect-h2", title: "Connect binary over h2c", h2: true},
}

// selectProtocols returns the protocols a comma-separated list names, in the benchmark's order.
func selectProtocols(list string) ([]protocol, error) {
	names := strings.Split(list, ",")
	for _, n := range names {
		if !slices.ContainsFunc(protocols, func(p protocol) bool { return p.name == n }) {
			return nil, fmt.Errorf("no protocol %q (known: http1, grpc, connect-h2)", n)
		}
	}
	var out []protocol
	for _, p := range protocols {
		if slices.Contains(names, p.name) {
			out = append(out, p)
		}
	}
	return out, nil
}

// request is the call of protocol p to the server at base, carrying token.
func (p protocol) request(base, token string, body []byte) loadgen.Request {
	req := loadgen.Request{
		Method: http.MethodPost,
		URL:    base + identityv1connect.IdentityServiceGetCurrentUserProcedure,
		Header: http.Header{"Authorization": {"Bearer " + token}},
		Body:   body,
	}
	if p.grpc {
		// gRPC frames the message: a byte of flags (not compressed) and its length.
		framed := make([]byte, 5, 5+len(body))
		framed[1], framed[2], framed[3], framed[4] = byte(len(body)>>24), byte(len(body)>>16), byte(len(body)>>8), byte(len(body))
		req.Body = append(framed, body...)
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		return req
	}
	req.Header.Set("Content-Type", "application/proto")
	req.Header.Set("Connect-Protocol-Version", "1")
	return req
}

// driver sends a target's calls: run for a timed phase, returning the load generator's CPU
// time too, and send for a counted one.
type driver struct {
	run  func(ctx context.Context, conns int, warmup, duration time.Duration) (loadgen.Result, time.Duration, error)
	send func(ctx context.Context, conns, n int) (failed int, first, err error)
}

// newDriver returns the driver of req over p: this process's HTTP/1.1 workers, or h2load.
func newDriver(p protocol, h2 loadgen.H2Load, req loadgen.Request) driver {
	if p.h2 {
		return driver{
			run: func(ctx context.Context, conns int, warmup, duration time.Duration) (loadgen.Result, time.Duration, error) {
				return h2.Run(ctx, req, conns, warmup, duration)
			},
			send: func(ctx context.Context, conns, n int) (int, error, error) { return h2.Send(ctx, req, conns, n) },
		}
	}
	return driver{
		run: func(ctx context.Context, conns int, warmup, duration time.Duration) (loadgen.Result, time.Duration, error) {
			before := procCPU(os.Getpid())
			r, err := loadgen.Run(ctx, req, conns, warmup, duration)
			return r, procCPU(os.Getpid()).sub(before).total(), err
		},
		send: func(ctx context.Context, conns, n int) (int, error, error) { return loadgen.Send(ctx, req, conns, n) },
	}
}

// check makes one call of protocol p to base with a real client and fails unless it
// succeeds: h2load counts a gRPC call that failed in its trailers as a success.
func (p protocol) check(ctx context.Context, base, token string) error {
	if !p.h2 {
		return nil
	}
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	transport := &http.Transport{Protocols: protocols, DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}
	defer transport.CloseIdleConnections()
	var opts []connect.ClientOption
	if p.grpc {
		opts = append(opts, connect.WithGRPC())
	}
	client := identityv1connect.NewIdentityServiceClient(&http.Client{Transport: transport}, base, opts...)
	req := connect.NewRequest(&identityv1.GetCurrentUserRequest{})
	req.Header().Set("Authorization", "Bearer "+token)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := client.GetCurrentUser(ctx, req); err != nil {
		return fmt.Errorf("%s call to %s: %w", p.name, base, err)
	}
	return nil
}
