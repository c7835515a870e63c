// Package layering holds the tests of what the platform's binaries may link: the gateway's
// transport code, which reads and writes sockets by their file descriptors, stays with the
// gateway, and no service or kernel package links code like it.
package layering
