package gateway

import (
	"net/netip"
	"testing"
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
