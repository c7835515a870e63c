package requestid

import (
	"context"
	"strings"
	"testing"
)

func TestNewIsHexAndUnique(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 10_000 {
		id := New()
		if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
			t.Fatalf("New() = %q, want 32 lowercase hex digits", id)
		}
		if Sanitize(id) != id {
			t.Fatalf("Sanitize(New()) = %q, want %q", Sanitize(id), id)
		}
		if seen[id] {
			t.Fatalf("New() repeated %q", id)
		}
		seen[id] = true
	}
}

func TestSanitize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"plain", "abc-123", "abc-123"},
		{"longest", strings.Repeat("a", maxLen), strings.Repeat("a", maxLen)},
		{"too long", strings.Repeat("a", maxLen+1), ""},
		{"space", "a b", ""},
		{"newline", "a\nb", ""},
		{"non-ASCII", "ä", ""},
		{"DEL", "a\x7f", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := Sanitize(tc.in); got != tc.want {
				t.Errorf("Sanitize(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestContext(t *testing.T) {
	t.Parallel()
	if got := From(context.Background()); got != "" {
		t.Errorf("From(empty context) = %q, want \"\"", got)
	}
	if got := From(With(context.Background(), "id-1")); got != "id-1" {
		t.Errorf("From(With(id-1)) = %q", got)
	}
}

func BenchmarkNew(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = New()
	}
}
