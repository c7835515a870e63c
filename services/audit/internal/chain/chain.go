// Package chain defines the audit log's hash chain: how an event is encoded canonically, how
// its hash covers that encoding and the previous event's hash, and how a sequence of stored
// events is verified.
//
// Each field is written with its length in front, in a fixed order, with metadata sorted by
// key, so two different events can never encode to the same bytes and the encoding never
// depends on map order, protobuf versions or JSON formatting.
package chain

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"slices"
	"time"
)

// Domain separates this hash from any other SHA-256 use, and versions the encoding.
const Domain = "basalt.audit.v1.event\x00"

// HashSize is the size of every hash in the chain.
const HashSize = sha256.Size

// Genesis is the prev_hash of the first event.
var Genesis = make([]byte, HashSize)

// Entry is an event's content as the chain sees it.
type Entry struct {
	ID             string
	Sequence       int64
	Time           time.Time
	Service        string
	Action         string
	Outcome        string
	ActorSubject   string
	ActorIP        string
	ActorUserAgent string
	ResourceType   string
	ResourceID     string
	RequestID      string
	TraceID        string
	Metadata       map[string]string
}

// Hash returns SHA-256 over the domain, prev and e's canonical encoding.
func Hash(prev []byte, e Entry) []byte {
	h := sha256.New()
	h.Write([]byte(Domain))
	h.Write(prev)
	writeInt(h, e.Sequence)
	writeString(h, e.ID)
	writeInt(h, e.Time.UTC().UnixMicro())
	for _, s := range []string{e.Service, e.Action, e.Outcome, e.ActorSubject, e.ActorIP, e.ActorUserAgent, e.ResourceType, e.ResourceID, e.RequestID, e.TraceID} {
		writeString(h, s)
	}
	keys := make([]string, 0, len(e.Metadata))
	for k := range e.Metadata {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	writeInt(h, int64(len(keys)))
	for _, k := range keys {
		writeString(h, k)
		writeString(h, e.Metadata[k])
	}
	return h.Sum(nil)
}

func writeInt(h hash.Hash, v int64) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(v))
	h.Write(b[:])
}

func writeString(h hash.Hash, s string) {
	writeInt(h, int64(len(s)))
	h.Write([]byte(s))
}

// Stored is an entry as read back from the log, with the hashes stored beside it.
type Stored struct {
	Entry
	PrevHash []byte
	Hash     []byte
}

// Verifier checks stored entries one at a time, in sequence order, so a log of any size is
// verified in constant memory.
type Verifier struct {
	prev    []byte
	next    int64
	checked int64
	bad     int64
}

// NewVerifier starts a verification at the beginning of the log.
func NewVerifier() *Verifier { return &Verifier{prev: Genesis, next: 1} }

// Add checks the next stored entry. It returns false once the chain is broken; later calls do
// nothing. A gap, a reordering, a changed field, a changed hash or an inserted entry all
// break the chain at the first entry they touch.
func (v *Verifier) Add(s Stored) bool {
	if v.bad != 0 {
		return false
	}
	v.checked++
	switch {
	case s.Sequence != v.next,
		!bytes.Equal(s.PrevHash, v.prev),
		!bytes.Equal(s.Hash, Hash(v.prev, s.Entry)):
		v.bad = v.next
		return false
	}
	v.prev = s.Hash
	v.next++
	return true
}

// Result returns how many entries were checked, and the sequence number at which the chain
// first broke (0 when it is intact).
func (v *Verifier) Result() (checked, firstBad int64) { return v.checked, v.bad }

// Head returns the hash of the last verified entry (Genesis for an empty log).
func (v *Verifier) Head() []byte { return v.prev }
