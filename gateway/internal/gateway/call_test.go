package gateway

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/basaltplatform/basalt/kernel/authn"
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

// TestMemoKeepsVerifiedTokens checks the rule a connection's memo applies before the token
// cache: the same token, strictly before it expires, and nothing for any other token.
func TestMemoKeepsVerifiedTokens(t *testing.T) {
	t.Parallel()
	exp := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	p := authn.Principal{Subject: "user-1", ExpiresAt: exp}
	const token = "e30.eyJzdWIiOiJ1c2VyLTEifQ.c2ln"
	var nilMemo *memo
	nilMemo.keepVerified(token, p)
	if _, ok := nilMemo.verified(token, exp.Add(-time.Hour)); ok {
		t.Error("a nil memo verified a token")
	}
	m := new(memo)
	if _, ok := m.verified(token, exp.Add(-time.Hour)); ok {
		t.Error("an empty memo verified a token")
	}
	if _, ok := m.verified("", exp.Add(-time.Hour)); ok {
		t.Error("an empty memo verified the empty token")
	}
	m.keepVerified(token, p)
	for _, tt := range []struct {
		name  string
		token string
		at    time.Time
		want  bool
	}{
		{"the same token, read into another string", strings.Clone(token), exp.Add(-time.Second), true},
		{"the same token a nanosecond before it expires", token, exp.Add(-time.Nanosecond), true},
		{"the same token as it expires", token, exp, false},
		{"the same token after it expired", token, exp.Add(time.Second), false},
		{"another token of the same length", strings.Replace(token, "c2ln", "c2lO", 1), exp.Add(-time.Second), false},
		{"a token the kept one starts with", token[:len(token)-1], exp.Add(-time.Second), false},
		{"no token", "", exp.Add(-time.Second), false},
	} {
		got, ok := m.verified(tt.token, tt.at)
		if ok != tt.want || (ok && got != p) {
			t.Errorf("%s: %+v, %t; want %t", tt.name, got, ok, tt.want)
		}
	}
}
