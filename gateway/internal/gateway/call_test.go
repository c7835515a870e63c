package gateway

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

// TestMemoKeepsAddressKeys checks that a connection's public calls from one address share its
// rate-limit key rather than format it for each call, and that the key follows the address.
// It runs serially: AllocsPerRun counts every goroutine's allocations.
func TestMemoKeepsAddressKeys(t *testing.T) {
	for _, tt := range []struct {
		name          string
		first, second string
		wantFirst     string
		wantSecond    string
	}{
		{name: "IPv4", first: "192.0.2.7", second: "192.0.2.8", wantFirst: "192.0.2.7", wantSecond: "192.0.2.8"},
		{name: "IPv6 keys its /64", first: "2001:db8:1:2::7", second: "2001:db8:9:9::7", wantFirst: "2001:db8:1:2::/64", wantSecond: "2001:db8:9:9::/64"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			first, second := netip.MustParseAddr(tt.first), netip.MustParseAddr(tt.second)
			var nilMemo *memo
			if got := nilMemo.addressKey(first); got != tt.wantFirst {
				t.Errorf("without a memo: %q, want %q", got, tt.wantFirst)
			}
			m := new(memo)
			if got := m.addressKey(first); got != tt.wantFirst {
				t.Fatalf("first call: %q, want %q", got, tt.wantFirst)
			}
			if n := testing.AllocsPerRun(100, func() { _ = m.addressKey(first) }); n != 0 {
				t.Errorf("a call from the same address allocates %v times, want 0", n)
			}
			if got := m.addressKey(second); got != tt.wantSecond {
				t.Errorf("after the address changed: %q, want %q", got, tt.wantSecond)
			}
			if got := m.addressKey(first); got != tt.wantFirst {
				t.Errorf("back to the first address: %q, want %q", got, tt.wantFirst)
			}
		})
	}
}

// deadlineRecorder is a ResponseWriter that counts the write deadlines set on it through
// http.ResponseController, set and lifted alike.
type deadlineRecorder struct {
	*httptest.ResponseRecorder
	set, lifted int
}

func (d *deadlineRecorder) SetWriteDeadline(t time.Time) error {
	if t.IsZero() {
		d.lifted++
	} else {
		d.set++
	}
	return nil
}

// TestAUnaryAnswerSharesOneWriteDeadline checks that the writes and flushes of an answer that
// is one message share one deadline, set before the first and never lifted, while a stream's
// each have their own, lifted after, so that a stream idle between messages is not cut off.
func TestAUnaryAnswerSharesOneWriteDeadline(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name              string
		once              bool
		wantSet, wantLift int
	}{
		{name: "unary", once: true, wantSet: 1, wantLift: 0},
		{name: "stream", once: false, wantSet: 4, wantLift: 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &deadlineRecorder{ResponseRecorder: httptest.NewRecorder()}
			w := &responseWriter{ResponseWriter: rec, stall: time.Second, once: tt.once}
			for range 3 {
				if _, err := w.Write([]byte("x")); err != nil {
					t.Fatal(err)
				}
			}
			w.Flush()
			if rec.set != tt.wantSet || rec.lifted != tt.wantLift {
				t.Errorf("deadlines set %d and lifted %d times, want %d and %d", rec.set, rec.lifted, tt.wantSet, tt.wantLift)
			}
			if got := rec.Body.String(); got != "xxx" || w.status != http.StatusOK || w.written != 3 {
				t.Errorf("wrote %q with status %d and size %d", got, w.status, w.written)
			}
		})
	}
}
