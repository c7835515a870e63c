// Package keys manages the auth service's signing keys: Ed25519 keys stored with their private
// halves sealed under a secret from the configuration, rotated on a schedule, published in the
// JWKS before they sign and for as long as a token they signed can still be valid.
//
// Every instance of the auth service reads the same keys from the database, and rotation takes
// a transaction-scoped lock, so instances agree on which key signs when. The next key is
// created a pre-publication period before it activates, which must exceed how long verifiers
// cache the JWKS (five minutes in the kernel), so no verifier meets a token signed with a key
// it has not fetched; and the kernel refetches on an unknown key id anyway.
package keys

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/database"
	"github.com/basaltplatform/basalt/services/auth/ent"
	"github.com/basaltplatform/basalt/services/auth/ent/signingkey"
)

// Policy says when keys rotate.
type Policy struct {
	// RotateEvery is how long a key signs.
	RotateEvery time.Duration
	// Prepublish is how long before it signs a key is published.
	Prepublish time.Duration
	// AccessTTL is the lifetime of the tokens keys sign; a retired key stays published for
	// AccessTTL plus the verifiers' clock skew.
	AccessTTL time.Duration
}

// Ring holds the keys.
type Ring struct {
	db     *database.DB
	client *ent.Client
	aead   cipher.AEAD
	policy Policy
	now    func() time.Time
	verify *authn.StaticKeys

	mu   sync.RWMutex
	keys []loaded
	jwks []byte
}

type loaded struct {
	id        string
	created   time.Time
	activates time.Time
	retires   time.Time // zero while it has no successor
	expires   time.Time // zero while it has no successor
	private   jwk.Key
	public    jwk.Key
}

// New returns a ring over client, sealing private keys with secret (32 bytes).
func New(db *database.DB, client *ent.Client, secret []byte, policy Policy, now func() time.Time) (*Ring, error) {
	if len(secret) != 32 {
		return nil, errors.New("keys: the key secret must be 32 bytes")
	}
	if policy.Prepublish <= 0 || policy.RotateEvery <= policy.Prepublish || policy.AccessTTL <= 0 {
		return nil, errors.New("keys: rotation must be longer than pre-publication, and both positive")
	}
	block, err := aes.NewCipher(secret)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Ring{db: db, client: client, aead: aead, policy: policy, now: now, verify: authn.NewStaticKeys(jwk.NewSet())}, nil
}

// VerificationKeys returns the published keys, for verifying tokens inside the auth service.
func (r *Ring) VerificationKeys() authn.Keys { return r.verify }

// Signer returns the key that signs now.
func (r *Ring) Signer() (jwk.Key, error) {
	now := r.now()
	r.mu.RLock()
	defer r.mu.RUnlock()
	var best *loaded
	for i := range r.keys {
		k := &r.keys[i]
		if !k.activates.After(now) && (k.retires.IsZero() || now.Before(k.retires)) && (best == nil || k.activates.After(best.activates)) {
			best = k
		}
	}
	if best == nil {
		return nil, errors.New("keys: no key is active; rotation has not run")
	}
	return best.private, nil
}

// JWKS returns the published public keys as a JWK set document.
func (r *Ring) JWKS() []byte {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.jwks
}

// Rotate brings the stored keys up to the policy at the current time: it creates the first
// key, creates and pre-publishes the next one when the current one nears the end of its term
// (retiring the current one at the moment the next activates), and deletes keys whose every
// token has expired. Then it reloads.
func (r *Ring) Rotate(ctx context.Context) error {
	now := r.now().UTC()
	err := database.WithTx(ctx, r.client.Tx, func(tx *ent.Tx) error {
		if err := r.db.LockTx(ctx, tx, "signing-keys"); err != nil {
			return err
		}
		if _, err := tx.SigningKey.Delete().Where(signingkey.ExpiresAtNotNil(), signingkey.ExpiresAtLTE(now)).Exec(ctx); err != nil {
			return err
		}
		rows, err := tx.SigningKey.Query().Order(ent.Asc(signingkey.FieldActivatesAt)).All(ctx)
		if err != nil {
			return err
		}
		var active, next *ent.SigningKey
		for _, k := range rows {
			switch {
			case k.ActivatesAt.After(now):
				next = k
			case k.RetiresAt == nil || now.Before(*k.RetiresAt):
				active = k
			}
		}
		if active == nil && next == nil {
			if _, err := r.create(ctx, tx, now, now); err != nil {
				return err
			}
			return nil
		}
		if active == nil || next != nil || now.Before(active.ActivatesAt.Add(r.policy.RotateEvery-r.policy.Prepublish)) {
			return nil
		}
		nextAt := active.ActivatesAt.Add(r.policy.RotateEvery)
		if min := now.Add(r.policy.Prepublish); nextAt.Before(min) {
			nextAt = min
		}
		if _, err := r.create(ctx, tx, now, nextAt); err != nil {
			return err
		}
		return tx.SigningKey.UpdateOne(active).
			SetRetiresAt(nextAt).
			SetExpiresAt(nextAt.Add(r.policy.AccessTTL + authn.MaxClockSkew)).
			Exec(ctx)
	})
	if err != nil {
		return fmt.Errorf("keys: rotate: %w", err)
	}
	return r.Reload(ctx)
}

