package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/basaltplatform/basalt/kernel/config"
	"github.com/basaltplatform/basalt/services/audit/internal/chain"
)

func TestRetiredCheckpointKeysVerifyBesideTheCurrentOne(t *testing.T) {
	t.Parallel()
	seed := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("c", 32)))
	retired := ed25519.NewKeyFromSeed([]byte(strings.Repeat("r", 32))).Public().(ed25519.PublicKey)
	env := func(keys string) map[string]string {
		return map[string]string{
			"BASALT_INTERNAL_SECRET":               strings.Repeat("s", 32),
			"BASALT_DATA_DIR":                      t.TempDir(),
			"BASALT_AUDIT_CHECKPOINT_KEY":          seed,
			"BASALT_AUDIT_RETIRED_CHECKPOINT_KEYS": keys,
		}
	}
	_, signer, keys, err := load(nil, config.MapLookup(env(" "+base64.StdEncoding.EncodeToString(retired)+" ,")))
	if err != nil {
		t.Fatal(err)
	}
	for _, pub := range []ed25519.PublicKey{signer.PublicKey(), retired} {
		if _, ok := keys[chain.KeyID(pub)]; !ok {
			t.Errorf("key %s is not among the keys that verify", chain.KeyID(pub))
		}
	}
	if len(keys) != 2 {
		t.Errorf("%d keys verify, want 2", len(keys))
	}
	for _, bad := range []string{"not base64!", base64.StdEncoding.EncodeToString(retired[:31])} {
		if _, _, _, err := load(nil, config.MapLookup(env(bad))); err == nil || !strings.Contains(err.Error(), "BASALT_AUDIT_RETIRED_CHECKPOINT_KEYS") {
			t.Errorf("retired keys %q: %v", bad, err)
		}
	}
}
