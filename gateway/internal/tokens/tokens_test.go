package tokens_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/errs"

	"github.com/basaltplatform/basalt/gateway/internal/tokens"
)

var epoch = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// clock is a fake clock the test moves by hand.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(epoch.UnixNano())
	return c
}

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// fakeVerifier is a test double of the Verifier interface: it accepts the tokens in valid
// (with their principals) and counts how often each token reached it.
type fakeVerifier struct {
	mu    sync.Mutex
	valid map[string]authn.Principal
	calls map[string]int
	total atomic.Int64
}

func newFakeVerifier() *fakeVerifier {
	return &fakeVerifier{valid: map[string]authn.Principal{}, calls: map[string]int{}}
}

func (f *fakeVerifier) Verify(_ context.Context, token string) (authn.Principal, error) {
	f.total.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[token]++
	p, ok := f.valid[token]
	if !ok {
		return authn.Principal{}, authn.ErrInvalid
	}
	return p, nil
}

func (f *fakeVerifier) accept(token string, expires time.Time) authn.Principal {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := authn.Principal{Subject: "user-" + token, SessionID: "s-" + token, TokenID: "j-" + token, ExpiresAt: expires}
	f.valid[token] = p
	return p
}

func (f *fakeVerifier) callsOf(token string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[token]
}

func TestCacheHitAvoidsVerify(t *testing.T) {
	t.Parallel()
	clk := newClock()
	v := newFakeVerifier()
	c := tokens.New(v, 100, tokens.WithClock(clk.now))
	alice := v.accept("alice", epoch.Add(15*time.Minute))
	bob := v.accept("bob", epoch.Add(15*time.Minute))
	tests := []struct {
		token     string
		want      authn.Principal
		wantCalls int
	}{
		{"alice", alice, 1},
		{"alice", alice, 1},
		{"bob", bob, 1},
		{"alice", alice, 1},
		{"bob", bob, 1},
		{"alic", authn.Principal{}, 1}, // a different text is a different token
		{"alice ", authn.Principal{}, 1},
	}
	for i, tt := range tests {
		clk.advance(time.Minute)
		p, err := c.Verify(context.Background(), tt.token)
		if (err == nil) != (tt.want != authn.Principal{}) {
			t.Fatalf("call %d (%q): err = %v", i, tt.token, err)
		}
		if p != tt.want {
			t.Fatalf("call %d (%q): principal %+v, want %+v", i, tt.token, p, tt.want)
		}
		if got := v.callsOf(tt.token); got != tt.wantCalls {
			t.Fatalf("call %d (%q): the verifier saw the token %d times, want %d", i, tt.token, got, tt.wantCalls)
		}
	}
	if got := c.Len(); got != 2 {
		t.Fatalf("Len() = %d, want 2", got)
	}
}

func TestCacheDoesNotServeExpiredTokens(t *testing.T) {
	t.Parallel()
	const lifetime = 15 * time.Minute
	tests := []struct {
		name      string
		advance   time.Duration // after the first verification
		wantCalls int           // after the second
	}{
		{"at once", 0, 1},
		{"half way", lifetime / 2, 1},
		{"a nanosecond before expiry", lifetime - time.Nanosecond, 1},
		{"at expiry", lifetime, 2},
		{"after expiry", lifetime + time.Hour, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clk := newClock()
			v := newFakeVerifier()
			want := v.accept("tok", epoch.Add(lifetime))
			c := tokens.New(v, 100, tokens.WithClock(clk.now))
			if _, err := c.Verify(context.Background(), "tok"); err != nil {
				t.Fatal(err)
			}
			clk.advance(tt.advance)
			// The fake verifier still accepts the token (as the real one does within its clock
			// skew); what matters is whether the cache answered without asking it.
			p, err := c.Verify(context.Background(), "tok")
			if err != nil || p != want {
				t.Fatalf("Verify = %+v, %v", p, err)
			}
			if got := v.callsOf("tok"); got != tt.wantCalls {
				t.Fatalf("the verifier saw the token %d times, want %d", got, tt.wantCalls)
			}
			// An expired token leaves the cache and is not put back.
			wantLen := 1
			if tt.wantCalls == 2 {
				wantLen = 0
			}
			if got := c.Len(); got != wantLen {
				t.Fatalf("Len() = %d, want %d", got, wantLen)
			}
			if _, err := c.Verify(context.Background(), "tok"); err != nil {
				t.Fatal(err)
			}
			if got := v.callsOf("tok"); got != 2*tt.wantCalls-1 {
				t.Fatalf("after a third call the verifier saw the token %d times, want %d", got, 2*tt.wantCalls-1)
			}
		})
	}
}

