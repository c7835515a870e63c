package httpwire_test

import (
	"strings"
	"testing"

	"github.com/basaltplatform/basalt/gateway/internal/httpwire"
)

func TestValidName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		want bool
	}{
		{"Content-Type", true},
		{"x-basalt-subject", true},
		{"!#$%&'*+-.^_`|~09azAZ", true},
		{"", false},
		{"Content Type", false},
		{"Host:", false},
		{"Näme", false},
		{"a\tb", false},
		{"a\x00", false},
		{"(comment)", false},
		{"a\"b", false},
		{"a/b", false},
	}
	for _, tt := range tests {
		if got := httpwire.ValidName(tt.name); got != tt.want {
			t.Errorf("ValidName(%q) = %t; want %t", tt.name, got, tt.want)
		}
	}
}

func TestValidValue(t *testing.T) {
	t.Parallel()
	long := "Bearer " + strings.Repeat("eyJhbGciOiJFZERTQSJ9.", 30)
	tests := []struct {
		value string
		want  bool
	}{
		{"", true},
		{"application/proto", true},
		{"a\tb", true},
		{"tabs\t\t\t\t\t\t\t\t\tacross words", true},
		{"caf\xc3\xa9 and obs-text \xff", true},
		{long, true},
		{"a\rb", false},
		{"a\nb", false},
		{"a\x00b", false},
		{"a\x7fb", false},
		{"\x1f", false},
		{long + "\n", false},
		{long[:64] + "\x7f" + long[64:], false},
		{long[:8] + "\x01" + long[8:], false},
	}
	for _, tt := range tests {
		if got := httpwire.ValidValue(tt.value); got != tt.want {
			t.Errorf("ValidValue(%q) = %t; want %t", tt.value, got, tt.want)
		}
	}
}

func TestSafeValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		value string
		want  bool
	}{
		{"", true},
		{"user-1", true},
		{"a\tb\x01\x7f\xff", true},
		{"a\rb", false},
		{"a\nb", false},
		{"a\x00b", false},
		{"X-Basalt-Subject: admin\r\n", false},
	}
	for _, tt := range tests {
		if got := httpwire.SafeValue(tt.value); got != tt.want {
			t.Errorf("SafeValue(%q) = %t; want %t", tt.value, got, tt.want)
		}
	}
}

func TestTrimSpace(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", ""},
		{"value", "value"},
		{" \t value \t ", "value"},
		{"a b\tc", "a b\tc"},
		{" \t ", ""},
		{"\u00a0x\u00a0", "\u00a0x\u00a0"},
		{"\r x \n", "\r x \n"},
	}
	for _, tt := range tests {
		if got := httpwire.TrimSpace(tt.in); got != tt.want {
			t.Errorf("TrimSpace(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

// TestValidValueMatchesTheByteRule puts every byte value at every position of values of
// lengths around the eight-byte step, among neighbours that sit on the edges of the ranges
// checked, and compares with the rule applied one byte at a time.
func TestValidValueMatchesTheByteRule(t *testing.T) {
	t.Parallel()
	byByte := func(v string) bool {
		for i := 0; i < len(v); i++ {
			if c := v[i]; c != '\t' && (c < 0x20 || c == 0x7f) {
				return false
			}
		}
		return true
	}
	for _, fill := range []byte{' ', '~', 0x80, 0xff, '\t', '!', 0x7e} {
		for n := 1; n <= 19; n++ {
			for pos := range n {
				for c := range 256 {
					b := []byte(strings.Repeat(string(fill), n))
					b[pos] = byte(c)
					v := string(b)
					if got, want := httpwire.ValidValue(v), byByte(v); got != want {
						t.Fatalf("ValidValue(%q) = %t; want %t", v, got, want)
					}
				}
			}
		}
	}
}

func BenchmarkValidValueToken(b *testing.B) {
	v := "Bearer " + strings.Repeat("eyJhbGciOiJFZERTQSJ9.", 30)
	b.SetBytes(int64(len(v)))
	for b.Loop() {
		if !httpwire.ValidValue(v) {
			b.Fatal("a token refused")
		}
	}
}

func TestHopByHop(t *testing.T) {
	t.Parallel()
	for _, k := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "connection", "TE", "upgrade", "keep-alive", "TRAILER", "proxy-authorization"} {
		if !httpwire.HopByHop(k) {
			t.Errorf("%s is hop-by-hop", k)
		}
	}
	for _, k := range []string{"Content-Type", "Grpc-Status", "Grpc-Timeout", "Authorization", "Vary", "Content-Length", "X-Request-Id", "Tee", "Connections", "", "Tx", "Expires", "Set-Cookie", "Content-Encoding", "X-Forwarded-Proto", "Access-Control-Max", "Content-Disposition"} {
		if httpwire.HopByHop(k) {
			t.Errorf("%s is end to end", k)
		}
	}
}

// TestValidTargetTakesVisibleASCIIOnly checks every byte value alone and inside a query.
func TestValidTargetTakesVisibleASCIIOnly(t *testing.T) {
	t.Parallel()
	for c := range 256 {
		want := c > ' ' && c < 0x7f
		for _, target := range []string{string([]byte{byte(c)}), "a=1&b=" + string([]byte{byte(c)}) + "&c=3"} {
			if got := httpwire.ValidTarget(target); got != want {
				t.Errorf("ValidTarget(%q) = %t; want %t", target, got, want)
			}
		}
	}
	if !httpwire.ValidTarget("") || !httpwire.ValidTarget("connect=v1&encoding=json&message=%7B%7D") {
		t.Error("an empty or escaped query is refused")
	}
}
