package gateway

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/basaltplatform/basalt/kernel/authn"

	"github.com/basaltplatform/basalt/gateway/internal/config"
)

// clock is a clock a test moves by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// TestJWKSAtTheEdge follows the key set the gateway publishes through a rotation and an outage
// of the auth service, on a clock moved by hand: the auth service's keys, public ones only,
// with an ETag and a max-age that ends when the gateway's copy is five minutes old; fetched
// again past that age; the old set while the auth service is down, not to be cached, and none
// once it is older than the least pre-publication of a key (ten minutes).
func TestJWKSAtTheEdge(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Now()}
	k := newKeys(t)
	f := newFixtureWithKeys(t, k, 1, nil, withJWKSOptions(authn.WithJWKSClock(clk.now)))
	auth := f.upstreams[0]
	get := func(header map[string]string) (*http.Response, string) {
		t.Helper()
		return f.do(t, http.MethodGet, authn.JWKSPath, "", header)
	}
	published := func(wantKid, wantMaxAge string, wantFetches int64) string {
		t.Helper()
		resp, body := get(nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("GET %s = %d %q %s", authn.JWKSPath, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		set, err := jwk.Parse([]byte(body))
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		key, ok := set.LookupKeyID(wantKid)
		if !ok || set.Len() != 1 {
			t.Fatalf("published %s, want the key %q alone", body, wantKid)
		}
		if _, private := key.(interface{ D() []byte }); private || strings.Contains(body, `"d"`) {
			t.Fatalf("a private key was published: %s", body)
		}
		if got := resp.Header.Get("Cache-Control"); got != "public, max-age="+wantMaxAge {
			t.Errorf("Cache-Control %q, want public, max-age=%s", got, wantMaxAge)
		}
		if n := auth.jwksFetches.Load(); n != wantFetches {
			t.Errorf("the auth service's set was fetched %d times, want %d", n, wantFetches)
		}
		etag := resp.Header.Get("ETag")
		if etag == "" {
			t.Fatal("no ETag")
		}
		return etag
	}

	etag := published(testKid, "300", 1)
	for _, tc := range []struct {
		ifNoneMatch string
		want        int
	}{
		{etag, http.StatusNotModified},
		{"W/" + etag, http.StatusNotModified},
		{`"other", ` + etag, http.StatusNotModified},
		{"*", http.StatusNotModified},
		{`"other"`, http.StatusOK},
	} {
		resp, body := get(map[string]string{"If-None-Match": tc.ifNoneMatch})
		if resp.StatusCode != tc.want || resp.Header.Get("ETag") != etag || (tc.want == http.StatusNotModified) != (body == "") {
			t.Errorf("If-None-Match %s = %d %q (ETag %q), want %d", tc.ifNoneMatch, resp.StatusCode, body, resp.Header.Get("ETag"), tc.want)
		}
	}
	clk.add(2 * time.Minute)
	if again := published(testKid, "180", 1); again != etag {
		t.Errorf("the same set has ETag %q, then %q", etag, again)
	}

	// The auth service rotates to a new key; past five minutes the gateway fetches the set again.
	next := newKeys(t)
	next.jwks = []byte(strings.ReplaceAll(string(next.jwks), testKid, "next-key"))
	auth.publish(next.jwks)
	clk.add(4 * time.Minute)
	if rotated := published("next-key", "300", 2); rotated == etag {
		t.Error("a new set kept the old ETag")
	}

	// The auth service goes down: the last set is published, not to be cached, until it is older
	// than the least pre-publication of a key, and then none.
	auth.publish(nil)
	clk.add(7 * time.Minute)
	published("next-key", "0", 3)
	clk.add(3*time.Minute + time.Second)
	resp, body := get(nil)
	if st := decodeStatus(t, body); resp.StatusCode != http.StatusServiceUnavailable || connect.Code(st.GetCode()) != connect.CodeUnavailable {
		t.Errorf("a set older than ten minutes = %d %s, want 503 unavailable", resp.StatusCode, body)
	}

	// Back up, the auth service's set is published again.
	auth.publish(next.jwks)
	clk.add(2 * time.Second)
	published("next-key", "300", 5)

	if resp, body := f.do(t, http.MethodPost, authn.JWKSPath, "{}", nil); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST %s = %d %s (Allow %q), want 405 allowing GET and HEAD", authn.JWKSPath, resp.StatusCode, body, resp.Header.Get("Allow"))
	}
}

// TestJWKSIsRateLimitedAsAPublicRoute wants the key set served from the public methods' bucket
// of the client's address: a client past it is refused with 429 and Retry-After, as REST is.
func TestJWKSIsRateLimitedAsAPublicRoute(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, func(c *config.Config) { c.RateLimits.Public = config.Rate{Rate: 0.001, Burst: 2} })
	for i := range 2 {
		if resp, body := f.do(t, http.MethodGet, authn.JWKSPath, "", nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("call %d = %d %s", i+1, resp.StatusCode, body)
		}
	}
	resp, body := f.do(t, http.MethodGet, authn.JWKSPath, "", nil)
	if st := decodeStatus(t, body); resp.StatusCode != http.StatusTooManyRequests || connect.Code(st.GetCode()) != connect.CodeResourceExhausted || resp.Header.Get("Retry-After") == "" {
		t.Errorf("past the bucket = %d %s (Retry-After %q), want 429 with Retry-After", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if n := metricValue(t, f, `basalt_gateway_rate_limited_total{route="/.well-known/jwks.json"}`); n != 1 {
		t.Errorf("%d refusals counted for the key set's route, want 1", n)
	}
	// The bucket is the public methods': a public call from the same address is refused too.
	resp, body = f.do(t, http.MethodPost, "/v1/auth/refresh", `{"refreshToken":"x"}`, map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a public call after the key set emptied the bucket = %d %s, want 429", resp.StatusCode, body)
	}
}
