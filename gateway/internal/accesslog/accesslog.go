// Package accesslog writes the gateway's access log: one JSON line per request, in the layout
// slog's JSON handler writes, so the lines read like every other log line of the platform.
// It does not go through slog. A line through slog walks the caller's stack and formats each
// attribute through a generic path, which cost the gateway about a fifth of the time it spends
// in its own handler; the access log is the one line the gateway writes for every request,
// so it is encoded directly into a reused buffer.
package accesslog

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Entry is what one request's line says. Empty strings are left out of the line, except the
// ones every line has (request_id, code, method, path, client_ip, protocol).
type Entry struct {
	Time      time.Time
	Level     slog.Level
	RequestID string
	Status    int
	Code      string
	Duration  time.Duration
	BytesOut  int64
	Method    string
	Path      string
	ClientIP  string
	Protocol  string
	Route     string
	Subject   string
	TraceID   string
	Error     string
	// Fragment, when set, keeps the encoding of Method to Subject for the next entries that
	// repeat them, as the calls of one connection mostly do.
	Fragment *Fragment
}

// Fragment is the encoding of an entry's method, path, client address, protocol, route and
// subject, which a Logger makes once and takes again while an entry's are the same strings.
// Those are one connection's path, its client's address and its caller, so for the calls of
// one connection the line costs the encoding of what is new in each call only. The zero value
// is ready, and a Fragment must not be shared between goroutines.
type Fragment struct {
	method, path, clientIP, protocol, route, subject string
	encoded                                          []byte
	ok                                               bool
}

// of returns the encoding of e's fields, made anew when one of them changed.
func (f *Fragment) of(e *Entry) []byte {
	if f.ok && f.method == e.Method && f.path == e.Path && f.clientIP == e.ClientIP &&
		f.protocol == e.Protocol && f.route == e.Route && f.subject == e.Subject {
		return f.encoded
	}
	f.encoded = appendFragment(f.encoded[:0], e)
	f.method, f.path, f.clientIP, f.protocol, f.route, f.subject = e.Method, e.Path, e.ClientIP, e.Protocol, e.Route, e.Subject
	f.ok = true
	return f.encoded
}

// appendFragment appends what a Fragment holds.
func appendFragment(b []byte, e *Entry) []byte {
	b = appendString(append(b, `,"method":`...), e.Method)
	b = appendString(append(b, `,"path":`...), e.Path)
	b = appendString(append(b, `,"client_ip":`...), e.ClientIP)
	b = appendString(append(b, `,"protocol":`...), e.Protocol)
	b = appendOptional(b, `,"route":`, e.Route)
	return appendOptional(b, `,"subject":`, e.Subject)
}

// Writer is what writes access log lines: Logger in production, Slog where lines should take
// the format of another logger (text on a developer's terminal).
type Writer interface {
	Enabled(slog.Level) bool
	Log(*Entry)
}

var (
	_ Writer = (*Logger)(nil)
	_ Writer = Slog{}
)

// Slog writes entries through a slog logger, with the same attributes as Logger.
type Slog struct {
	Logger *slog.Logger
}

// Enabled reports whether the logger writes lines of level.
func (s Slog) Enabled(level slog.Level) bool {
	return s.Logger.Enabled(context.Background(), level)
}

// Log writes e through the logger, if its level is enabled.
func (s Slog) Log(e *Entry) {
	if !s.Enabled(e.Level) {
		return
	}
	r := slog.NewRecord(e.Time, e.Level, "request", 0)
	r.AddAttrs(
		slog.String("request_id", e.RequestID),
		slog.Int("status", e.Status),
		slog.String("code", e.Code),
		slog.Duration("duration", e.Duration),
		slog.Int64("bytes_out", e.BytesOut),
		slog.String("method", e.Method),
		slog.String("path", e.Path),
		slog.String("client_ip", e.ClientIP),
		slog.String("protocol", e.Protocol),
	)
	for _, kv := range [...][2]string{{"route", e.Route}, {"subject", e.Subject}, {"trace_id", e.TraceID}, {"error", e.Error}} {
		if kv[1] != "" {
			r.AddAttrs(slog.String(kv[0], kv[1]))
		}
	}
	_ = s.Logger.Handler().Handle(context.Background(), r)
}

// Logger writes entries to a writer; it is safe for concurrent use when the writer is.
type Logger struct {
	w     io.Writer
	level slog.Leveler
	// fields are the logger's own attributes, already encoded (`,"service":"gateway"`).
	fields []byte
	bufs   sync.Pool
	// second is the text of the last second a line was written in (see appendTime).
	second atomic.Pointer[second]
}

// second is the RFC 3339 text of one second in one location, split around where the
// fraction goes: "2026-11-25T01:30:00" and "Z".
type second struct {
	unix       int64
	loc        *time.Location
	head, zone string
}

// Option configures a Logger.
type Option func(*Logger)

// WithLevel sets the lowest level written; the default is info.
func WithLevel(l slog.Leveler) Option { return func(lg *Logger) { lg.level = l } }

// WithField adds key and value to every line, after msg, as a logger's attributes are.
func WithField(key, value string) Option {
	return func(lg *Logger) {
		lg.fields = appendString(appendKey(lg.fields, key), value)
	}
}

// New returns a logger writing lines to w.
func New(w io.Writer, opts ...Option) *Logger {
	l := &Logger{w: w, level: slog.LevelInfo}
	for _, opt := range opts {
		opt(l)
	}
	l.bufs.New = func() any {
		b := make([]byte, 0, 1024)
		return &b
	}
	return l
}

