// Package clientinfo carries facts about the client behind a request (its address and user
// agent) so that sessions and audit events can record them.
package clientinfo

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Info describes the client of a request.
type Info struct {
	// IP is the client's address: the first hop of X-Forwarded-For, which the gateway sets
	// after stripping what the client sent, or else the connection's peer.
	IP string
	// UserAgent is the client's User-Agent header, cut to 512 bytes.
	UserAgent string
}

type key struct{}

// With returns a context carrying info.
func With(ctx context.Context, info Info) context.Context {
	return context.WithValue(ctx, key{}, info)
}

// From returns the info ctx carries.
func From(ctx context.Context) Info {
	info, _ := ctx.Value(key{}).(Info)
	return info
}

// FromRequest reads the client's address and user agent from r.
func FromRequest(r *http.Request) Info {
	info := Info{UserAgent: r.UserAgent()}
	if len(info.UserAgent) > 512 {
		info.UserAgent = strings.ToValidUTF8(info.UserAgent[:512], "")
	}
	if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
		first, _, _ := strings.Cut(xff, ",")
		if addr, err := netip.ParseAddr(strings.TrimSpace(first)); err == nil {
			info.IP = addr.String()
			return info
		}
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if addr, err := netip.ParseAddr(host); err == nil {
			info.IP = addr.Unmap().String()
		}
	}
	return info
}
