package config

import (
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	kconfig "github.com/basaltplatform/basalt/kernel/config"
)

// load writes file (when not empty) to a temporary YAML file named by BASALT_GATEWAY_CONFIG,
// and loads the configuration with env and args.
func load(t *testing.T, file string, env map[string]string, args ...string) (Config, error) {
	t.Helper()
	e := maps.Clone(env)
	if e == nil {
		e = map[string]string{}
	}
	if file != "" {
		path := filepath.Join(t.TempDir(), "gateway.yaml")
		if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		e["BASALT_GATEWAY_CONFIG"] = path
	}
	return Load(args, kconfig.MapLookup(e))
}

// problems splits a Load error into its problems.
func problems(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(strings.TrimPrefix(err.Error(), "config: "), "; ")
}

func TestLoadWithNothingSetIsTheDefaults(t *testing.T) {
	t.Parallel()
	got, err := Load(nil, kconfig.MapLookup(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got.Environment != "development" || got.Discovery.UsesConsul() || len(got.Discovery.Static) != 0 || got.Log.Format != "auto" {
		t.Fatalf("environment settings: %q %+v %+v", got.Environment, got.Discovery, got.Log)
	}
	if got.RateLimits.RedisURL.IsSet() || got.Upstreams != nil || len(got.Trusted()) != 0 {
		t.Fatalf("redis %v, upstreams %v, trusted %v: want none", got.RateLimits.RedisURL, got.Upstreams, got.Trusted())
	}
	// Apart from the settings only the environment gives, Load with nothing set is Defaults.
	got.Discovery, got.Log, got.Telemetry, got.Environment, got.trusted = kconfig.Discovery{}, kconfig.Log{}, kconfig.Telemetry{}, "", nil
	if want := Defaults(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Load() = %+v\nDefaults() = %+v", got, want)
	}
	// The defaults are valid on their own.
	d := Defaults()
	d.Environment = "development"
	d.Discovery = kconfig.Discovery{CheckInterval: 5 * time.Second, CheckTimeout: 2 * time.Second, DeregisterAfter: time.Minute}
	d.Log = kconfig.Log{Format: "auto"}
	l := kconfig.NewLoader("test", nil, kconfig.MapLookup(nil))
	d.check(l)
	if err := l.Err(); err != nil {
		t.Fatalf("Defaults() is invalid: %v", err)
	}
}

const layered = `
# The structure comes from the file; per-deployment settings may be overridden.
listen: 127.0.0.1:1000
admin_listen: ""
cors:
  allowed_origins: ["https://app.example.com", "http://localhost:*", "http://[::1]:*"]
  allow_credentials: true
  max_age: 10m
auth:
  issuer: file-issuer
  token_cache_size: 5000
limits:
  timeout: 10s
  max_in_flight: 64
  max_connections: 10000
  write_timeout: 1m
  disable_fast_path: true
rate_limits:
  redis_prefix: "deploy-a:"
  public: {rate: 1.5, burst: 3}
routes:
  /basalt.identity.v1.IdentityService/GetUser:
    timeout: 5s
    rate_limit: {rate: 2, burst: 4}
upstreams:
  audit: ["http://10.0.0.1:7101"]
  auth: ["http://10.0.0.2:7102", "https://10.0.0.3:7102"]
passthrough:
  - service: connectrpc.conformance.v1.ConformanceService
    upstream: http://127.0.0.1:9999
trusted_proxies: ["10.0.0.0/8", "fd00::/8"]
`

func TestLoadLayers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(path, []byte(layered), 0o600); err != nil {
		t.Fatal(err)
	}
	fileEnv := map[string]string{"BASALT_GATEWAY_CONFIG": path}
	tests := []struct {
		name       string
		env        map[string]string
		args       []string
		wantListen string
		wantIssuer string
	}{
		{"the file named by the environment", fileEnv, nil, "127.0.0.1:1000", "file-issuer"},
		{"the file named by a flag", nil, []string{"-config", path}, "127.0.0.1:1000", "file-issuer"},
		{"the flag beats the environment's file", map[string]string{"BASALT_GATEWAY_CONFIG": filepath.Join(dir, "missing.yaml")}, []string{"-config=" + path}, "127.0.0.1:1000", "file-issuer"},
		{"the environment beats the file", map[string]string{"BASALT_GATEWAY_CONFIG": path, "BASALT_LISTEN_ADDR": "127.0.0.1:2000", "BASALT_AUTH_ISSUER": "env-issuer"}, nil, "127.0.0.1:2000", "env-issuer"},
		{"a flag beats the environment", map[string]string{"BASALT_GATEWAY_CONFIG": path, "BASALT_LISTEN_ADDR": "127.0.0.1:2000"}, []string{"-listen=127.0.0.1:3000"}, "127.0.0.1:3000", "file-issuer"},
		// Other flags before or after -config do not keep the file from being read.
		{"flags around -config", nil, []string{"-listen", "127.0.0.1:3000", "-config", path, "-auth-issuer=flag-issuer"}, "127.0.0.1:3000", "flag-issuer"},
		{"flags with the environment's file", fileEnv, []string{"-env=production"}, "127.0.0.1:1000", "file-issuer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Load(tt.args, kconfig.MapLookup(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Listen != tt.wantListen || cfg.Auth.Issuer != tt.wantIssuer {
				t.Fatalf("listen %q issuer %q, want %q %q", cfg.Listen, cfg.Auth.Issuer, tt.wantListen, tt.wantIssuer)
			}
			// What only the file sets is there in every case.
			if cfg.AdminListen != "" || cfg.Auth.TokenCacheSize != 5000 || cfg.Auth.Audience != "basalt" ||
				cfg.Limits.Timeout != Duration(10*time.Second) || cfg.Limits.MaxInFlight != 64 || !cfg.Limits.DisableFastPath ||
				cfg.Limits.MaxConnections != 10000 || cfg.Limits.WriteTimeout != Duration(time.Minute) ||
				cfg.Limits.BodyTimeout != Duration(30*time.Second) || cfg.CORS.MaxAge != Duration(10*time.Minute) ||
				cfg.RateLimits.RedisPrefix != "deploy-a:" || cfg.RateLimits.Public != (Rate{Rate: 1.5, Burst: 3}) ||
				cfg.RateLimits.Authenticated != (Rate{Rate: 50, Burst: 100}) {
				t.Fatalf("the file's settings were not applied over the defaults: %+v", cfg)
			}
			if want := []string{"https://app.example.com", "http://localhost:*", "http://[::1]:*"}; !slices.Equal(cfg.CORS.AllowedOrigins, want) {
				t.Fatalf("origins %v, want %v", cfg.CORS.AllowedOrigins, want)
			}
			// The file's routes add to the defaults'.
			get := cfg.Routes["/basalt.identity.v1.IdentityService/GetUser"]
			if get.Timeout == nil || *get.Timeout != Duration(5*time.Second) || get.RateLimit == nil || *get.RateLimit != (Rate{Rate: 2, Burst: 4}) {
				t.Fatalf("GetUser route %+v", get)
			}
			if login := cfg.Routes["/basalt.auth.v1.AuthService/Login"]; login.RateLimit == nil || *login.RateLimit != (Rate{Rate: 0.5, Burst: 5}) {
				t.Fatalf("the default Login route was lost: %+v", login)
			}
			wantUp := map[string][]string{"audit": {"http://10.0.0.1:7101"}, "auth": {"http://10.0.0.2:7102", "https://10.0.0.3:7102"}}
			if !reflect.DeepEqual(cfg.Upstreams, wantUp) {
				t.Fatalf("upstreams %v, want %v", cfg.Upstreams, wantUp)
			}
			if want := []Passthrough{{Service: "connectrpc.conformance.v1.ConformanceService", Upstream: "http://127.0.0.1:9999"}}; !slices.Equal(cfg.Passthrough, want) {
				t.Fatalf("passthrough %v", cfg.Passthrough)
			}
			if want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}; !slices.Equal(cfg.Trusted(), want) {
				t.Fatalf("Trusted() = %v, want %v", cfg.Trusted(), want)
			}
		})
	}
}

