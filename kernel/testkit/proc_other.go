//go:build !unix

package testkit

import (
	"errors"
	"net"
)

// running reports every process as running, so that the test databases of a process that may
// still use them are never dropped: telling a process that is gone from one this user may not
// look at is not portable here.
func running(int) bool { return true }

// dupListener cannot hand a socket down here.
func dupListener(*net.TCPListener) (int, error) { return 0, errors.ErrUnsupported }