func (r *Ring) create(ctx context.Context, tx *ent.Tx, now, activates time.Time) (*ent.SigningKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	jpub, err := jwk.FromRaw(pub)
	if err != nil {
		return nil, err
	}
	thumb, err := jpub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, err
	}
	kid := base64.RawURLEncoding.EncodeToString(thumb)
	return tx.SigningKey.Create().
		SetID(kid).
		SetAlgorithm(string(jwa.EdDSA)).
		SetPublicKey(pub).
		SetPrivateKeySealed(r.seal(kid, priv.Seed())).
		SetCreatedAt(now).
		SetActivatesAt(activates).
		Save(ctx)
}

// Reload reads the keys from the database.
func (r *Ring) Reload(ctx context.Context) error {
	rows, err := r.client.SigningKey.Query().Order(ent.Asc(signingkey.FieldActivatesAt)).All(ctx)
	if err != nil {
		return fmt.Errorf("keys: load: %w", database.Translate(err))
	}
	now := r.now()
	var keys []loaded
	set := jwk.NewSet()
	for _, row := range rows {
		k, err := r.open(row)
		if err != nil {
			return err
		}
		if !k.expires.IsZero() && !now.Before(k.expires) {
			continue
		}
		keys = append(keys, k)
		_ = set.AddKey(k.public)
	}
	doc, err := json.Marshal(set)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.keys, r.jwks = keys, doc
	r.mu.Unlock()
	r.verify.Replace(set)
	return nil
}

func (r *Ring) open(row *ent.SigningKey) (loaded, error) {
	seed, err := r.unseal(row.ID, row.PrivateKeySealed)
	if err != nil {
		return loaded{}, err
	}
	priv := ed25519.NewKeyFromSeed(seed)
	jpriv, err := jwk.FromRaw(priv)
	if err != nil {
		return loaded{}, err
	}
	jpub, err := jwk.FromRaw(ed25519.PublicKey(row.PublicKey))
	if err != nil {
		return loaded{}, err
	}
	for _, k := range []jwk.Key{jpriv, jpub} {
		_ = k.Set(jwk.KeyIDKey, row.ID)
		_ = k.Set(jwk.AlgorithmKey, jwa.EdDSA)
		_ = k.Set(jwk.KeyUsageKey, jwk.ForSignature)
	}
	k := loaded{id: row.ID, created: row.CreatedAt, activates: row.ActivatesAt, private: jpriv, public: jpub}
	if row.RetiresAt != nil {
		k.retires = *row.RetiresAt
	}
	if row.ExpiresAt != nil {
		k.expires = *row.ExpiresAt
	}
	return k, nil
}

// ErrWrongSecret is returned when a stored key cannot be unsealed: the key secret changed.
var ErrWrongSecret = errors.New("keys: a stored signing key cannot be unsealed with the configured key secret")

func (r *Ring) seal(kid string, seed []byte) []byte {
	nonce := make([]byte, r.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return r.aead.Seal(nonce, nonce, seed, []byte(kid))
}

func (r *Ring) unseal(kid string, sealed []byte) ([]byte, error) {
	n := r.aead.NonceSize()
	if len(sealed) < n {
		return nil, ErrWrongSecret
	}
	seed, err := r.aead.Open(nil, sealed[:n], sealed[n:], []byte(kid))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, ErrWrongSecret
	}
	return seed, nil
}

// Run rotates and reloads every interval until ctx ends, so that keys change on schedule and
// every instance sees keys another instance created.
func (r *Ring) Run(ctx context.Context, interval time.Duration, onError func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.Rotate(ctx); err != nil && ctx.Err() == nil {
				onError(err)
			}
		}
	}
}

// IDs returns the published key ids, oldest first (for tests and diagnostics).
func (r *Ring) IDs() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ids := make([]string, len(r.keys))
	for i, k := range r.keys {
		ids[i] = k.id
	}
	return slices.Clone(ids)
}