func TestCacheNeverCachesFailures(t *testing.T) {
	t.Parallel()
	clk := newClock()
	v := newFakeVerifier()
	c := tokens.New(v, 100, tokens.WithClock(clk.now))
	for i := 1; i <= 3; i++ {
		p, err := c.Verify(context.Background(), "rotated")
		if !errors.Is(err, authn.ErrInvalid) {
			t.Fatalf("call %d: err = %v, want the verifier's error", i, err)
		}
		if p != (authn.Principal{}) {
			t.Fatalf("call %d: a failed verification returned principal %+v", i, p)
		}
		if got := v.callsOf("rotated"); got != i {
			t.Fatalf("call %d: the verifier saw the token %d times: a failure was cached", i, got)
		}
	}
	if got := c.Len(); got != 0 {
		t.Fatalf("Len() = %d after failures, want 0", got)
	}
	// The verifier learns the token's key (a rotation): the next call succeeds at once.
	want := v.accept("rotated", epoch.Add(time.Hour))
	if p, err := c.Verify(context.Background(), "rotated"); err != nil || p != want {
		t.Fatalf("after the rotation: %+v, %v", p, err)
	}
}

// TestCacheDoesNotCacheTokensPastExpiry checks a token the verifier accepted within its clock
// skew although it has expired: the caller gets the verifier's answer, the cache keeps nothing.
func TestCacheDoesNotCacheTokensPastExpiry(t *testing.T) {
	t.Parallel()
	clk := newClock()
	v := newFakeVerifier()
	want := v.accept("late", epoch.Add(-30*time.Second))
	c := tokens.New(v, 100, tokens.WithClock(clk.now))
	for i := 1; i <= 2; i++ {
		if p, err := c.Verify(context.Background(), "late"); err != nil || p != want {
			t.Fatalf("call %d: %+v, %v", i, p, err)
		}
		if got := v.callsOf("late"); got != i {
			t.Fatalf("call %d: the verifier saw the token %d times, want %d", i, got, i)
		}
	}
	if got := c.Len(); got != 0 {
		t.Fatalf("Len() = %d, want 0", got)
	}
}

func TestCacheSizeBound(t *testing.T) {
	t.Parallel()
	for _, size := range []int{1, 2, 5, 10, 31, 32, 33, 100, 1000, 4096} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			t.Parallel()
			clk := newClock()
			v := newFakeVerifier()
			c := tokens.New(v, size, tokens.WithClock(clk.now))
			n := 20*size + 100
			for i := range n {
				tok := fmt.Sprintf("token-%d", i)
				v.accept(tok, epoch.Add(time.Hour))
				if _, err := c.Verify(context.Background(), tok); err != nil {
					t.Fatal(err)
				}
				if i%31 == 0 || i == n-1 {
					if got := c.Len(); got > size || got < 1 {
						t.Fatalf("after %d tokens Len() = %d, want within [1, %d]", i+1, got, size)
					}
				}
			}
			// Eviction keeps three quarters of a full shard, so the cache stays useful.
			if got := c.Len(); got < size/2 {
				t.Fatalf("Len() = %d after the flood, want at least %d", got, size/2)
			}
		})
	}
}

// TestCacheEvictsExpiredFirst checks that a full cache drops expired tokens before live ones.
func TestCacheEvictsExpiredFirst(t *testing.T) {
	t.Parallel()
	clk := newClock()
	v := newFakeVerifier()
	c := tokens.New(v, 256, tokens.WithClock(clk.now))
	v.accept("long-lived", epoch.Add(24*time.Hour))
	if _, err := c.Verify(context.Background(), "long-lived"); err != nil {
		t.Fatal(err)
	}
	for i := range 10_000 {
		tok := fmt.Sprintf("short-%d", i)
		v.accept(tok, clk.now().Add(time.Second))
		if _, err := c.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
		clk.advance(2 * time.Second) // every earlier token has expired by the next one
	}
	if _, err := c.Verify(context.Background(), "long-lived"); err != nil {
		t.Fatal(err)
	}
	if got := v.callsOf("long-lived"); got != 1 {
		t.Fatalf("the live token was evicted for expired ones: verified %d times", got)
	}
}

func TestCacheSizeZeroDisablesCaching(t *testing.T) {
	t.Parallel()
	for _, size := range []int{0, -1, -64} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			t.Parallel()
			clk := newClock()
			v := newFakeVerifier()
			want := v.accept("tok", epoch.Add(time.Hour))
			c := tokens.New(v, size, tokens.WithClock(clk.now))
			for i := 1; i <= 3; i++ {
				if p, err := c.Verify(context.Background(), "tok"); err != nil || p != want {
					t.Fatalf("call %d: %+v, %v", i, p, err)
				}
				if got := v.callsOf("tok"); got != i {
					t.Fatalf("call %d: the verifier saw the token %d times, want %d", i, got, i)
				}
			}
			if got := c.Len(); got != 0 {
				t.Fatalf("Len() = %d, want 0", got)
			}
		})
	}
}

