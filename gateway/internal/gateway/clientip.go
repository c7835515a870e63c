package gateway

import (
	"net/http"
	"net/netip"
	"strings"
)

// clientAddr returns the address of the client behind r: the peer's address, unless the peer
// is a trusted proxy, in which case the nearest address in X-Forwarded-For that is not a
// trusted proxy. Anything a client could forge is ignored unless a trusted proxy vouches for it.
func clientAddr(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return clientAddrOf(peer.Addr(), func() []string { return r.Header.Values("X-Forwarded-For") }, trusted)
}

// clientAddrOf is clientAddr for a peer and the X-Forwarded-For values, which are only read
// when the peer is trusted.
func clientAddrOf(peer netip.Addr, forwardedFor func() []string, trusted []netip.Prefix) netip.Addr {
	if !peer.IsValid() {
		return netip.Addr{}
	}
	addr := peer.Unmap()
	if !isTrusted(addr, trusted) {
		return addr
	}
	hops := strings.Split(strings.Join(forwardedFor(), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return addr
		}
		addr = hop.Unmap()
		if !isTrusted(addr, trusted) {
			return addr
		}
	}
	return addr
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// limitKey is the rate-limit key of a client address: the address for IPv4, and its /64 for
// IPv6, since one IPv6 client usually holds a whole /64.
func limitKey(a netip.Addr) string {
	if a.Is6() {
		p, err := a.Prefix(64)
		if err == nil {
			return p.String()
		}
	}
	return a.String()
}
