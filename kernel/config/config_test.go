package config_test

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/basaltplatform/basalt/kernel/config"
)

func TestLoaderPrecedence(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{name: "default", want: "def"},
		{name: "env beats default", env: map[string]string{"X_VALUE": "env"}, want: "env"},
		{name: "flag beats env", args: []string{"-value", "flag"}, env: map[string]string{"X_VALUE": "env"}, want: "flag"},
		{name: "empty env is unset", env: map[string]string{"X_VALUE": ""}, want: "def"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got string
			l := config.NewLoader("t", tt.args, config.MapLookup(tt.env))
			l.String(&got, "value", "X_VALUE", "def", "a value")
			if err := l.Load(); err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLoaderReportsEveryProblemByName(t *testing.T) {
	t.Parallel()
	var (
		n int
		d time.Duration
		b bool
	)
	l := config.NewLoader("t", nil, config.MapLookup(map[string]string{"N": "x", "D": "5 parsecs", "B": "maybe"}))
	l.Int(&n, "n", "N", 1, "")
	l.Duration(&d, "d", "D", time.Second, "")
	l.Bool(&b, "b", "B", false, "")
	err := l.Load()
	if err == nil {
		t.Fatal("Load accepted invalid values")
	}
	for _, want := range []string{"N (-n): not an integer", "D (-d): not a duration", "B (-b): not a boolean"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	t.Parallel()
	var s config.Secret
	l := config.NewLoader("t", nil, config.MapLookup(map[string]string{"PW": "hunter2"}))
	l.Secret(&s, "pw", "PW", "")
	if err := l.Load(); err != nil {
		t.Fatal(err)
	}
	if s.Reveal() != "hunter2" {
		t.Fatalf("Reveal = %q", s.Reveal())
	}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("cfg", "secret", s)
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", s, s, s, s), logged.String()} {
		if strings.Contains(out, "hunter2") {
			t.Fatalf("secret printed: %s", out)
		}
	}
}

func TestServiceDefaultsAndValidation(t *testing.T) {
	t.Parallel()
	load := func(env map[string]string, args ...string) (config.Service, error) {
		var s config.Service
		if _, ok := env["BASALT_INTERNAL_SECRET"]; !ok {
			env["BASALT_INTERNAL_SECRET"] = strings.Repeat("x", 32)
		}
		l := config.NewLoader("svc", args, config.MapLookup(env))
		s.Bind(l, "audit")
		_ = l.Load()
		s.Check(l)
		return s, l.Err()
	}

	s, err := load(map[string]string{"BASALT_DATA_DIR": "/tmp/basalt-data"})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Database.URL.Reveal(); got != "sqlite:///tmp/basalt-data/audit.db" {
		t.Errorf("embedded default database = %q", got)
	}
	if s.Database.Schema != "audit" || s.Discovery.UsesConsul() || s.HTTP.ShutdownTimeout != 15*time.Second {
		t.Errorf("unexpected defaults: %+v", s)
	}
	if s.HTTP.Inherited != nil {
		t.Errorf("inherited sockets by default: %v", s.HTTP.Inherited)
	}
	if s.HTTP.AdminListen != "" {
		t.Errorf("the admin listener is on by default: %q", s.HTTP.AdminListen)
	}
	s, err = load(map[string]string{"BASALT_LISTEN_ADDR": "127.0.0.1:7101", "BASALT_ADMIN_LISTEN": "127.0.0.1:7201", "BASALT_LISTEN_FDS": "127.0.0.1:7101=3,127.0.0.1:7201=4"})
	if err != nil {
		t.Fatal(err)
	}
	if s.HTTP.Inherited["127.0.0.1:7101"] != 3 || s.HTTP.Inherited["127.0.0.1:7201"] != 4 || len(s.HTTP.Inherited) != 2 {
		t.Errorf("inherited sockets %v, want 127.0.0.1:7101=3 and the admin listener's 127.0.0.1:7201=4", s.HTTP.Inherited)
	}
	if s.HTTP.AdminListen != "127.0.0.1:7201" {
		t.Errorf("admin listener %q, want 127.0.0.1:7201", s.HTTP.AdminListen)
	}

	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"bad listen", map[string]string{"BASALT_LISTEN_ADDR": "nope"}, "BASALT_LISTEN_ADDR: must be host:port"},
		{"bad database", map[string]string{"DATABASE_URL": "mysql://x"}, "DATABASE_URL: must start with"},
		{"bad schema", map[string]string{"BASALT_DB_SCHEMA": "Drop Table"}, "BASALT_DB_SCHEMA"},
		{"owner url without a postgres database", map[string]string{"BASALT_DATABASE_OWNER_URL": "postgres://o@h/db"}, "BASALT_DATABASE_OWNER_URL: needs a postgres:// DATABASE_URL"},
		{"owner url not postgres", map[string]string{"DATABASE_URL": "postgres://a@h/db", "BASALT_DATABASE_OWNER_URL": "sqlite:///x.db"}, "BASALT_DATABASE_OWNER_URL: must be a postgres://"},
		{"bad app role", map[string]string{"BASALT_DB_APP_ROLE": "App Role"}, "BASALT_DB_APP_ROLE: must be a lower-case identifier"},
		{"app role owns the schema", map[string]string{"BASALT_DB_ROLE": "basalt_x", "BASALT_DB_APP_ROLE": "basalt_x"}, "BASALT_DB_APP_ROLE: must differ from BASALT_DB_ROLE"},
		{"deregister below consul minimum", map[string]string{"BASALT_DEREGISTER_AFTER": "30s"}, "BASALT_DEREGISTER_AFTER"},
		{"wildcard listen with consul needs advertise", map[string]string{"BASALT_LISTEN_ADDR": "0.0.0.0:80", "CONSUL_HTTP_ADDR": "127.0.0.1:8500"}, "BASALT_ADVERTISE_ADDR"},
		{"bad static endpoint", map[string]string{"BASALT_STATIC_ENDPOINTS": "audit=ftp://x"}, "BASALT_STATIC_ENDPOINTS"},
		{"bad log format", map[string]string{"BASALT_LOG_FORMAT": "xml"}, "BASALT_LOG_FORMAT"},
		{"bad sample ratio", map[string]string{"BASALT_TRACE_SAMPLE_RATIO": "2"}, "BASALT_TRACE_SAMPLE_RATIO"},
		{"short internal secret", map[string]string{"BASALT_INTERNAL_SECRET": "short"}, "BASALT_INTERNAL_SECRET"},
		{"short accepted internal secret", map[string]string{"BASALT_INTERNAL_SECRET_ACCEPTED": "short"}, "BASALT_INTERNAL_SECRET_ACCEPTED: must be 32 bytes"},
		{"malformed inherited sockets", map[string]string{"BASALT_LISTEN_FDS": "127.0.0.1:7101=1"}, "BASALT_LISTEN_FDS (-listen-fds): descriptor"},
		{"a socket for another address", map[string]string{"BASALT_LISTEN_ADDR": "127.0.0.1:7101", "BASALT_LISTEN_FDS": "127.0.0.1:7102=3"}, "BASALT_LISTEN_FDS: hands down a socket for 127.0.0.1:7102"},
		{"bad admin listener", map[string]string{"BASALT_ADMIN_LISTEN": "9090"}, "BASALT_ADMIN_LISTEN: must be host:port"},
		{"admin listener on the RPC port", map[string]string{"BASALT_LISTEN_ADDR": "0.0.0.0:8080", "BASALT_ADMIN_LISTEN": "0.0.0.0:8080"}, "BASALT_ADMIN_LISTEN: must differ from BASALT_LISTEN_ADDR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := load(tt.env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestDatabaseURLNeverInErrors(t *testing.T) {
	t.Parallel()
	for _, env := range []map[string]string{
		{"DATABASE_URL": "mysql://u:topsecret@h/db"},
		{"DATABASE_URL": "postgres://u@h/db", "BASALT_DATABASE_OWNER_URL": "mysql://owner:topsecret@h/db"},
		{"BASALT_DATABASE_OWNER_URL": "postgres://owner:topsecret@h/db"},
	} {
		var s config.Service
		l := config.NewLoader("svc", nil, config.MapLookup(env))
		s.Bind(l, "audit")
		_ = l.Load()
		s.Check(l)
		if err := l.Err(); err == nil || strings.Contains(err.Error(), "topsecret") {
			t.Fatalf("%v: error = %v", env, err)
		}
	}
}

func TestDatabaseRolesAndOwnerURL(t *testing.T) {
	t.Parallel()
	var s config.Service
	l := config.NewLoader("svc", nil, config.MapLookup(map[string]string{
		"BASALT_INTERNAL_SECRET":    strings.Repeat("x", 32),
		"DATABASE_URL":              "postgres://audit_app:pw@db/basalt",
		"BASALT_DATABASE_OWNER_URL": "postgres://audit_owner:ownerpw@db/basalt",
		"BASALT_DB_ROLE":            "audit_owner",
		"BASALT_DB_APP_ROLE":        "audit_app",
	}))
	s.Bind(l, "audit")
	if err := l.Load(); err != nil {
		t.Fatal(err)
	}
	s.Check(l)
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	d := s.Database
	if d.OwnerURL.Reveal() != "postgres://audit_owner:ownerpw@db/basalt" || d.OwnerRole != "audit_owner" || d.AppRole != "audit_app" {
		t.Fatalf("database settings = owner URL set %v, owner role %q, app role %q", d.OwnerURL.IsSet(), d.OwnerRole, d.AppRole)
	}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("cfg", "database", fmt.Sprintf("%+v", d))
	if strings.Contains(logged.String(), "ownerpw") {
		t.Fatalf("the owner URL was printed: %s", logged.String())
	}
}

func TestEndpointsRoundTrip(t *testing.T) {
	t.Parallel()
	m, err := config.ParseEndpoints("audit=http://127.0.0.1:1,http://127.0.0.1:2/; identity=https://id.internal:443")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := config.FormatEndpoints(m), "audit=http://127.0.0.1:1,http://127.0.0.1:2;identity=https://id.internal:443"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	for _, bad := range []string{"audit", "=http://x", "audit=127.0.0.1:1"} {
		if _, err := config.ParseEndpoints(bad); err == nil {
			t.Errorf("ParseEndpoints(%q) succeeded", bad)
		}
	}
}

func TestUnknownFlagsAreReportedWithTheUsage(t *testing.T) {
	t.Parallel()
	var v string
	exited := false
	l := config.NewLoader("t", []string{"-nope"}, config.MapLookup(nil), config.WithHelpExit(io.Discard, func(int) { exited = true }))
	l.String(&v, "value", "X_VALUE", "def", "a value")
	err := l.Load()
	if err == nil || exited || !strings.Contains(err.Error(), "-nope") || !strings.Contains(err.Error(), "-value") || !strings.Contains(err.Error(), "X_VALUE") {
		t.Fatalf("error %v (exited %v) must name the flag and show the usage of every setting", err, exited)
	}
}

func TestHelpPrintsTheUsageAndExitsZero(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"-h", "-help", "--help"} {
		t.Run(arg, func(t *testing.T) {
			t.Parallel()
			var (
				v     string
				out   strings.Builder
				codes []int
			)
			l := config.NewLoader("t", []string{arg}, config.MapLookup(map[string]string{"X_PW": "hunter2"}),
				config.WithSummary("t does a thing."),
				config.WithHelpExit(&out, func(code int) { codes = append(codes, code) }))
			l.String(&v, "value", "X_VALUE", "def", "a value")
			var s config.Secret
			l.Secret(&s, "pw", "X_PW", "a password")
			err := l.Load()
			if !errors.Is(err, flag.ErrHelp) || len(codes) != 1 || codes[0] != 0 {
				t.Fatalf("Load = %v, exit codes %v; want flag.ErrHelp after one exit(0)", err, codes)
			}
			for _, want := range []string{"t does a thing.", "Usage: t [flags]", "-value", "(env X_VALUE)", `(default "def")`, "-pw", "(env X_PW)"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("usage lacks %q:\n%s", want, out.String())
				}
			}
			if strings.Contains(out.String(), "hunter2") {
				t.Errorf("usage shows the secret:\n%s", out.String())
			}
		})
	}
}
