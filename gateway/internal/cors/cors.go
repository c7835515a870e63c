// Package cors answers browsers' cross-origin checks for the gateway: preflight requests, and
// the response headers of actual requests. The allowed and exposed headers are those the
// Connect, gRPC-Web and REST protocols use (as connectrpc.com/cors lists them) plus the
// platform's own, so browser clients work without anyone listing protocol headers by hand.
package cors

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	connectcors "connectrpc.com/cors"
)

// Policy decides which origins may call.
type Policy struct {
	exact       map[string]bool
	anyPort     []string // "http://localhost" for "http://localhost:*"
	any         bool
	credentials bool

	allowMethods  string
	allowHeaders  map[string]bool
	allowHeadersV string
	exposeHeaders string
	maxAge        string
}

// New returns a policy for origins: exact origins ("https://app.example.com"), origins on any
// port ("http://localhost:*"), or "*" for any origin, which is refused together with
// credentials by the configuration and so is never answered with credentials here.
func New(origins []string, credentials bool, maxAge time.Duration) *Policy {
	p := &Policy{exact: map[string]bool{}, credentials: credentials, allowHeaders: map[string]bool{}}
	for _, o := range origins {
		switch {
		case o == "*":
			p.any = true
		case strings.HasSuffix(o, ":*"):
			p.anyPort = append(p.anyPort, strings.ToLower(strings.TrimSuffix(o, ":*")))
		default:
			p.exact[strings.ToLower(o)] = true
		}
	}
	if p.any {
		p.credentials = false
	}
	headers := append(connectcors.AllowedHeaders(), "Authorization", "X-Request-Id")
	for _, h := range headers {
		p.allowHeaders[strings.ToLower(h)] = true
	}
	p.allowHeadersV = strings.Join(headers, ", ")
	methods := append(connectcors.AllowedMethods(), http.MethodPut, http.MethodPatch, http.MethodDelete)
	slices.Sort(methods)
	p.allowMethods = strings.Join(slices.Compact(methods), ", ")
	p.exposeHeaders = strings.Join(append(connectcors.ExposedHeaders(), "X-Request-Id", "Retry-After"), ", ")
	p.maxAge = strconv.Itoa(int(maxAge / time.Second))
	return p
}

// Allowed reports whether origin may call.
func (p *Policy) Allowed(origin string) bool {
	if origin == "" {
		return false
	}
	if p.any {
		return true
	}
	o := strings.ToLower(origin)
	if p.exact[o] {
		return true
	}
	for _, base := range p.anyPort {
		rest, ok := strings.CutPrefix(o, base)
		if !ok {
			continue
		}
		if rest == "" {
			return true
		}
		if port, ok := strings.CutPrefix(rest, ":"); ok && isPort(port) {
			return true
		}
	}
	return false
}

func isPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0 && n < 65536 && s[0] != '0' && s[0] != '+'
}

// IsPreflight reports whether r is a CORS preflight request.
func IsPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != ""
}

// Preflight answers a preflight request: 204 with the allowed methods and headers for an
// allowed origin asking for allowed headers, 403 without any CORS header otherwise.
func (p *Policy) Preflight(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Add("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
	origin := r.Header.Get("Origin")
	if !p.Allowed(origin) || !p.headersAllowed(r.Header.Values("Access-Control-Request-Headers")) {
		w.WriteHeader(http.StatusForbidden)
		return
	}
	p.allowOrigin(h, origin)
	h.Set("Access-Control-Allow-Methods", p.allowMethods)
	h.Set("Access-Control-Allow-Headers", p.allowHeadersV)
	h.Set("Access-Control-Max-Age", p.maxAge)
	w.WriteHeader(http.StatusNoContent)
}

func (p *Policy) headersAllowed(values []string) bool {
	for _, v := range values {
		for name := range strings.SplitSeq(v, ",") {
			name = strings.ToLower(strings.TrimSpace(name))
			if name != "" && !p.allowHeaders[name] {
				return false
			}
		}
	}
	return true
}

// Decorate adds the CORS response headers for an actual (non-preflight) request from an
// allowed origin (origin is "" for a request without one). Requests from other origins are
// served without them, so the browser keeps the response from the page. Every response, also
// to a request without Origin, says that it varies by Origin, so that no cache hands a response
// made for one origin (or for none) to a request from another (Fetch standard, "CORS protocol
// and HTTP caches"): call Decorate for every answer.
func (p *Policy) Decorate(h http.Header, origin string) {
	if _, set := h["Vary"]; set {
		h.Add("Vary", VaryOrigin)
	} else {
		// A shared one-value slice: appending to it copies it.
		h["Vary"] = varyOrigin
	}
	p.Allow(h, origin)
}

// Allow is Decorate for a caller that writes the Vary line itself ("Vary: " + VaryOrigin).
func (p *Policy) Allow(h http.Header, origin string) {
	if !p.Allowed(origin) {
		return
	}
	p.allowOrigin(h, origin)
	h.Set("Access-Control-Expose-Headers", p.exposeHeaders)
}

// VaryOrigin is the Vary value of every answer.
const VaryOrigin = "Origin"

var varyOrigin = []string{VaryOrigin}

func (p *Policy) allowOrigin(h http.Header, origin string) {
	if p.any && !p.credentials {
		h.Set("Access-Control-Allow-Origin", "*")
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
	if p.credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
}
