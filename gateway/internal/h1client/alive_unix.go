//go:build unix

package h1client

import (
	"errors"
	"syscall"
)

// socketAlive peeks at the socket without blocking: a peek that would block is what a healthy
// idle connection does.
func (c *h1Conn) socketAlive() bool {
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return c.aliveAfter(aliveWait)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var buf [1]byte
	err = raw.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = errors.Is(rerr, syscall.EAGAIN)
		return true // never wait for readiness
	})
	return err == nil && alive
}
