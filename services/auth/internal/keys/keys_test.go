package keys_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/database"
	"github.com/basaltplatform/basalt/kernel/migrate"
	"github.com/basaltplatform/basalt/kernel/testkit"
	"github.com/basaltplatform/basalt/services/auth/ent"
	"github.com/basaltplatform/basalt/services/auth/internal/keys"
	"github.com/basaltplatform/basalt/services/auth/migrations"
)

func TestMain(m *testing.M) { testkit.Main(m) }

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

var policy = keys.Policy{RotateEvery: 24 * time.Hour, Prepublish: time.Hour, AccessTTL: 15 * time.Minute}

var secret = bytes.Repeat([]byte{7}, 32)

func ring(t *testing.T, db *database.DB, clk *clock, sec []byte) *keys.Ring {
	t.Helper()
	// The tables come from the service's own migrations, as at start-up.
	if err := migrate.Apply(context.Background(), db, "auth", migrations.Files); err != nil {
		t.Fatal(err)
	}
	client := ent.NewClient(ent.Driver(db.Driver()))
	r, err := keys.New(db, client, sec, policy, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func openDB(t *testing.T) *database.DB {
	t.Helper()
	db, err := database.Open(context.Background(), testkit.Database(t, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

func sign(t *testing.T, r *keys.Ring, at time.Time) string {
	t.Helper()
	key, err := r.Signer()
	if err != nil {
		t.Fatal(err)
	}
	tok, err := authn.Issue(key, authn.AccessClaims{Issuer: "iss", Audience: "aud", Subject: "u", TokenID: "j", IssuedAt: at, ExpiresAt: at.Add(policy.AccessTTL)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func published(t *testing.T, r *keys.Ring) []string {
	t.Helper()
	set, err := authn.ParseJWKS(r.JWKS())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range set.Len() {
		k, _ := set.Key(i)
		ids = append(ids, k.KeyID())
	}
	slices.Sort(ids)
	return ids
}

func verifies(r *keys.Ring, tok string, at time.Time) bool {
	set, err := authn.ParseJWKS(r.JWKS())
	if err != nil {
		return false
	}
	v := authn.NewVerifier(authn.NewStaticKeys(set), "iss", "aud", authn.WithVerifierClock(func() time.Time { return at }))
	_, err = v.Verify(context.Background(), tok)
	return err == nil
}

func TestKeysRotateWithPrepublicationAndRetireAfterTheirTokensExpire(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := &clock{t: start}
	r := ring(t, db, clk, secret)
	ctx := context.Background()

	if err := r.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	first, _ := r.Signer()
	tok1 := sign(t, r, start)
	if !verifies(r, tok1, start) || len(published(t, r)) != 1 {
		t.Fatalf("the first key signs and is published: %v", published(t, r))
	}

	// Shortly before the term ends the next key is published, but the first still signs.
	clk.set(start.Add(23 * time.Hour))
	if err := r.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if ids := published(t, r); len(ids) != 2 {
		t.Fatalf("published %v, want the current and the next key", ids)
	}
	if k, _ := r.Signer(); k.KeyID() != first.KeyID() {
		t.Fatal("the next key signs before its time")
	}

	// At the end of the term the next key signs; tokens of the first still verify.
	at := start.Add(24*time.Hour + time.Second)
	clk.set(at)
	if err := r.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	second, _ := r.Signer()
	if second.KeyID() == first.KeyID() {
		t.Fatal("the key did not rotate")
	}
	lateTok := func() string {
		// A token the first key signed just before it retired, still valid for 15 minutes.
		clk.set(start.Add(24*time.Hour - time.Second))
		_ = r.Reload(ctx)
		tok := sign(t, r, clk.now())
		clk.set(at)
		_ = r.Reload(ctx)
		return tok
	}()
	if !verifies(r, lateTok, at.Add(10*time.Minute)) {
		t.Fatal("a token of the retired key stopped verifying before it expired")
	}

	// Once every token of the first key has expired, the key is gone.
	clk.set(start.Add(24*time.Hour + policy.AccessTTL + authn.MaxClockSkew + time.Second))
	if err := r.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if ids := published(t, r); len(ids) != 1 || ids[0] != second.KeyID() {
		t.Fatalf("published %v, want only the second key", ids)
	}
	if n, _ := ent.NewClient(ent.Driver(db.Driver())).SigningKey.Query().Count(ctx); n != 1 {
		t.Fatalf("%d keys stored, want the expired one deleted", n)
	}
}

func TestPrivateKeysAreSealedAtRest(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	clk := &clock{t: time.Now()}
	r := ring(t, db, clk, secret)
	ctx := context.Background()
	if err := r.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	signer, _ := r.Signer()
	var priv ed25519.PrivateKey
	if err := signer.Raw(&priv); err != nil {
		t.Fatal(err)
	}
	row, err := ent.NewClient(ent.Driver(db.Driver())).SigningKey.Query().Only(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(row.PrivateKeySealed, priv.Seed()) {
		t.Fatal("the private key is stored in the clear")
	}
	// Another secret cannot open the stored key, and says so instead of signing garbage.
	other := ring(t, db, clk, bytes.Repeat([]byte{8}, 32))
	if err := other.Reload(ctx); err == nil || !strings.Contains(err.Error(), "unsealed") {
		t.Fatalf("reloading with another secret: %v", err)
	}
}

func TestConcurrentRotationsCreateOneKey(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	clk := &clock{t: time.Now()}
	rings := []*keys.Ring{ring(t, db, clk, secret), ring(t, db, clk, secret), ring(t, db, clk, secret)}
	var wg sync.WaitGroup
	for _, r := range rings {
		wg.Go(func() {
			if err := r.Rotate(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for _, r := range rings {
		_ = r.Reload(context.Background())
	}
	a, _ := rings[0].Signer()
	for _, r := range rings[1:] {
		if k, _ := r.Signer(); k.KeyID() != a.KeyID() {
			t.Fatal("instances disagree on the signing key")
		}
	}
	if ids := published(t, rings[0]); len(ids) != 1 {
		t.Fatalf("%d keys after three concurrent first rotations, want 1", len(ids))
	}
}
