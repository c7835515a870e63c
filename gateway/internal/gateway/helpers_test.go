package gateway

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/basaltplatform/basalt/kernel/testkit"
)

func ed25519Sign(key []byte, msg []byte) []byte {
	return ed25519.Sign(ed25519.PrivateKey(key), msg)
}

func hmacSHA256(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

func publicKeyBytes(priv ed25519.PrivateKey) []byte {
	return []byte(priv.Public().(ed25519.PublicKey))
}

// tamper changes a token's payload and keeps its signature.
func tamper(token string) string {
	parts := strings.Split(token, ".")
	payload := []byte(parts[1])
	if payload[3] == 'A' {
		payload[3] = 'B'
	} else {
		payload[3] = 'A'
	}
	return parts[0] + "." + string(payload) + "." + parts[2]
}

func testkitEventually(t *testing.T, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, 5*time.Second, "condition", cond)
}
