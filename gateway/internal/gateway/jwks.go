package gateway

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"connectrpc.com/connect"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// The gateway publishes the platform's signing keys at /.well-known/jwks.json (authn.JWKSPath),
// so that a verifier outside the platform needs no route to the auth service: the set the
// gateway itself verifies tokens with, as its cache of the auth service's set holds it (public
// signing keys only, see authn.ParseJWKS), refreshed as that cache refreshes.

const (
	// jwksFresh is the age up to which the gateway publishes the set it holds as it is: its
	// cache's age (the kernel's), past which it fetches the set again first. A client may keep
	// what it got for what is left of it (Cache-Control: max-age).
	jwksFresh = 5 * time.Minute
	// jwksStale is the age past which the gateway publishes no set, when fetching a new one
	// failed: the least time the auth service publishes a key before it signs with it
	// (BASALT_AUTH_KEY_PREPUBLISH is at least 10m, ADR-0004). A verifier that holds a set no
	// older knows every key that signs tokens now.
	jwksStale = 10 * time.Minute
)

// jwksDocument is a set as the gateway publishes it, made once per set fetched.
type jwksDocument struct {
	set  jwk.Set
	body []byte
	etag string
}

var (
	errNoKeys     = connect.NewError(connect.CodeNotFound, errors.New("this gateway publishes no signing keys"))
	errKeysStale  = connect.NewError(connect.CodeUnavailable, errors.New("the signing keys are not available; retry shortly"))
	errJWKSMethod = connect.NewError(connect.CodeUnimplemented, errors.New("the key set is read with GET"))
)

// serveJWKS answers GET /.well-known/jwks.json: rate limited as the public methods are, the set
// with a max-age that keeps a cache's copy within jwksFresh of its fetch and an ETag, which
// http.ServeContent compares (304 for a request that holds the set already, as for the OpenAPI
// document); with a set past jwksStale, unavailable.
func (g *Gateway) serveJWKS(w http.ResponseWriter, r *http.Request) {
	c := callFrom(r.Context())
	route := g.jwksRoute
	c.route, c.procedure = route.Index, route.Procedure
	h := w.Header()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		c.failed(errJWKSMethod)
		writeRESTError(w, http.StatusMethodNotAllowed, statusOfError(errJWKSMethod))
		return
	}
	ctx := r.Context()
	if retryAfter, err := g.allow(ctx, route, c.memo.bucketKey(route.Bucket, c.memo.addressKey(c.addr))); err != nil {
		h.Set("Retry-After", retryAfter)
		g.failREST(w, c, err)
		return
	}
	if g.jwks == nil {
		g.failREST(w, c, errNoKeys)
		return
	}
	set, age, err := g.jwks.Set(ctx, jwksFresh)
	if set == nil || age > jwksStale {
		g.o.log.WarnContext(ctx, "jwks: no key set fresh enough to publish", "age", age, "error", err)
		c.cause = err
		g.failREST(w, c, errKeysStale)
		return
	}
	doc, err := g.jwksDocument(set)
	if err != nil {
		c.cause = err
		g.failREST(w, c, errKeysStale)
		return
	}
	h.Set("Content-Type", "application/json")
	h.Set("Etag", doc.etag)
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(int(max(jwksFresh-age, 0)/time.Second)))
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(doc.body))
}

// jwksDocument returns the document of set, made again only when the cache fetched another.
func (g *Gateway) jwksDocument(set jwk.Set) (*jwksDocument, error) {
	if d := g.jwksDoc.Load(); d != nil && d.set == set {
		return d, nil
	}
	body, err := json.Marshal(set)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	d := &jwksDocument{set: set, body: body, etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`}
	g.jwksDoc.Store(d)
	return d, nil
}
