// Package httpwire splits HTTP/1.1 header blocks into lines and checks the pieces of the lines,
// for the gateway's own server and the kernel's lean client, which both read header blocks
// without net/http. A request head is mostly one long value, the access token, so the checks
// are made by table and, for values, eight bytes at a time; and a connection's heads mostly
// repeat, so Lines copies only the lines that changed.
package httpwire

import "strings"

// ValidName reports whether name is a header field name: one or more token characters
// (RFC 9110, section 5.1).
func ValidName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !token[name[i]] {
			return false
		}
	}
	return true
}

// ValidValue reports whether v may be a header field value as net/http's server takes it: no
// control characters other than the horizontal tab, and no DEL. Bytes from 0x80 up pass
// (obs-text).
func ValidValue(v string) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for len(v) >= 8 {
		_ = v[7]
		x := uint64(v[0]) | uint64(v[1])<<8 | uint64(v[2])<<16 | uint64(v[3])<<24 |
			uint64(v[4])<<32 | uint64(v[5])<<40 | uint64(v[6])<<48 | uint64(v[7])<<56
		// The first term is non-zero when some byte is below 0x20, the second when some byte
		// is 0x7f (a zero byte of x^0x7f...); either way the eight bytes are looked at one by
		// one, since a tab passes.
		del := x ^ 0x7f*ones
		if ((x-0x20*ones)&^x|(del-ones)&^del)&highs != 0 && !plainValue(v[:8]) {
			return false
		}
		v = v[8:]
	}
	return plainValue(v)
}

// SafeValue reports whether v can be written on a header line without ending it: no CR, LF or
// NUL. It is the check for values a program sends, which need not be as strict as ValidValue
// on what it receives.
func SafeValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}

// ValidTarget reports whether t may stand on an HTTP/1.1 request line as it is, as its
// request-target: visible ASCII only. A space would end the target early, and a control
// character or a byte from 0x80 up is not part of a URI (RFC 3986), though HTTP/2's :path
// carries them and lenient servers take them.
func ValidTarget(t string) bool {
	for i := 0; i < len(t); i++ {
		if c := t[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// HopByHop reports the headers that describe one connection (RFC 9110, section 7.6.1), which
// a proxy must not pass on; name may be in any case. Proxy-Connection is among them, as
// browsers once sent it. The length picks the candidates first, since every answer header the
// gateway relays asks and most are none of them: Content-Type and Date compare nothing.
func HopByHop(name string) bool {
	switch len(name) {
	case len("Te"):
		return strings.EqualFold(name, "Te")
	case len("Trailer"): // and Upgrade
		return strings.EqualFold(name, "Trailer") || strings.EqualFold(name, "Upgrade")
	case len("Connection"): // and Keep-Alive
		return strings.EqualFold(name, "Connection") || strings.EqualFold(name, "Keep-Alive")
	case len("Proxy-Connection"):
		return strings.EqualFold(name, "Proxy-Connection")
	case len("Transfer-Encoding"):
		return strings.EqualFold(name, "Transfer-Encoding")
	case len("Proxy-Authenticate"):
		return strings.EqualFold(name, "Proxy-Authenticate")
	case len("Proxy-Authorization"):
		return strings.EqualFold(name, "Proxy-Authorization")
	}
	return false
}

// TrimSpace trims the spaces and tabs around a header field value (optional whitespace, RFC
// 9110, section 5.6.3).
func TrimSpace(v string) string {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

// plainValue is ValidValue one byte at a time.
func plainValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if !value[v[i]] {
			return false
		}
	}
	return true
}

var token, value = tables()

func tables() (token, value [256]bool) {
	for c := 0; c < 256; c++ {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			token[c] = true
		}
		value[c] = c == '\t' || (c >= 0x20 && c != 0x7f)
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		token[c] = true
	}
	return token, value
}
