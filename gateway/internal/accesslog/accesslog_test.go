package accesslog

import (
	"bytes"
	"io"
	"log/slog"
	"testing"
	"time"
)

// viaSlog writes e through Slog over slog's JSON handler.
func viaSlog(e *Entry, fields ...string) string {
	var buf bytes.Buffer
	var h slog.Handler = slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})
	var attrs []slog.Attr
	for i := 0; i < len(fields); i += 2 {
		attrs = append(attrs, slog.String(fields[i], fields[i+1]))
	}
	if len(attrs) > 0 {
		h = h.WithAttrs(attrs)
	}
	Slog{Logger: slog.New(h)}.Log(e)
	return buf.String()
}

// TestLinesMatchSlog checks that every line is byte for byte what slog's JSON handler writes
// for the same attributes, so log pipelines parse the access log like any other line.
func TestLinesMatchSlog(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 24, 12, 30, 42, 530123456, time.UTC)
	tests := []struct {
		name   string
		entry  Entry
		fields []string
	}{
		{
			name: "an authenticated call",
			entry: Entry{Time: at, Level: slog.LevelInfo, RequestID: "f3b1", Method: "POST",
				Path: "/basalt.identity.v1.IdentityService/GetCurrentUser", Status: 200, Code: "ok",
				Duration: 173 * time.Microsecond, BytesOut: 52, ClientIP: "127.0.0.1", Protocol: "connect",
				Route: "/basalt.identity.v1.IdentityService/GetCurrentUser", Subject: "u-1", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736"},
			fields: []string{"service", "gateway", "instance", "gateway-1"},
		},
		{
			name: "a refused call with an error",
			entry: Entry{Time: at.In(time.FixedZone("x", 3600)), Level: slog.LevelWarn, RequestID: "r", Method: "GET",
				Path: "/v1/posts", Status: 401, Code: "unauthenticated", ClientIP: "::1", Protocol: "http",
				Error: `unauthenticated: the access token is invalid: "kid" unknown`},
		},
		{
			name: "a probe at debug",
			entry: Entry{Time: at, Level: slog.LevelDebug, RequestID: "p", Method: "GET", Path: "/healthz",
				Status: 200, Code: "ok", Protocol: "http"},
		},
		{
			name: "strings that need escaping",
			entry: Entry{Time: at, Level: slog.LevelInfo, RequestID: "a\"b\\c", Method: "POST",
				Path: "/p\n\r\t\x00\x1f<>&'", Status: 500, Code: "internal", ClientIP: "é\u2028\u2029😀",
				Protocol: "grpc", Error: "bad \xff\xfe utf-8 \xe2\x82"},
			fields: []string{"ke\"y", "v\x01"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			var opts []Option
			for i := 0; i < len(tt.fields); i += 2 {
				opts = append(opts, WithField(tt.fields[i], tt.fields[i+1]))
			}
			l := New(&buf, append(opts, WithLevel(slog.LevelDebug))...)
			l.Log(&tt.entry)
			if want := viaSlog(&tt.entry, tt.fields...); buf.String() != want {
				t.Errorf("line\n got %s\nwant %s", buf.String(), want)
			}
		})
	}
}

// TestFragmentFollowsItsFields logs entries through one Fragment, as a connection's calls do:
// each line must be the line of the same entry without a Fragment, whether its fields repeat
// the entry before, as the same strings or as equal ones, or one of them changes.
func TestFragmentFollowsItsFields(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 6, 12, 30, 42, 530123456, time.UTC)
	base := Entry{Time: at, Level: slog.LevelInfo, RequestID: "r1", Status: 200, Code: "ok", Method: "POST",
		Path: "/basalt.identity.v1.IdentityService/GetCurrentUser", ClientIP: "127.0.0.1", Protocol: "connect",
		Route: "/basalt.identity.v1.IdentityService/GetCurrentUser", Subject: "u-1"}
	edits := []func(e *Entry){
		func(*Entry) {},
		func(e *Entry) { e.RequestID, e.Duration = "r2", time.Millisecond },
		func(e *Entry) { e.Path = string([]byte(e.Path)) },
		func(e *Entry) { e.Subject = "u-2" },
		func(e *Entry) { e.Subject = "" },
		func(e *Entry) { e.ClientIP = "::1" },
		func(e *Entry) { e.Method, e.Path, e.Route = "GET", "/v1/me", "" },
		func(e *Entry) { e.Method = "PUT" },
		func(e *Entry) { e.Route = "/basalt.identity.v1.IdentityService/GetCurrentUser" },
		func(e *Entry) { e.Protocol = "grpc" },
		func(e *Entry) { e.Path = "/needs \"escaping\"" },
		func(*Entry) {},
	}
	var f Fragment
	e := base
	for i, edit := range edits {
		edit(&e)
		var with, without bytes.Buffer
		e.Fragment = &f
		New(&with).Log(&e)
		plain := e
		plain.Fragment = nil
		New(&without).Log(&plain)
		if with.String() != without.String() {
			t.Errorf("entry %d:\n with a fragment %s\n without        %s", i, with.String(), without.String())
		}
	}
}

