package chain_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/basaltplatform/basalt/services/audit/internal/chain"
)

func entry(seq int64) chain.Entry {
	return chain.Entry{
		ID: "0193e6c4-7d43-7b5e-9f3a-3c1d2e4f5a6b", Sequence: seq, Time: time.Date(2026, 11, 24, 6, 0, 0, 123456000, time.UTC),
		Service: "auth", Action: "auth.login", Outcome: "success", ActorSubject: "u1",
		Metadata: map[string]string{"b": "2", "a": "1"},
	}
}

// build returns a valid chain of n stored entries.
func build(n int) []chain.Stored {
	prev := chain.Genesis
	out := make([]chain.Stored, n)
	for i := range out {
		e := entry(int64(i + 1))
		h := chain.Hash(prev, e)
		out[i] = chain.Stored{Entry: e, PrevHash: prev, Hash: h}
		prev = h
	}
	return out
}

func TestHashIsCanonical(t *testing.T) {
	t.Parallel()
	a, b := entry(1), entry(1)
	b.Metadata = map[string]string{"a": "1", "b": "2"}
	if !bytes.Equal(chain.Hash(chain.Genesis, a), chain.Hash(chain.Genesis, b)) {
		t.Fatal("metadata order changed the hash")
	}
	// Length prefixes keep field boundaries: moving a byte from one field to the next must
	// change the hash.
	c, d := entry(1), entry(1)
	c.ActorSubject, c.ActorIP = "ab", "c"
	d.ActorSubject, d.ActorIP = "a", "bc"
	if bytes.Equal(chain.Hash(chain.Genesis, c), chain.Hash(chain.Genesis, d)) {
		t.Fatal("two different events hash alike")
	}
	e := entry(1)
	e.Time = e.Time.In(time.FixedZone("x", 3600))
	if !bytes.Equal(chain.Hash(chain.Genesis, a), chain.Hash(chain.Genesis, e)) {
		t.Fatal("the time zone of an instant changed the hash")
	}
}

func TestVerifierFindsTheFirstBrokenEntry(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		tamper   func([]chain.Stored) []chain.Stored
		firstBad int64
	}{
		{"intact", func(s []chain.Stored) []chain.Stored { return s }, 0},
		{"changed field", func(s []chain.Stored) []chain.Stored { s[2].Action = "auth.logout"; return s }, 3},
		{"changed metadata", func(s []chain.Stored) []chain.Stored { s[1].Metadata = map[string]string{"a": "9"}; return s }, 2},
		{"deleted entry", func(s []chain.Stored) []chain.Stored { return append(s[:1], s[2:]...) }, 2},
		{"swapped entries", func(s []chain.Stored) []chain.Stored { s[1], s[2] = s[2], s[1]; return s }, 2},
		{"rehashed entry", func(s []chain.Stored) []chain.Stored {
			s[3].Action = "auth.forged"
			s[3].Hash = chain.Hash(s[3].PrevHash, s[3].Entry)
			return s
		}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := chain.NewVerifier()
			for _, s := range tt.tamper(build(6)) {
				v.Add(s)
			}
			if _, bad := v.Result(); bad != tt.firstBad {
				t.Fatalf("first bad = %d, want %d", bad, tt.firstBad)
			}
		})
	}
}

func BenchmarkHash(b *testing.B) {
	e := entry(1)
	b.ReportAllocs()
	for b.Loop() {
		chain.Hash(chain.Genesis, e)
	}
}
