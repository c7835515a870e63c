// Package headers holds the gateway's header rules, each written once for every server the
// gateway serves on (ADR-0047): what of a client's request goes upstream, what the gateway adds
// to it, and what of an upstream's answer reaches the client. The net/http codec applies them
// to header maps and the HTTP/1.1 fast path to header lines; a rule added here reaches both.
package headers

import (
	"net/http"
	"strings"

	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/requestid"

	"github.com/basaltplatform/basalt/gateway/internal/httpwire"
)

// Rule is what becomes of one of a client's request headers upstream.
type Rule uint8

const (
	// Pass sends the header upstream as the client sent it.
	Pass Rule = iota
	// Drop keeps the header from the upstream: hop-by-hop headers, anything a client could use
	// to pose as someone else (the platform's X-Basalt-* headers, forwarding headers, trace
	// context), and the headers the gateway sets itself (see Added).
	Drop
	// Trailers sends "TE: trailers" when the client's TE names trailers, which gRPC needs, and
	// nothing otherwise: nothing else of TE passes a proxy.
	Trailers
	// Deadline is a client's deadline header: it goes as it came unless the gateway sends the
	// call's deadline itself (Added.Timeout), which then replaces it.
	Deadline
)

// Upstream returns the rule of the request header named name, in any case.
func Upstream(name string) Rule {
	switch {
	case is(name, "Te"):
		return Trailers
	case is(name, ConnectTimeout) || is(name, GRPCTimeout):
		return Deadline
	case httpwire.HopByHop(name):
		return Drop
	}
	for _, d := range dropped {
		if is(name, d) {
			return Drop
		}
	}
	const platform = "X-Basalt-"
	if len(name) >= len(platform) && strings.EqualFold(name[:len(platform)], platform) {
		return Drop
	}
	return Pass
}

// dropped are the headers besides the hop-by-hop ones (httpwire.HopByHop) that never go
// upstream.
var dropped = [...]string{
	// The framing the upstream request gets anew.
	"Host", "Content-Length",
	// What a client could forge.
	"X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded", "X-Real-Ip", "Tracestate", "Baggage",
	// What the gateway sets itself.
	"X-Forwarded-For", requestid.Header, "Traceparent",
}

// The deadline headers of the protocols.
const (
	ConnectTimeout = "Connect-Timeout-Ms"
	GRPCTimeout    = "Grpc-Timeout"
)

// TrailersValue is the value a TE header that names trailers goes upstream with.
const TrailersValue = "trailers"

// TE returns the value the client's TE values go upstream with, or "" when none goes.
func TE(value string) string {
	if strings.Contains(strings.ToLower(value), TrailersValue) {
		return TrailersValue
	}
	return ""
}

// Listed reports whether the header name k is one of the comma-separated tokens in values: a
// Connection header naming other headers makes them hop-by-hop, so they are dropped too.
func Listed(values []string, k string) bool {
	for _, v := range values {
		for token := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(token), k) {
				return true
			}
		}
	}
	return false
}

// Added is what the gateway adds to a call upstream (ADR-0043). Forwarding holds what follows
// from the client's connection, which a server may write once for the calls of a connection;
// Call what each call sets anew.
type Added struct {
	// ClientIP is the client's address as text, "" when unknown.
	ClientIP string
	// TLS is true for a client that came over TLS.
	TLS bool
	// RequestID is the call's request id.
	RequestID string
	// Subject is the verified subject, "" for a public call.
	Subject string
	// Trace is the trace context the gateway propagates, when it traces.
	Trace http.Header
	// Timeout is the deadline header the gateway sends in place of the client's (its name is
	// TimeoutName), or "".
	TimeoutName, Timeout string
}

// Forwarding calls add for the forwarding headers: X-Forwarded-For with the client's address,
// and X-Forwarded-Proto only for a TLS client, since a plain client's scheme is the upstream's
// own connection's.
func (a *Added) Forwarding(add func(name, value string)) {
	if a.ClientIP != "" {
		add("X-Forwarded-For", a.ClientIP)
	}
	if a.TLS {
		add("X-Forwarded-Proto", "https")
	}
}

// Call calls add for the headers of the call itself: the request id, the verified subject,
// the gateway's trace context, and the deadline when the gateway sends it.
func (a *Added) Call(add func(name, value string)) {
	add(requestid.Header, a.RequestID)
	if a.Subject != "" {
		add(Subject, a.Subject)
	}
	for k, vv := range a.Trace {
		for _, v := range vv {
			add(k, v)
		}
	}
	if a.Timeout != "" {
		add(a.TimeoutName, a.Timeout)
	}
}

// Subject is the header that names the verified subject upstream.
const Subject = "X-Basalt-Subject"

// Relay is what becomes of one of an upstream answer's headers.
type Relay uint8

const (
	// Copy gives the header to the client as the upstream sent it.
	Copy Relay = iota
	// Skip keeps it from the client: a hop-by-hop header, or one the gateway set itself,
	// which wins (CORS, Retry-After, the request id).
	Skip
	// Join adds the upstream's values to the gateway's: Vary, since a cache must key the
	// answer on what the upstream varies by and on Origin alike.
	Join
)

// Answer returns the rule of the answer header named name, in any case; own says whether the
// gateway set a header of that name on the answer itself.
func Answer(name string, own bool) Relay {
	switch {
	case is(name, "Vary"):
		return Join
	case own || is(name, requestid.Header) || httpwire.HopByHop(name):
		return Skip
	}
	return Copy
}

// Challenge is the WWW-Authenticate value of a 401 answer that carries none of the upstream's
// (RFC 9110, section 11.6.1; every 401 has one): "Bearer" to a client that sent no bearer
// token, and error="invalid_token" to one that did, whether it was malformed, expired or
// revoked (RFC 6750, section 3). authorization is the client's Authorization header.
func Challenge(authorization string) []string {
	if authn.BearerToken(authorization) != "" {
		return invalidTokenChallenge
	}
	return bearerChallenge
}

// WWWAuthenticate is the challenge's header, in canonical form.
const WWWAuthenticate = "Www-Authenticate"

// Shared values; nothing modifies header slices once set.
var (
	bearerChallenge       = []string{"Bearer"}
	invalidTokenChallenge = []string{`Bearer error="invalid_token"`}
)

// is reports whether the header name k is want, in any case; lengths are compared first.
func is(k, want string) bool {
	return len(k) == len(want) && strings.EqualFold(k, want)
}

// Safe reports whether v can go upstream as a header value: no line break, no control
// character.
func Safe(v string) bool { return httpwire.SafeValue(v) }