func TestCacheConcurrent(t *testing.T) {
	t.Parallel()
	clk := newClock()
	v := newFakeVerifier()
	c := tokens.New(v, 1000, tokens.WithClock(clk.now))
	want := map[string]authn.Principal{}
	for i := range 50 {
		tok := fmt.Sprintf("tok-%d", i)
		want[tok] = v.accept(tok, epoch.Add(time.Hour))
	}
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	for g := range 16 {
		wg.Go(func() {
			for i := range 500 {
				tok := fmt.Sprintf("tok-%d", (g+i)%60) // tok-50..59 are invalid
				p, err := c.Verify(context.Background(), tok)
				if w, ok := want[tok]; ok && (err != nil || p != w) || !ok && err == nil {
					errc <- fmt.Errorf("%s: %+v, %v", tok, p, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if got := c.Len(); got != 50 {
		t.Fatalf("Len() = %d, want the 50 valid tokens", got)
	}
	// Every valid token is cached now: another pass reaches the verifier for invalid ones only.
	before := v.total.Load()
	for i := range 60 {
		_, _ = c.Verify(context.Background(), fmt.Sprintf("tok-%d", i))
	}
	if got := v.total.Load() - before; got != 10 {
		t.Fatalf("a pass over 50 cached and 10 invalid tokens made %d verifications, want 10", got)
	}
}

// signingKey returns a private Ed25519 JWK with a kid and alg, and its public key set, as the
// auth service makes them.
func signingKey(t testing.TB, kid string) (jwk.Key, jwk.Set) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := jwk.FromRaw(priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := key.Set(jwk.KeyIDKey, kid); err != nil {
		t.Fatal(err)
	}
	if err := key.Set(jwk.AlgorithmKey, jwa.EdDSA); err != nil {
		t.Fatal(err)
	}
	pub, err := key.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		t.Fatal(err)
	}
	return key, set
}

func issue(t testing.TB, key jwk.Key, subject string, issued, expires time.Time) (string, authn.AccessClaims) {
	t.Helper()
	c := authn.AccessClaims{
		Issuer: "basalt", Audience: "basalt", Subject: subject, SessionID: "s-" + subject,
		TokenID: "j-" + subject, IssuedAt: issued, ExpiresAt: expires,
	}
	tok, err := authn.Issue(key, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok, c
}

// counting counts the calls that reach the real verifier.
type counting struct {
	tokens.Verifier
	n atomic.Int64
}

func (c *counting) Verify(ctx context.Context, token string) (authn.Principal, error) {
	c.n.Add(1)
	return c.Verifier.Verify(ctx, token)
}

func TestCacheWithTheKernelVerifier(t *testing.T) {
	t.Parallel()
	key, set := signingKey(t, "k1")
	otherKey, _ := signingKey(t, "k2")
	clk := newClock()
	real := &counting{Verifier: authn.NewVerifier(authn.NewStaticKeys(set), "basalt", "basalt", authn.WithVerifierClock(clk.now))}
	c := tokens.New(real, 100, tokens.WithClock(clk.now))
	expires := epoch.Add(15 * time.Minute)
	tok, claims := issue(t, key, "0193e6c4-7d43-7b5e-9f3a-3c1d2e4f5a6b", epoch, expires)
	foreign, _ := issue(t, otherKey, "mallory", epoch, expires)
	parts := strings.Split(tok, ".")
	forged, _ := issue(t, key, "mallory", epoch, expires)
	forgedParts := strings.Split(forged, ".")
	spliced := parts[0] + "." + forgedParts[1] + "." + parts[2] // mallory's claims, alice's signature

	want := authn.Principal{Subject: claims.Subject, SessionID: claims.SessionID, TokenID: claims.TokenID, ExpiresAt: expires}
	steps := []struct {
		name      string
		advance   time.Duration
		token     string
		wantErr   bool
		wantCalls int64 // verifier calls so far
	}{
		{"first use verifies", time.Minute, tok, false, 1},
		{"second use is cached", time.Minute, tok, false, 1},
		{"a token of an unknown key fails", 0, foreign, true, 2},
		{"and is not cached", 0, foreign, true, 3},
		{"a spliced token fails", 0, spliced, true, 4},
		{"and is not cached", 0, spliced, true, 5},
		{"the valid token is still cached", 10 * time.Minute, tok, false, 5},
		{"past expiry the cache asks again (accepted within the skew)", 3*time.Minute + 30*time.Second, tok, false, 6},
		{"and does not keep it", 0, tok, false, 7},
		{"past the skew the token is refused", time.Minute, tok, true, 8},
	}
	for _, s := range steps {
		clk.advance(s.advance)
		p, err := c.Verify(context.Background(), s.token)
		if s.wantErr {
			if !errs.Is(err, errs.KindUnauthenticated) {
				t.Fatalf("%s: err = %v, want unauthenticated", s.name, err)
			}
		} else if err != nil || p.Subject != want.Subject || p.SessionID != want.SessionID || p.TokenID != want.TokenID || !p.ExpiresAt.Equal(want.ExpiresAt) {
			t.Fatalf("%s: %+v, %v; want %+v", s.name, p, err, want)
		}
		if got := real.n.Load(); got != s.wantCalls {
			t.Fatalf("%s: %d verifications so far, want %d", s.name, got, s.wantCalls)
		}
	}
}

func benchmarkVerify(b *testing.B, size int) {
	key, set := signingKey(b, "k1")
	v := authn.NewVerifier(authn.NewStaticKeys(set), "basalt", "basalt")
	c := tokens.New(v, size)
	toks := make([]string, 64)
	for i := range toks {
		toks[i], _ = issue(b, key, fmt.Sprintf("user-%d", i), time.Now(), time.Now().Add(time.Hour))
	}
	var next atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := next.Add(1)
		ctx := context.Background()
		for pb.Next() {
			i++
			if _, err := c.Verify(ctx, toks[i%uint64(len(toks))]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkVerifyCached(b *testing.B) { benchmarkVerify(b, 100_000) }

// BenchmarkVerifyUncached is what every request would cost without the cache.
func BenchmarkVerifyUncached(b *testing.B) { benchmarkVerify(b, 0) }

// TestVerifyForKeepsTheConnectionsLastToken checks the rule a connection's last token is used
// by: the same token, strictly before it expires at the call's time, without the verifier;
// anything else through the cache; and nothing kept by a cache of size 0, which must verify
// every call. The cache's own clock is moved past the tokens' expiry after the first call, so
// the shared cache cannot answer and every call it would take reaches the verifier.
func TestVerifyForKeepsTheConnectionsLastToken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	exp := epoch.Add(time.Hour)
	for _, size := range []int{100, 0} {
		t.Run(fmt.Sprintf("size %d", size), func(t *testing.T) {
			t.Parallel()
			clk := newClock()
			v := newFakeVerifier()
			v.accept("a", exp)
			v.accept("b", exp)
			c := tokens.New(v, size, tokens.WithClock(clk.now))
			var last tokens.Last
			if p, err := c.VerifyFor(ctx, "a", epoch, &last); err != nil || p.Subject != "user-a" {
				t.Fatalf("first call: %+v, %v", p, err)
			}
			clk.advance(2 * time.Hour)
			kept := 0 // verifications of a call the last token answers
			if size == 0 {
				kept = 1
			}
			for _, tt := range []struct {
				name   string
				token  string
				at     time.Time
				verify int
			}{
				{"the same token, read into another string", strings.Clone("a"), exp.Add(-time.Second), kept},
				{"the same token a nanosecond before it expires", "a", exp.Add(-time.Nanosecond), kept},
				{"the same token as it expires", "a", exp, 1},
				{"another token", "b", epoch, 1},
				{"the first token after another", "a", epoch, 1},
				{"the first token again", "a", epoch, kept},
			} {
				before := v.total.Load()
				p, err := c.VerifyFor(ctx, tt.token, tt.at, &last)
				if err != nil || p.Subject != "user-"+tt.token {
					t.Fatalf("%s: %+v, %v", tt.name, p, err)
				}
				if got := int(v.total.Load() - before); got != tt.verify {
					t.Errorf("%s: %d verifications, want %d", tt.name, got, tt.verify)
				}
			}
			// A token that fails is not kept as the last one.
			for i := range 2 {
				if _, err := c.VerifyFor(ctx, "forged", epoch, &last); err == nil {
					t.Fatalf("a forged token was accepted the %d. time", i+1)
				}
			}
			if got := v.callsOf("forged"); got != 2 {
				t.Errorf("a forged token sent twice reached the verifier %d times, want 2", got)
			}
			// A nil last is Verify.
			if p, err := c.VerifyFor(ctx, "b", epoch, nil); err != nil || p.Subject != "user-b" {
				t.Errorf("without a last token: %+v, %v", p, err)
			}
		})
	}
}