func TestStaticEndpointsAddToUpstreams(t *testing.T) {
	t.Parallel()
	file := "upstreams:\n  audit: [\"http://10.0.0.1:7101\"]\n  auth: [\"http://10.0.0.2:7102\"]\n"
	static := "audit=http://127.0.0.1:7201,http://127.0.0.1:7202/;identity=http://127.0.0.1:7203"
	tests := []struct {
		name string
		file string
		env  map[string]string
		want map[string][]string
	}{
		{"none", "", nil, nil},
		{"the file's", file, nil, map[string][]string{"audit": {"http://10.0.0.1:7101"}, "auth": {"http://10.0.0.2:7102"}}},
		{"the environment's", "", map[string]string{"BASALT_STATIC_ENDPOINTS": static},
			map[string][]string{"audit": {"http://127.0.0.1:7201", "http://127.0.0.1:7202"}, "identity": {"http://127.0.0.1:7203"}}},
		// The launcher's table replaces the file's entry of a service it names, and adds the rest.
		{"both", file, map[string]string{"BASALT_STATIC_ENDPOINTS": static},
			map[string][]string{"audit": {"http://127.0.0.1:7201", "http://127.0.0.1:7202"}, "auth": {"http://10.0.0.2:7102"}, "identity": {"http://127.0.0.1:7203"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := load(t, tt.file, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cfg.Upstreams, tt.want) {
				t.Fatalf("Upstreams = %v, want %v", cfg.Upstreams, tt.want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		yaml    string
		wantErr []string // substrings of the error; none for success
	}{
		{"empty", "", nil},
		{"comments only", "# nothing to see\n\n", nil},
		{"a document marker only", "---\n", nil},
		{"a setting", "listen: 0.0.0.0:8080\n", nil},
		{"an unknown top-level field", "listne: 0.0.0.0:8080\n", []string{"listne"}},
		{"an unknown nested field", "cors:\n  allowed_origin: [\"http://localhost:*\"]\n", []string{"allowed_origin"}},
		{"an unknown field of a rate", "rate_limits:\n  public: {rat: 1, burst: 2}\n", []string{"rat"}},
		{"an unknown field of a route", "routes:\n  /basalt.auth.v1.AuthService/Login:\n    timeut: 1s\n", []string{"timeut"}},
		{"an unknown field of a passthrough", "passthrough:\n  - service: a.B\n    upstrem: http://x\n", []string{"upstrem"}},
		{"a setting only the environment gives", "environment: production\n", []string{"environment"}},
		{"a malformed duration", "limits:\n  timeout: fast\n", []string{"not a duration", "fast"}},
		{"a number for a duration", "limits:\n  timeout: 30\n", []string{"not a duration"}},
		{"a word for a number", "limits:\n  max_in_flight: many\n", []string{"many"}},
		{"a map for a list", "cors:\n  allowed_origins: {a: b}\n", []string{"line 2"}}, // yaml names the line
		{"not YAML", "listen: [\n", []string{"config: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := Defaults()
			err := Parse([]byte(tt.yaml), &cfg)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Parse accepted it")
			}
			if !strings.HasPrefix(err.Error(), "config: ") {
				t.Fatalf("error %q does not start with config:", err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestParseKeepsDefaultsForWhatTheFileLeavesOut(t *testing.T) {
	t.Parallel()
	cfg := Defaults()
	if err := Parse([]byte("limits:\n  timeout: 1m\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	want := Defaults()
	want.Limits.Timeout = Duration(time.Minute)
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("got %+v\nwant %+v", cfg, want)
	}
}

func TestLoadReportsFileProblems(t *testing.T) {
	t.Parallel()
	if _, err := load(t, "cors:\n  allowed_origin: []\n", nil); err == nil || !strings.Contains(err.Error(), "allowed_origin") {
		t.Fatalf("an unknown field: err = %v", err)
	}
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	if _, err := Load([]string{"-config", missing}, kconfig.MapLookup(nil)); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("a missing file: err = %v", err)
	}
}

// TestValidationNamesTheField checks each validation: one problem, named by the path of its
// field in the file (or by its environment variable or flag).
func TestValidationNamesTheField(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		file  string
		env   map[string]string
		args  []string
		field string // the problem starts with it
	}{
		{"listen", "listen: nohost\n", nil, nil, "listen"},
		{"listen from the environment", "", map[string]string{"BASALT_LISTEN_ADDR": "a:b:c"}, nil, "listen"},
		{"admin_listen", "admin_listen: nohost\n", nil, nil, "admin_listen"},
		{"advertise", "", nil, []string{"-advertise=nohost"}, "advertise"},
		{"a certificate without a key", "tls:\n  cert_file: /tls/cert.pem\n", nil, nil, "tls.key_file"},
		{"a client CA without a certificate", "tls:\n  client_ca_file: /tls/ca.pem\n", nil, nil, "tls.client_ca_file"},
		{"an origin of another scheme", "cors:\n  allowed_origins: [\"ftp://files.example.com\"]\n", nil, nil, "cors.allowed_origins[0]"},
		{"an origin with a path", "cors:\n  allowed_origins: [\"https://ok.example.com\", \"https://app.example.com/app\"]\n", nil, nil, "cors.allowed_origins[1]"},
		{"an origin with a trailing slash", "cors:\n  allowed_origins: [\"https://app.example.com/\"]\n", nil, nil, "cors.allowed_origins[0]"},
		{"an origin with a query", "cors:\n  allowed_origins: [\"https://app.example.com?x=1\"]\n", nil, nil, "cors.allowed_origins[0]"},
		{"an origin with a user", "cors:\n  allowed_origins: [\"https://me@app.example.com\"]\n", nil, nil, "cors.allowed_origins[0]"},
		{"an origin without a host", "cors:\n  allowed_origins: [\"https://\"]\n", nil, nil, "cors.allowed_origins[0]"},
		{"not an origin", "cors:\n  allowed_origins: [\"localhost:5173\"]\n", nil, nil, "cors.allowed_origins[0]"},
		{"a wildcard host", "cors:\n  allowed_origins: [\"https://*.example.com\"]\n", nil, nil, "cors.allowed_origins[0]"},
		{"any port not at the end", "cors:\n  allowed_origins: [\"http://local:*host\"]\n", nil, nil, "cors.allowed_origins[0]"},
		{"any port after a port", "cors:\n  allowed_origins: [\"http://localhost:80:*\"]\n", nil, nil, "cors.allowed_origins[0]"},
		{"any origin with credentials", "cors:\n  allowed_origins: [\"*\"]\n  allow_credentials: true\n", nil, nil, "cors.allowed_origins[0]"},
		{"any origin beside another, with credentials", "cors:\n  allowed_origins: [\"https://app.example.com\", \"*\"]\n", nil, nil, "cors.allowed_origins[1]"},
		{"no issuer", "auth:\n  issuer: \"\"\n", nil, nil, "auth.issuer"},
		{"no audience", "auth:\n  audience: \"\"\n", nil, nil, "auth.audience"},
		{"no auth service", "auth:\n  service: \"\"\n", nil, nil, "auth.service"},
		{"a negative token cache", "auth:\n  token_cache_size: -1\n", nil, nil, "auth.token_cache_size"},
		{"tiny headers", "limits:\n  max_header_bytes: 100\n", nil, nil, "limits.max_header_bytes"},
		{"tiny requests", "limits:\n  max_request_bytes: 100\n", nil, nil, "limits.max_request_bytes"},
		{"no header timeout", "limits:\n  read_header_timeout: 0s\n", nil, nil, "limits.read_header_timeout"},
		{"no body timeout", "limits:\n  body_timeout: 0s\n", nil, nil, "limits.body_timeout"},
		{"no requests in flight", "limits:\n  max_in_flight: 0\n", nil, nil, "limits.max_in_flight"},
		{"no connections", "limits:\n  max_connections: 0\n", nil, nil, "limits.max_connections"},
		{"no write timeout", "limits:\n  write_timeout: 0s\n", nil, nil, "limits.write_timeout"},
		{"no call timeout", "limits:\n  timeout: 0s\n", nil, nil, "limits.timeout"},
		{"a negative shutdown timeout", "limits:\n  shutdown_timeout: -1s\n", nil, nil, "limits.shutdown_timeout"},
		{"a zero public rate", "rate_limits:\n  public: {rate: 0, burst: 5}\n", nil, nil, "rate_limits.public.rate"},
		{"a zero public burst", "rate_limits:\n  public: {rate: 1, burst: 0}\n", nil, nil, "rate_limits.public.burst"},
		{"a negative authenticated rate", "rate_limits:\n  authenticated: {rate: -1, burst: 5}\n", nil, nil, "rate_limits.authenticated.rate"},
		{"a route that is not a procedure", "routes:\n  notapath: {timeout: 1s}\n", nil, nil, "routes[notapath]"},
		{"a route with a deeper path", "routes:\n  /a.B/C/D: {timeout: 1s}\n", nil, nil, "routes[/a.B/C/D]"},
		{"a negative route timeout", "routes:\n  /basalt.auth.v1.AuthService/Refresh: {timeout: -1s}\n", nil, nil, "routes[/basalt.auth.v1.AuthService/Refresh].timeout"},
		{"a route's zero rate", "routes:\n  /basalt.auth.v1.AuthService/Refresh:\n    rate_limit: {rate: 0, burst: 1}\n", nil, nil, "routes[/basalt.auth.v1.AuthService/Refresh].rate_limit.rate"},
		{"a route's zero burst", "routes:\n  /basalt.auth.v1.AuthService/Refresh:\n    rate_limit: {rate: 1}\n", nil, nil, "routes[/basalt.auth.v1.AuthService/Refresh].rate_limit.burst"},
		{"an upstream that is not a URL", "upstreams:\n  audit: [\"http://10.0.0.1:7101\", \"10.0.0.2:7101\"]\n", nil, nil, "upstreams[audit][1]"},
		{"a passthrough of a basalt service", "passthrough:\n  - {service: basalt.audit.v1.AuditService, upstream: \"http://x:1\"}\n", nil, nil, "passthrough[0].service"},
		{"a passthrough without a service", "passthrough:\n  - {upstream: \"http://x:1\"}\n", nil, nil, "passthrough[0].service"},
		{"a passthrough without an upstream", "passthrough:\n  - {service: a.B}\n", nil, nil, "passthrough[0].upstream"},
		{"a trusted proxy that is not a network", "trusted_proxies: [\"10.0.0.0/8\", \"10.0.0.1\"]\n", nil, nil, "trusted_proxies[1]"},
		{"an unknown environment", "", map[string]string{"BASALT_ENV": "staging"}, nil, "BASALT_ENV"},
		{"a Redis URL of another scheme", "", map[string]string{"BASALT_GATEWAY_REDIS_URL": "http://user:hunter2@redis:6379"}, nil, "BASALT_GATEWAY_REDIS_URL"},
		{"malformed static endpoints", "", map[string]string{"BASALT_STATIC_ENDPOINTS": "audit=ftp://x"}, nil, "BASALT_STATIC_ENDPOINTS"},
		{"an unknown log format", "", map[string]string{"BASALT_LOG_FORMAT": "xml"}, nil, "BASALT_LOG_FORMAT"},
		{"malformed inherited sockets", "", map[string]string{"BASALT_LISTEN_FDS": "3"}, nil, "BASALT_LISTEN_FDS"},
		{"a socket for an address the gateway does not listen on", "", map[string]string{"BASALT_LISTEN_FDS": "127.0.0.1:8080=3,127.0.0.1:9999=4"}, nil, "BASALT_LISTEN_FDS"},
		{"a socket for the admin address when there is none", "admin_listen: \"\"\n", map[string]string{"BASALT_LISTEN_FDS": "127.0.0.1:9080=3"}, nil, "BASALT_LISTEN_FDS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := load(t, tt.file, tt.env, tt.args...)
			if err == nil {
				t.Fatal("accepted")
			}
			ps := problems(err)
			if len(ps) != 1 || !strings.HasPrefix(ps[0], tt.field) {
				t.Fatalf("problems %q, want exactly one, about %s", ps, tt.field)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("the error shows a secret: %v", err)
			}
		})
	}
}

func TestUnknownFlag(t *testing.T) {
	t.Parallel()
	// The kernel's loader stops at a flag it does not know, so the problem comes first (what
	// follows it are checks of settings it left unset).
	_, err := load(t, "", nil, "-nope")
	if ps := problems(err); len(ps) == 0 || !strings.HasPrefix(ps[0], "flag provided but not defined: -nope") {
		t.Fatalf("err = %v, want it to start with the unknown flag", err)
	}
}

func TestValidationReportsEveryProblem(t *testing.T) {
	t.Parallel()
	file := "listen: nohost\nrate_limits:\n  public: {rate: 0, burst: 0}\ntrusted_proxies: [bogus]\n"
	_, err := load(t, file, map[string]string{"BASALT_ENV": "staging"})
	want := []string{"listen", "rate_limits.public.rate", "rate_limits.public.burst", "trusted_proxies[0]", "BASALT_ENV"}
	ps := problems(err)
	if len(ps) != len(want) {
		t.Fatalf("problems %q, want %d", ps, len(want))
	}
	for _, w := range want {
		if !slices.ContainsFunc(ps, func(p string) bool { return strings.HasPrefix(p, w+":") }) {
			t.Fatalf("problems %q, none about %s", ps, w)
		}
	}
}

func TestValidSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		file string
	}{
		{"any origin without credentials", "cors:\n  allowed_origins: [\"*\"]\n  allow_credentials: false\n"},
		{"origins with ports", "cors:\n  allowed_origins: [\"https://app.example.com:8443\", \"http://[::1]:*\", \"http://127.0.0.1:*\"]\n"},
		{"no origins", "cors:\n  allowed_origins: []\n"},
		{"no admin listener", "admin_listen: \"\"\n"},
		{"no timeout for a route", "routes:\n  /basalt.auth.v1.AuthService/Refresh: {timeout: 0s}\n"},
		{"no token cache", "auth:\n  token_cache_size: 0\n"},
		{"fractional rates", "rate_limits:\n  public: {rate: 0.05, burst: 1}\n"},
		{"TLS with client certificates", "tls:\n  cert_file: c.pem\n  key_file: k.pem\n  client_ca_file: ca.pem\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := load(t, tt.file, map[string]string{"BASALT_GATEWAY_REDIS_URL": "rediss://redis.example.com:6380/1"}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestPageDirs covers the folders of the pages the gateway serves: the console and the REST
// reference page.
func TestPageDirs(t *testing.T) {
	t.Parallel()
	built := t.TempDir()
	if err := os.WriteFile(filepath.Join(built, "index.html"), []byte("<!doctype html>"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	file := filepath.Join(empty, "index.html.txt")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	withDirIndex := t.TempDir()
	if err := os.Mkdir(filepath.Join(withDirIndex, "index.html"), 0o700); err != nil {
		t.Fatal(err)
	}
	pages := []struct {
		field, yaml, env, flag, task string
		dir                          func(Config) string
	}{
		{"console.dir", "console", "BASALT_GATEWAY_CONSOLE_DIR", "console-dir", "console:build", func(c Config) string { return c.Console.Dir }},
		{"docs.dir", "docs", "BASALT_GATEWAY_DOCS_DIR", "docs-dir", "apidocs:build", func(c Config) string { return c.Docs.Dir }},
	}
	for _, page := range pages {
		t.Run(page.field, func(t *testing.T) {
			t.Parallel()
			// Off unless set; set from the file, the environment or a flag.
			if cfg, err := load(t, "", nil); err != nil || page.dir(cfg) != "" {
				t.Fatalf("default %s = %q, %v; want off", page.field, page.dir(cfg), err)
			}
			for name, got := range map[string]func() (Config, error){
				"file":        func() (Config, error) { return load(t, page.yaml+":\n  dir: "+built+"\n", nil) },
				"environment": func() (Config, error) { return load(t, "", map[string]string{page.env: built}) },
				"flag":        func() (Config, error) { return load(t, "", nil, "-"+page.flag+"="+built) },
			} {
				if cfg, err := got(); err != nil || page.dir(cfg) != built {
					t.Errorf("from the %s: %s = %q, %v; want %q", name, page.field, page.dir(cfg), err, built)
				}
			}
			for name, dir := range map[string]string{
				"a folder that does not exist":     filepath.Join(empty, "missing"),
				"a folder without index.html":      empty,
				"a file":                           file,
				"a folder whose index.html is one": withDirIndex,
			} {
				_, err := load(t, "", map[string]string{page.env: dir})
				if ps := problems(err); len(ps) != 1 || !strings.HasPrefix(ps[0], page.field+": ") || !strings.Contains(ps[0], page.task) {
					t.Errorf("%s: problems %q, want one about %s that says how to build it", name, ps, page.field)
				}
			}
		})
	}
}

func TestTLSEnabled(t *testing.T) {
	t.Parallel()
	if (TLS{}).Enabled() || !(TLS{CertFile: "c.pem", KeyFile: "k.pem"}).Enabled() {
		t.Fatal("Enabled() does not follow cert_file")
	}
}

func TestInheritedSocketsForBothListeners(t *testing.T) {
	t.Parallel()
	cfg, err := load(t, "", map[string]string{"BASALT_LISTEN_FDS": "127.0.0.1:8080=3,127.0.0.1:9080=4"})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Inherited.String(); got != "127.0.0.1:8080=3,127.0.0.1:9080=4" {
		t.Fatalf("inherited %q", got)
	}
}