// FuzzStringsMatchSlog checks that a string is escaped as slog's JSON handler escapes it,
// wherever in the string, and in whichever of its eight-byte steps, the bytes that need it fall.
func FuzzStringsMatchSlog(f *testing.F) {
	for _, s := range []string{"", "plain ascii, longer than eight", "a\"b\\c\n", "0123456\x7f89abcdef\x1f",
		"é\u2028\u2029😀 and more", "bad \xff\xfe utf-8 \xe2\x82", "12345678\"", "\"quoted\" and \\slashed\\ too", "\x00\x00\x00\x00\x00\x00\x00\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := Entry{Time: time.Date(2026, 11, 25, 1, 2, 3, 4, time.UTC), Level: slog.LevelInfo, Method: s}
		var buf bytes.Buffer
		New(&buf).Log(&e)
		if want := viaSlog(&e); buf.String() != want {
			t.Errorf("line\n got %s\nwant %s", buf.String(), want)
		}
	})
}

// FuzzTimeMatchesAppendFormat checks the access log's time against time.RFC3339Nano for any
// instant and offset, each written after another instant, in the same second or not, so that
// the kept second is in play.
func FuzzTimeMatchesAppendFormat(f *testing.F) {
	at := time.Date(2026, 11, 25, 1, 30, 0, 0, time.UTC).Unix()
	for _, c := range [][4]int64{
		{at, 0, 0, 1}, {at, 530123456, 3600, 1}, {at, 100000000, -12600, 0}, {at, 999999999, 0, 1},
		{at + 1, 1, 3601, -1}, {-62135596800, 5, 0, 1}, {253402300799, 7, 0, 1}, {253402300800, 0, 0, 0},
	} {
		f.Add(c[0], c[1], int(c[2]), c[3])
	}
	f.Fuzz(func(t *testing.T, unix, nsec int64, offset int, step int64) {
		if nsec < 0 || nsec >= 1e9 || offset <= -24*3600 || offset >= 24*3600 || unix < -1<<40 || unix > 1<<40 {
			return
		}
		loc := time.UTC
		if offset != 0 {
			loc = time.FixedZone("z", offset)
		}
		l := New(io.Discard)
		for _, tm := range []time.Time{time.Unix(unix, nsec).In(loc), time.Unix(unix+step%3, (nsec+step)%1e9).In(loc)} {
			got := string(l.appendTime(nil, tm))
			if want := tm.Format(time.RFC3339Nano); got != want {
				t.Fatalf("appendTime(%v) = %q, want %q", tm, got, want)
			}
		}
	})
}

func TestLevel(t *testing.T) {
	t.Parallel()
	var direct, viaSlog bytes.Buffer
	testLevel(t, New(&direct), &direct)
	testLevel(t, Slog{Logger: slog.New(slog.NewJSONHandler(&viaSlog, nil))}, &viaSlog)
}

func testLevel(t *testing.T, l Writer, buf *bytes.Buffer) {
	t.Helper()
	l.Log(&Entry{Level: slog.LevelDebug, Path: "/healthz"})
	if buf.Len() != 0 {
		t.Fatalf("a debug line was written at the default level: %s", buf.String())
	}
	if l.Enabled(slog.LevelDebug) || !l.Enabled(slog.LevelInfo) {
		t.Fatal("the default level is not info")
	}
	l.Log(&Entry{Level: slog.LevelInfo, Path: "/x"})
	if buf.Len() == 0 {
		t.Fatal("an info line was not written")
	}
}

func BenchmarkLog(b *testing.B) {
	var buf bytes.Buffer
	l := New(&buf, WithField("service", "gateway"), WithField("instance", "gateway-1"))
	e := Entry{Time: time.Now(), Level: slog.LevelInfo, RequestID: "0123456789abcdef", Method: "POST",
		Path: "/basalt.identity.v1.IdentityService/GetCurrentUser", Status: 200, Code: "ok",
		Duration: 173 * time.Microsecond, BytesOut: 52, ClientIP: "127.0.0.1", Protocol: "connect",
		Route: "/basalt.identity.v1.IdentityService/GetCurrentUser", Subject: "u-1", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736"}
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		l.Log(&e)
	}
}
