package service_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/basaltplatform/basalt/kernel/authn"
	"github.com/basaltplatform/basalt/kernel/config"
	"github.com/basaltplatform/basalt/kernel/errs"
	"github.com/basaltplatform/basalt/kernel/service"
)

func TestTheAcceptedInternalSecretVerifiesServiceCredentials(t *testing.T) {
	t.Parallel()
	oldSecret, newSecret := strings.Repeat("o", 32), strings.Repeat("n", 32)
	old, err := authn.NewServiceTokens("auth", []byte(oldSecret))
	if err != nil {
		t.Fatal(err)
	}
	credential, err := old.Token()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		accepted string
		want     errs.Kind // KindInternal stands for "verified"
	}{
		{"with the old secret accepted", oldSecret, errs.KindInternal},
		{"without", "", errs.KindUnauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"BASALT_INTERNAL_SECRET": newSecret, "BASALT_DATA_DIR": t.TempDir()}
			if tt.accepted != "" {
				env["BASALT_INTERNAL_SECRET_ACCEPTED"] = tt.accepted
			}
			cfg, err := service.LoadConfig("identity", nil, config.MapLookup(env))
			if err != nil {
				t.Fatal(err)
			}
			svc, err := service.New(context.Background(), cfg, io.Discard, service.WithoutDatabase(), service.WithoutOutbox())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = svc.Close(context.Background()) })
			name, err := svc.Tokens.Verify(credential)
			switch {
			case tt.want == errs.KindInternal && (err != nil || name != "auth"):
				t.Fatalf("Verify = %q, %v", name, err)
			case tt.want != errs.KindInternal && errs.KindOf(err) != tt.want:
				t.Fatalf("Verify = %q, %v; want %v", name, err, tt.want)
			}
		})
	}
}
