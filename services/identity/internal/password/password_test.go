package password

import (
	"context"
	"strings"
	"testing"
)

func TestHashVerifiesAndIsPHC(t *testing.T) {
	t.Parallel()
	h := NewHasher(Default, 2)
	ctx := context.Background()
	enc, err := h.Hash(ctx, "correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q is not argon2id PHC with the default parameters", enc)
	}
	p, salt, key, err := decode(enc)
	if err != nil || len(salt) != 16 || len(key) != 32 || p != Default {
		t.Fatalf("decoded %+v salt %d key %d: %v", p, len(salt), len(key), err)
	}
	ok, rehash, err := h.Verify(ctx, "correct horse battery staple", enc)
	if err != nil || !ok || rehash {
		t.Fatalf("Verify = %v %v %v", ok, rehash, err)
	}
	if ok, _, _ := h.Verify(ctx, "correct horse battery stapl", enc); ok {
		t.Fatal("a wrong password verified")
	}
	again, _ := h.Hash(ctx, "correct horse battery staple")
	if again == enc {
		t.Fatal("two hashes of one password are equal: the salt is not random")
	}
}

func TestDefaultsMeetTheOWASPMinimum(t *testing.T) {
	t.Parallel()
	// OWASP's password storage cheat sheet and ASVS 5.0: argon2id with at least 19 MiB of
	// memory, two iterations and one degree of parallelism.
	if Default.Memory < 19456 || Default.Time < 2 || Default.Threads < 1 || Default.SaltLen < 16 {
		t.Fatalf("defaults %+v are below the minimum", Default)
	}
}

func TestWeakerHashesVerifyAndAskForRehash(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	old := NewHasher(Params{Memory: 8 * 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}, 1)
	enc, err := old.Hash(ctx, "an old password")
	if err != nil {
		t.Fatal(err)
	}
	ok, rehash, err := NewHasher(Default, 1).Verify(ctx, "an old password", enc)
	if err != nil || !ok || !rehash {
		t.Fatalf("old hash: ok=%v rehash=%v err=%v; want it verified and flagged", ok, rehash, err)
	}
}

func TestMalformedHashesAreErrors(t *testing.T) {
	t.Parallel()
	h := NewHasher(Default, 1)
	for _, enc := range []string{"", "plain", "$argon2i$v=19$m=1,t=1,p=1$c2FsdA$a2V5", "$argon2id$v=18$m=1,t=1,p=1$c2FsdA$a2V5",
		"$argon2id$v=19$m=999999999,t=1,p=1$c2FsdA$a2V5", "$argon2id$v=19$m=64,t=1,p=1$!!$a2V5"} {
		if _, _, err := h.Verify(context.Background(), "x", enc); err == nil {
			t.Errorf("Verify accepted %q", enc)
		}
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 1024)
	tests := []struct {
		password string
		ok       bool
	}{
		{"short", false},
		{"sevench", false},
		{"eightchr", true},
		{"password", false},                     // common
		{"PaSsWoRd", false},                     // common, whatever the case
		{"1qaz2wsx", false},                     // common
		{"zq7!too-plain-but-not-common", true},  // no composition rules either way
		{strings.Repeat("a", 64) + "xyz", true}, // long passwords are accepted
		{long, true},                            // 1024 characters, 2048 bytes
		{long + "x", false},                     // too long
		{"ünïcödé пароль", true},                // counted in characters
		{string([]byte{0xff, 0xfe, 'a', 'b', 'c', 'd', 'e', 'f', 'g'}), false},
	}
	for _, tt := range tests {
		if got := Check(tt.password) == ""; got != tt.ok {
			t.Errorf("Check(%.20q) ok = %v, want %v (%s)", tt.password, got, tt.ok, Check(tt.password))
		}
	}
	if len(common()) < 15000 {
		t.Fatalf("the common list holds %d passwords", len(common()))
	}
}

func TestNoTruncation(t *testing.T) {
	t.Parallel()
	h := NewHasher(Default, 1)
	ctx := context.Background()
	base := strings.Repeat("a", 200)
	enc, err := h.Hash(ctx, base+"1")
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := h.Verify(ctx, base+"2", enc); ok {
		t.Fatal("passwords differing only after 200 characters verified alike")
	}
}

func BenchmarkHash(b *testing.B) {
	h := NewHasher(Default, 1)
	for b.Loop() {
		if _, err := h.Hash(context.Background(), "benchmark password"); err != nil {
			b.Fatal(err)
		}
	}
}
