package testkit

import (
	"net"
	"strconv"
	"testing"
)

// TestFreePortIsBelowTheEphemeralRange takes ports many times, through FreePort and so
// PickPort: each must be bindable and, where
// the kernel publishes its ephemeral range, below it, where no listener on port 0 and no
// outgoing connection can be given it.
func TestFreePortIsBelowTheEphemeralRange(t *testing.T) {
	t.Parallel()
	lo, hi, known := belowEphemeral()
	for range 50 {
		port := FreePort(t)
		if known && (port < lo || port >= hi) {
			t.Fatalf("FreePort() = %d, outside %d to %d", port, lo, hi-1)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("FreePort() = %d, which cannot be bound: %v", port, err)
		}
		_ = ln.Close()
	}
	if !known {
		t.Logf("%s is not readable here; the kernel picked the ports", ephemeralRange)
	}
}
