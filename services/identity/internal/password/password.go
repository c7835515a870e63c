// Package password hashes and checks passwords with argon2id, and decides which passwords are
// acceptable.
//
// Hashes are PHC strings ($argon2id$v=19$m=...,t=...,p=...$salt$hash) that name their own
// parameters, so the parameters can be raised later: a hash made with weaker ones verifies and
// is reported for rehashing. The defaults meet the OWASP and ASVS 5.0 minimum for argon2id
// (19 MiB, two passes, one lane) with a 16-byte salt.
package password

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Params are argon2id's cost parameters.
type Params struct {
	// Memory in KiB.
	Memory uint32
	// Time is the number of passes.
	Time uint32
	// Threads is the degree of parallelism.
	Threads uint8
	// SaltLen and KeyLen are in bytes.
	SaltLen uint32
	KeyLen  uint32
}

// Default are the parameters new hashes are made with.
var Default = Params{Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// weaker reports whether p is below q in any cost.
func (p Params) weaker(q Params) bool {
	return p.Memory < q.Memory || p.Time < q.Time || p.Threads < q.Threads || p.SaltLen < q.SaltLen || p.KeyLen < q.KeyLen
}

// Hasher hashes and verifies passwords. It bounds how many hashes run at once, because each
// holds Memory KiB: without a bound, a burst of logins could exhaust the process's memory.
type Hasher struct {
	params Params
	slots  chan struct{}
	dummy  string
	once   sync.Once
}

// NewHasher returns a hasher making hashes with params, running at most concurrent at once.
func NewHasher(params Params, concurrent int) *Hasher {
	return &Hasher{params: params, slots: make(chan struct{}, max(concurrent, 1))}
}

// Hash returns the PHC string of password with a fresh random salt.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	salt := make([]byte, h.params.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key, err := h.derive(ctx, password, salt, h.params)
	if err != nil {
		return "", err
	}
	return encode(h.params, salt, key), nil
}

// Verify reports whether password matches the PHC string encoded, and whether encoded was made
// with weaker parameters than the hasher's and should be replaced.
func (h *Hasher) Verify(ctx context.Context, password, encoded string) (ok, rehash bool, err error) {
	p, salt, want, err := decode(encoded)
	if err != nil {
		return false, false, err
	}
	got, err := h.derive(ctx, password, salt, p)
	if err != nil {
		return false, false, err
	}
	return subtle.ConstantTimeCompare(got, want) == 1, p.weaker(h.params), nil
}

// VerifyDummy does the work of a verification against a hash no password matches, so that an
// unknown email costs the same time as a wrong password.
func (h *Hasher) VerifyDummy(ctx context.Context, password string) error {
	h.once.Do(func() {
		h.dummy, _ = h.Hash(context.Background(), strings.Repeat("x", 64)+string(randomSuffix()))
	})
	_, _, err := h.Verify(ctx, password, h.dummy)
	return err
}

func randomSuffix() []byte {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return []byte(base64.RawStdEncoding.EncodeToString(b))
}

func (h *Hasher) derive(ctx context.Context, password string, salt []byte, p Params) ([]byte, error) {
	select {
	case h.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-h.slots }()
	return argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen), nil
}

func encode(p Params, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// ErrMalformed is returned for a stored hash that is not an argon2id PHC string.
var ErrMalformed = errors.New("password: malformed hash")

func decode(encoded string) (Params, []byte, []byte, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return Params{}, nil, nil, ErrMalformed
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return Params{}, nil, nil, ErrMalformed
	}
	var p Params
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil {
		return Params{}, nil, nil, ErrMalformed
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil {
		return Params{}, nil, nil, ErrMalformed
	}
	key, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(key) == 0 || p.Memory == 0 || p.Time == 0 || p.Threads == 0 || p.Memory > 4<<20 || p.Time > 100 {
		return Params{}, nil, nil, ErrMalformed
	}
	p.SaltLen, p.KeyLen = uint32(len(salt)), uint32(len(key))
	return p, salt, key, nil
}

// Length limits, in characters (Unicode code points) as NIST SP 800-63B counts them.
const (
	MinLength = 8
	MaxLength = 1024
)

// Check returns a description of what makes password unacceptable, or "" when it is fine:
// at least 8 characters, at most 1024, not one of the most common passwords. There are no
// composition rules, and nothing is truncated.
func Check(password string) string {
	n := utf8.RuneCountInString(password)
	switch {
	case !utf8.ValidString(password):
		return "must be valid UTF-8"
	case n < MinLength:
		return fmt.Sprintf("must be at least %d characters", MinLength)
	case n > MaxLength:
		return fmt.Sprintf("must be at most %d characters", MaxLength)
	case IsCommon(password):
		return "is one of the most common passwords; choose another"
	}
	return ""
}

// common.txt lists the most common passwords of eight or more characters, lower-cased, most
// frequent first: the "passwords" frequency list of zxcvbn-ts's language-common package
// (v4.1.3, MIT licence), which ranks passwords seen in public breach corpora.
//
//go:embed common.txt
var commonList string

var common = sync.OnceValue(func() map[string]struct{} {
	set := make(map[string]struct{}, 18000)
	sc := bufio.NewScanner(strings.NewReader(commonList))
	for sc.Scan() {
		if w := strings.TrimSpace(sc.Text()); w != "" {
			set[w] = struct{}{}
		}
	}
	return set
})

// IsCommon reports whether password, ignoring case, is on the common-password list.
func IsCommon(password string) bool {
	_, ok := common()[strings.ToLower(password)]
	return ok
}