// Enabled reports whether lines of level are written.
func (l *Logger) Enabled(level slog.Level) bool { return level >= l.level.Level() }

// Log writes e as one line, if its level is enabled. Write errors are dropped, as slog's are:
// a request must not fail because its log line could not be written.
func (l *Logger) Log(e *Entry) {
	if !l.Enabled(e.Level) {
		return
	}
	bp := l.bufs.Get().(*[]byte)
	b := (*bp)[:0]
	b = append(b, `{"time":"`...)
	b = l.appendTime(b, e.Time)
	b = append(b, `","level":`...)
	b = appendString(b, e.Level.String())
	b = append(b, `,"msg":"request"`...)
	b = append(b, l.fields...)
	// The keys are written as they are encoded, since they never need escaping.
	b = appendString(append(b, `,"request_id":`...), e.RequestID)
	b = strconv.AppendInt(append(b, `,"status":`...), int64(e.Status), 10)
	b = appendString(append(b, `,"code":`...), e.Code)
	b = strconv.AppendInt(append(b, `,"duration":`...), int64(e.Duration), 10)
	b = strconv.AppendInt(append(b, `,"bytes_out":`...), e.BytesOut, 10)
	if e.Fragment != nil {
		b = append(b, e.Fragment.of(e)...)
	} else {
		b = appendFragment(b, e)
	}
	b = appendOptional(b, `,"trace_id":`, e.TraceID)
	b = appendOptional(b, `,"error":`, e.Error)
	b = append(b, "}\n"...)
	_, _ = l.w.Write(b)
	if cap(b) <= 64<<10 {
		*bp = b
		l.bufs.Put(bp)
	}
}

// appendTime appends t as t.AppendFormat(b, time.RFC3339Nano) does. The lines of one second
// share all but the fraction, so the rest is formatted once per second and location, and only
// the fraction per line.
func (l *Logger) appendTime(b []byte, t time.Time) []byte {
	sec := l.second.Load()
	if sec == nil || sec.unix != t.Unix() || sec.loc != t.Location() {
		whole := time.Unix(t.Unix(), 0).In(t.Location())
		if y := whole.Year(); y < 0 || y > 9999 {
			// Years of other than four digits are rare enough to format whole.
			return t.AppendFormat(b, time.RFC3339Nano)
		}
		text := whole.Format(time.RFC3339)
		sec = &second{unix: t.Unix(), loc: t.Location(), head: text[:19], zone: text[19:]}
		l.second.Store(sec)
	}
	b = append(b, sec.head...)
	if ns := t.Nanosecond(); ns != 0 {
		// The fraction without its trailing zeros, as the format's nines write it.
		var digits [10]byte
		digits[0] = '.'
		for i := 9; i > 0; i-- {
			digits[i] = byte('0' + ns%10)
			ns /= 10
		}
		end := 10
		for digits[end-1] == '0' {
			end--
		}
		b = append(b, digits[:end]...)
	}
	return append(b, sec.zone...)
}

// appendOptional appends key, already encoded with its comma and colon, and value, unless
// value is empty.
func appendOptional(b []byte, key, value string) []byte {
	if value == "" {
		return b
	}
	return appendString(append(b, key...), value)
}

func appendKey(b []byte, key string) []byte {
	b = append(b, ',')
	b = appendString(b, key)
	return append(b, ':')
}

const hex = "0123456789abcdef"

// plain marks the bytes a JSON string holds as they are: printable ASCII but for the quote and
// the backslash. One lookup per byte is what most of a line costs.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// plainPrefix returns the length of the longest prefix of s whose bytes are all plain. A line
// is mostly ids, paths and addresses with nothing to escape, which this passes eight bytes at a
// time.
func plainPrefix(s string) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(s); i += 8 {
		t := s[i : i+8]
		x := uint64(t[0]) | uint64(t[1])<<8 | uint64(t[2])<<16 | uint64(t[3])<<24 |
			uint64(t[4])<<32 | uint64(t[5])<<40 | uint64(t[6])<<48 | uint64(t[7])<<56
		// Each term has a high bit set where a byte may be below 0x20, 0x80 or above, the
		// quote or the backslash (a zero byte of x^0x22... or x^0x5c...). The terms can be set
		// for a byte that is plain, after one that is not, but never miss a byte that is not;
		// the bytes from there are looked at one by one.
		quote, backslash := x^0x22*ones, x^0x5c*ones
		if ((x-0x20*ones)&^x|x|(quote-ones)&^quote|(backslash-ones)&^backslash)&highs != 0 {
			break
		}
	}
	for ; i < len(s); i++ {
		if !plain[s[i]] {
			return i
		}
	}
	return i
}

// appendString appends s as a JSON string, escaped as slog's JSON handler escapes it: quotes,
// backslashes and control characters, invalid UTF-8 as U+FFFD, and U+2028 and U+2029, which
// some JavaScript parsers take for line ends.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for {
		n := plainPrefix(s)
		b = append(b, s[:n]...)
		if s = s[n:]; s == "" {
			return append(b, '"')
		}
		if c := s[0]; c < utf8.RuneSelf {
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			s = s[1:]
			continue
		}
		r, size := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			b = append(b, s[:size]...)
		}
		s = s[size:]
	}
}
