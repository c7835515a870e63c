package chain_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/basaltplatform/basalt/services/audit/internal/chain"
)

func newSigner(t *testing.T, fill string) *chain.Signer {
	t.Helper()
	s, err := chain.NewSigner([]byte(strings.Repeat(fill, 32)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestCheckerTakesKeysInTheOrderTheySigned runs checkpoints of a log whose key changed from a to
// b, and what a forger could add, past a checker that knows b as current and a as retired.
func TestCheckerTakesKeysInTheOrderTheySigned(t *testing.T) {
	t.Parallel()
	a, b, unknown := newSigner(t, "a"), newSigner(t, "b"), newSigner(t, "u")
	at := time.Unix(1_800_000_000, 0)
	sign := func(s *chain.Signer, seq int64) chain.Checkpoint { return s.Sign(seq, []byte{byte(seq)}, at) }
	forged := sign(unknown, 7)
	forged.KeyID = chain.KeyID(b.PublicKey())
	tests := []struct {
		name string
		keys chain.Keys
		cps  []chain.Checkpoint
		want []error // one per checkpoint
	}{
		{"the current key alone", chain.NewKeys(b.PublicKey()),
			[]chain.Checkpoint{sign(b, 1), sign(b, 2)}, []error{nil, nil}},
		{"a retired key, then the current one", chain.NewKeys(b.PublicKey(), a.PublicKey()),
			[]chain.Checkpoint{sign(a, 1), sign(a, 2), sign(b, 3), sign(b, 4)}, []error{nil, nil, nil, nil}},
		{"a retired key not configured", chain.NewKeys(b.PublicKey()),
			[]chain.Checkpoint{sign(a, 1)}, []error{chain.ErrInvalidSignature}},
		{"a retired key after the key that replaced it", chain.NewKeys(b.PublicKey(), a.PublicKey()),
			[]chain.Checkpoint{sign(a, 1), sign(b, 2), sign(a, 3)}, []error{nil, nil, chain.ErrReplacedKey}},
		{"an unknown key", chain.NewKeys(b.PublicKey(), a.PublicKey()),
			[]chain.Checkpoint{sign(b, 1), sign(unknown, 2)}, []error{nil, chain.ErrInvalidSignature}},
		{"a known key's id on another key's signature", chain.NewKeys(b.PublicKey()),
			[]chain.Checkpoint{forged}, []error{chain.ErrInvalidSignature}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := tt.keys.Checker()
			for i, cp := range tt.cps {
				if err := c.Check(cp); !errors.Is(err, tt.want[i]) || (err == nil) != (tt.want[i] == nil) {
					t.Fatalf("checkpoint %d (sequence %d): %v, want %v", i, cp.Sequence, err, tt.want[i])
				}
			}
		})
	}
}
