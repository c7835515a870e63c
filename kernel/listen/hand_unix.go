//go:build unix

package listen

// CanHand reports whether a process here can hand its sockets down to a child (see Hand).
const CanHand = true
