//go:build !unix

package listen

// CanHand reports whether a process here can hand its sockets down to a child (see Hand):
// not on Windows, whose child processes take no descriptors beyond the standard three.
const CanHand = false
