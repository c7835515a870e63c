package chain

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"time"
)

// CheckpointDomain separates checkpoint signatures from any other use of the key.
const CheckpointDomain = "basalt.audit.v1.checkpoint\x00"

// Checkpoint is a signed statement that the log's event at Sequence has hash HeadHash. A
// plain hash chain cannot stop someone with write access to the database from rewriting a
// suffix of the log and recomputing every hash after it, or from cutting off its tail; a
// checkpoint signed with a key the database never holds makes both show.
type Checkpoint struct {
	Sequence  int64
	HeadHash  []byte
	Time      time.Time
	KeyID     string
	Signature []byte
}

// Signer signs checkpoints with an Ed25519 key.
type Signer struct {
	key   ed25519.PrivateKey
	keyID string
}

// NewSigner returns a signer over the 32-byte Ed25519 seed.
func NewSigner(seed []byte) (*Signer, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, errors.New("chain: the checkpoint key must be a 32-byte Ed25519 seed")
	}
	key := ed25519.NewKeyFromSeed(seed)
	return &Signer{key: key, keyID: KeyID(key.Public().(ed25519.PublicKey))}, nil
}

// KeyID names a public key: the first 8 bytes of its SHA-256, in hex.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// PublicKey returns the key that verifies this signer's checkpoints.
func (s *Signer) PublicKey() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// Sign returns a checkpoint of the log at sequence with head hash, made at t.
func (s *Signer) Sign(sequence int64, head []byte, t time.Time) Checkpoint {
	return Checkpoint{
		Sequence:  sequence,
		HeadHash:  append([]byte(nil), head...),
		Time:      t,
		KeyID:     s.keyID,
		Signature: ed25519.Sign(s.key, checkpointMessage(sequence, head)),
	}
}

// VerifyCheckpoint reports whether cp was signed by pub.
func VerifyCheckpoint(pub ed25519.PublicKey, cp Checkpoint) bool {
	return cp.KeyID == KeyID(pub) && ed25519.Verify(pub, checkpointMessage(cp.Sequence, cp.HeadHash), cp.Signature)
}

// Keys are the public keys whose checkpoints a log accepts, by key id: the current signer's and
// those of the keys it replaced. Only public keys: verifying needs no secret, and a key the
// database held could not vouch for it.
type Keys map[string]ed25519.PublicKey

// NewKeys returns the keys of pubs.
func NewKeys(pubs ...ed25519.PublicKey) Keys {
	k := make(Keys, len(pubs))
	for _, pub := range pubs {
		k[KeyID(pub)] = pub
	}
	return k
}

// Checker checks a log's checkpoints in sequence order.
type Checker struct {
	keys     Keys
	last     string
	replaced map[string]bool
}

// Checker returns a checker of one pass over a log.
func (k Keys) Checker() *Checker { return &Checker{keys: k, replaced: map[string]bool{}} }

// Problems Check reports.
var (
	ErrInvalidSignature = errors.New("chain: the checkpoint's signature does not verify with a known key")
	ErrReplacedKey      = errors.New("chain: the checkpoint is signed with a key an earlier checkpoint's key replaced")
)

// Check verifies cp, the next checkpoint of the log. Keys take over from each other and never
// return: once a checkpoint is signed with a new key, a later one signed with a key before it is
// refused, so a retired key, which may have leaked, cannot vouch for what came after it.
func (c *Checker) Check(cp Checkpoint) error {
	pub, ok := c.keys[cp.KeyID]
	if !ok || !VerifyCheckpoint(pub, cp) {
		return ErrInvalidSignature
	}
	if cp.KeyID != c.last {
		if c.replaced[cp.KeyID] {
			return ErrReplacedKey
		}
		if c.last != "" {
			c.replaced[c.last] = true
		}
		c.last = cp.KeyID
	}
	return nil
}

func checkpointMessage(sequence int64, head []byte) []byte {
	msg := make([]byte, 0, len(CheckpointDomain)+8+len(head))
	msg = append(msg, CheckpointDomain...)
	msg = binary.BigEndian.AppendUint64(msg, uint64(sequence))
	return append(msg, head...)
}
