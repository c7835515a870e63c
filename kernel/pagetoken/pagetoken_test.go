package pagetoken

import (
	"bytes"
	"errors"
	"testing"

	"github.com/basaltplatform/basalt/kernel/errs"
)

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, pos := range [][]byte{[]byte("01930000-0000-7000-8000-000000000001"), {0, 0, 0, 0, 0, 0, 0, 42}, {1}} {
		got, err := Decode(Encode("users|a", pos), "users|a")
		if err != nil || !bytes.Equal(got, pos) {
			t.Fatalf("Decode(Encode(%q)) = %q, %v", pos, got, err)
		}
	}
	if got, err := Decode("", "users|a"); got != nil || err != nil {
		t.Fatalf("an empty token = %q, %v; want the first page", got, err)
	}
}

func TestDecodeRefuses(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"another listing":      Encode("users|b", []byte("x")),
		"not base64":           "!!!",
		"a digest and nothing": Encode("users|a", nil),
		"too short":            "AAAA",
	}
	for name, token := range tests {
		_, err := Decode(token, "users|a")
		var e *errs.Error
		if !errors.As(err, &e) || e.Kind != errs.KindInvalidArgument || len(e.Fields) != 1 || e.Fields[0].Field != "page_token" {
			t.Errorf("%s: Decode = %v, want invalid_argument on page_token", name, err)
		}
	}
}
