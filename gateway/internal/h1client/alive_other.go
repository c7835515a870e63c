//go:build !unix

package h1client

// socketAlive waits briefly for the socket to have something to read, since it cannot be
// peeked at without blocking here.
func (c *h1Conn) socketAlive() bool { return c.aliveAfter(aliveWait) }
