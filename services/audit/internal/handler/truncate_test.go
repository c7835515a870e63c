package handler

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTruncateKeepsUTF8Whole(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{strings.Repeat("é", 400), 512, strings.Repeat("é", 256)},
		{"aé", 2, "a"}, // cutting inside é drops the half character
		{"日本語", 7, "日本"},
	}
	for _, tt := range tests {
		got := truncate(tt.in, tt.n)
		if got != tt.want || !utf8.ValidString(got) || len(got) > tt.n {
			t.Errorf("truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}
