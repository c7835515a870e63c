// Package config is the gateway's configuration: a YAML file for the structure (routes, rate
// limits, CORS) with environment variables and flags overriding the settings that differ per
// deployment. Every problem is reported with the path of the field it concerns.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	kconfig "github.com/basaltplatform/basalt/kernel/config"
	"github.com/basaltplatform/basalt/kernel/listen"
)

// Duration is a time.Duration written as Go writes durations ("30s", "2m").
type Duration time.Duration

// UnmarshalYAML parses a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("not a duration (for example 500ms or 30s): %q", n.Value)
	}
	*d = Duration(v)
	return nil
}

// Config is the gateway's configuration.
type Config struct {
	// Listen is the host:port of the gateway.
	Listen string `yaml:"listen"`
	// Advertise is the host:port registered in discovery; empty means the listen address.
	Advertise string `yaml:"advertise"`
	// AdminListen serves /metrics (Prometheus); empty disables it.
	AdminListen string `yaml:"admin_listen"`
	// TLS, when its files are set, makes the gateway serve HTTPS (HTTP/2 and HTTP/1.1).
	TLS TLS `yaml:"tls"`
	// CORS says which browser origins may call.
	CORS CORS `yaml:"cors"`
	// Auth says how access tokens are checked.
	Auth Auth `yaml:"auth"`
	// Limits bound what a client can make the gateway hold.
	Limits Limits `yaml:"limits"`
	// RateLimits throttle clients.
	RateLimits RateLimits `yaml:"rate_limits"`
	// Routes override per-procedure settings ("/basalt.audit.v1.AuditService/ExportEvents").
	Routes map[string]Route `yaml:"routes"`
	// Upstreams are static service addresses, used when Consul is not configured.
	Upstreams map[string][]string `yaml:"upstreams"`
	// Passthrough routes services outside the contracts as they are (the conformance suite's).
	Passthrough []Passthrough `yaml:"passthrough"`
	// TrustedProxies are the networks whose X-Forwarded-For the gateway believes.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// Console serves the built browser console.
	Console Console `yaml:"console"`
	// Docs serves the REST reference page.
	Docs Docs `yaml:"docs"`

	// Set from the environment only, with the same variables as the services.
	Discovery   kconfig.Discovery `yaml:"-"`
	Log         kconfig.Log       `yaml:"-"`
	Telemetry   kconfig.Telemetry `yaml:"-"`
	Environment string            `yaml:"-"`
	// Inherited holds the listening sockets a parent process bound to Listen and AdminListen
	// and handed down; the gateway serves on them instead of binding those addresses again.
	Inherited listen.Inherited `yaml:"-"`

	trusted []netip.Prefix
}

// TLS names certificate files.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile, when set, requires clients to present certificates signed by it.
	ClientCAFile string `yaml:"client_ca_file"`
}

// Enabled reports whether TLS is configured.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// CORS configures cross-origin requests.
type CORS struct {
	// AllowedOrigins are exact origins ("https://app.example.com") or origins with any port
	// ("http://localhost:*").
	AllowedOrigins   []string `yaml:"allowed_origins"`
	AllowCredentials bool     `yaml:"allow_credentials"`
	MaxAge           Duration `yaml:"max_age"`
}

// Auth configures token validation.
type Auth struct {
	Issuer   string `yaml:"issuer"`
	Audience string `yaml:"audience"`
	// Service is the discovery name of the auth service, whose JWKS the gateway fetches.
	Service string `yaml:"service"`
	// TokenCacheSize bounds the cache of verified tokens.
	TokenCacheSize int `yaml:"token_cache_size"`
}

// Limits bound requests.
type Limits struct {
	MaxHeaderBytes    int      `yaml:"max_header_bytes"`
	MaxRequestBytes   int64    `yaml:"max_request_bytes"`
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	// BodyTimeout bounds how long a client may take to send a unary request's body.
	BodyTimeout Duration `yaml:"body_timeout"`
	IdleTimeout Duration `yaml:"idle_timeout"`
	// WriteTimeout bounds how long a write to a client may wait while the client takes none
	// of it.
	WriteTimeout Duration `yaml:"write_timeout"`
	// MaxInFlight bounds concurrent requests; past it the gateway answers 503.
	MaxInFlight int `yaml:"max_in_flight"`
	// MaxConnections bounds open client connections; past it a new one is closed at once.
	MaxConnections int `yaml:"max_connections"`
	// Timeout bounds a unary call, retries included, unless its route says otherwise.
	Timeout Duration `yaml:"timeout"`
	// ShutdownTimeout bounds the drain on shutdown.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// DisableFastPath sends every plain-text request through net/http's server instead of
	// serving unary Connect calls over HTTP/1.1 on the gateway's own (see ADR-0036).
	DisableFastPath bool `yaml:"disable_fast_path"`
}

// Rate is a token bucket: Rate tokens a second, at most Burst at once.
type Rate struct {
	Rate  float64 `yaml:"rate"`
	Burst int     `yaml:"burst"`
}

// RateLimits configure throttling.
type RateLimits struct {
	// RedisURL, when set, keeps the buckets in Redis, shared by every gateway replica.
	RedisURL kconfig.Secret `yaml:"-"`
	// RedisPrefix starts every bucket's key, so several deployments can share one Redis.
	RedisPrefix string `yaml:"redis_prefix"`
	// Public limits public methods per client IP.
	Public Rate `yaml:"public"`
	// Authenticated limits other methods per subject.
	Authenticated Rate `yaml:"authenticated"`
}

// Route overrides one procedure's settings.
type Route struct {
	// Timeout replaces Limits.Timeout; "0s" means none (for long streams).
	Timeout *Duration `yaml:"timeout"`
	// RateLimit replaces the class's limit; its key stays IP for public methods and subject
	// for the rest.
	RateLimit *Rate `yaml:"rate_limit"`
}

// checkBuilt checks that dir, when set, is a folder holding a built page's index.html (what).
func checkBuilt(l *kconfig.Loader, field, dir, what string) {
	if dir == "" {
		return
	}
	index, err := os.Stat(filepath.Join(dir, "index.html"))
	l.Check(err == nil && index.Mode().IsRegular(), field, "must be a folder holding %s, not %q", what, dir)
}

// Console is the browser console the gateway serves under /console/.
type Console struct {
	// Dir is the folder of the built console (console/dist, with index.html); empty turns the
	// console off.
	Dir string `yaml:"dir"`
}

// Docs is the REST reference page the gateway serves under /docs/, over the OpenAPI document it
// serves at /openapi.json.
type Docs struct {
	// Dir is the folder of the built page (apidocs/dist, with index.html); empty turns the page
	// off (the document is served either way).
	Dir string `yaml:"dir"`
}

// Passthrough routes a service that has no contract in this build.
type Passthrough struct {
	Service  string `yaml:"service"`
	Upstream string `yaml:"upstream"`
}

// Defaults returns the configuration of the embedded default.
func Defaults() Config {
	return Config{
		Listen:      "127.0.0.1:8080",
		AdminListen: "127.0.0.1:9080",
		CORS: CORS{
			AllowedOrigins:   []string{"http://localhost:*", "http://127.0.0.1:*"},
			AllowCredentials: true,
			MaxAge:           Duration(2 * time.Hour),
		},
		Auth: Auth{Issuer: "basalt", Audience: "basalt", Service: "auth", TokenCacheSize: 100_000},
		Limits: Limits{
			MaxHeaderBytes:    64 << 10,
			MaxRequestBytes:   4 << 20,
			ReadHeaderTimeout: Duration(5 * time.Second),
			BodyTimeout:       Duration(30 * time.Second),
			IdleTimeout:       Duration(2 * time.Minute),
			WriteTimeout:      Duration(30 * time.Second),
			MaxInFlight:       4096,
			MaxConnections:    4096,
			Timeout:           Duration(30 * time.Second),
			ShutdownTimeout:   Duration(15 * time.Second),
		},
		RateLimits: RateLimits{
			RedisPrefix:   "basalt:ratelimit:",
			Public:        Rate{Rate: 10, Burst: 20},
			Authenticated: Rate{Rate: 50, Burst: 100},
		},
		Routes: map[string]Route{
			// Credentials are what attackers guess: allow a client a login attempt every two
			// seconds after five, and a registration every ten after three.
			"/basalt.auth.v1.AuthService/Login":    {RateLimit: &Rate{Rate: 0.5, Burst: 5}},
			"/basalt.auth.v1.AuthService/Register": {RateLimit: &Rate{Rate: 0.1, Burst: 3}},
			// Exports stream for as long as they need.
			"/basalt.audit.v1.AuditService/ExportEvents": {Timeout: durationPtr(0)},
		},
	}
}

func durationPtr(d time.Duration) *Duration {
	v := Duration(d)
	return &v
}

// Load reads the YAML file at path (none when empty) over the defaults, then applies args and
// the environment, and validates.
func Load(args []string, lookup func(string) (string, bool)) (Config, error) {
	// The first pass only finds the file. It binds every setting (into a scratch copy), so that
	// the other flags given with -config parse, and it reports nothing: the second pass does.
	var path string
	scratch := Defaults()
	_ = bind(&scratch, &path, args, lookup).Load()

	cfg := Defaults()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("config: %w", err)
		}
		if err := Parse(b, &cfg); err != nil {
			return cfg, err
		}
	}

	l := bind(&cfg, &path, args, lookup)
	_ = l.Load()
	// Static endpoints from the environment (the launcher's table) add to the file's.
	for name, urls := range cfg.Discovery.Static {
		if cfg.Upstreams == nil {
			cfg.Upstreams = map[string][]string{}
		}
		cfg.Upstreams[name] = urls
	}
	cfg.check(l)
	return cfg, l.Err()
}

// bind binds the settings that flags and the environment override, with cfg's values as their
// defaults.
func bind(cfg *Config, path *string, args []string, lookup func(string) (string, bool)) *kconfig.Loader {
	l := kconfig.NewLoader("gateway", args, lookup)
	l.String(path, "config", "BASALT_GATEWAY_CONFIG", *path, "YAML configuration file")
	l.String(&cfg.Listen, "listen", "BASALT_LISTEN_ADDR", cfg.Listen, "host:port to listen on")
	l.String(&cfg.Advertise, "advertise", "BASALT_ADVERTISE_ADDR", cfg.Advertise, "host:port registered in discovery")
	l.String(&cfg.AdminListen, "admin-listen", "BASALT_GATEWAY_ADMIN_LISTEN", cfg.AdminListen, "host:port for /metrics; empty disables it")
	l.String(&cfg.TLS.CertFile, "tls-cert", "BASALT_GATEWAY_TLS_CERT", cfg.TLS.CertFile, "TLS certificate file")
	l.String(&cfg.TLS.KeyFile, "tls-key", "BASALT_GATEWAY_TLS_KEY", cfg.TLS.KeyFile, "TLS key file")
	l.Secret(&cfg.RateLimits.RedisURL, "redis-url", "BASALT_GATEWAY_REDIS_URL", "redis:// URL of the shared rate limit store")
	l.String(&cfg.Auth.Issuer, "auth-issuer", "BASALT_AUTH_ISSUER", cfg.Auth.Issuer, "iss of access tokens")
	l.String(&cfg.Auth.Audience, "auth-audience", "BASALT_AUTH_AUDIENCE", cfg.Auth.Audience, "aud of access tokens")
	l.String(&cfg.Environment, "env", "BASALT_ENV", "development", "development or production")
	l.String(&cfg.Console.Dir, "console-dir", "BASALT_GATEWAY_CONSOLE_DIR", cfg.Console.Dir, "folder of the built console, served under /console/; empty turns it off")
	l.String(&cfg.Docs.Dir, "docs-dir", "BASALT_GATEWAY_DOCS_DIR", cfg.Docs.Dir, "folder of the built REST reference page, served under /docs/; empty turns it off")
	kconfig.BindInherited(l, &cfg.Inherited)
	cfg.Discovery.Bind(l)
	cfg.Log.Bind(l)
	cfg.Telemetry.Bind(l)
	return l
}

// Parse decodes YAML into cfg strictly: an unknown field is an error naming it.
func Parse(b []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	// An empty file (or one of comments only) holds no document: it leaves the defaults.
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// check validates cfg, recording each problem on l under the field's path.
func (c *Config) check(l *kconfig.Loader) {
	hostPort := func(field, v string, optional bool) {
		if v == "" && optional {
			return
		}
		_, _, err := net.SplitHostPort(v)
		l.Check(err == nil, field, "must be host:port, not %q", v)
	}
	hostPort("listen", c.Listen, false)
	hostPort("admin_listen", c.AdminListen, true)
	hostPort("advertise", c.Advertise, true)
	kconfig.CheckInherited(l, c.Inherited, c.Listen, c.AdminListen)
	l.Check(c.TLS.CertFile == "" || c.TLS.KeyFile != "", "tls.key_file", "must be set with tls.cert_file")
	l.Check(c.TLS.ClientCAFile == "" || c.TLS.Enabled(), "tls.client_ca_file", "needs tls.cert_file")
	for i, o := range c.CORS.AllowedOrigins {
		field := fmt.Sprintf("cors.allowed_origins[%d]", i)
		if o == "*" {
			l.Check(!c.CORS.AllowCredentials, field, `"*" cannot be combined with cors.allow_credentials`)
			continue
		}
		// An origin is scheme://host[:port] and nothing else (a browser never sends a path,
		// query, fragment or user); ":*" may only end it, in place of the port.
		base, anyPort := strings.CutSuffix(o, ":*")
		u, err := url.Parse(base)
		l.Check(err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && base == u.Scheme+"://"+u.Host &&
			!strings.Contains(u.Host, "*") && (!anyPort || u.Port() == ""),
			field, "must be scheme://host[:port] or scheme://host:* , not %q", o)
	}
	l.Check(c.Auth.Issuer != "", "auth.issuer", "must be set")
	l.Check(c.Auth.Audience != "", "auth.audience", "must be set")
	l.Check(c.Auth.Service != "", "auth.service", "must name the auth service")
	l.Check(c.Auth.TokenCacheSize >= 0, "auth.token_cache_size", "must not be negative")
	l.Check(c.Limits.MaxHeaderBytes >= 4<<10, "limits.max_header_bytes", "must be at least 4096")
	l.Check(c.Limits.MaxRequestBytes >= 1<<10, "limits.max_request_bytes", "must be at least 1024")
	l.Check(c.Limits.ReadHeaderTimeout > 0, "limits.read_header_timeout", "must be positive")
	l.Check(c.Limits.BodyTimeout > 0, "limits.body_timeout", "must be positive")
	l.Check(c.Limits.WriteTimeout > 0, "limits.write_timeout", "must be positive")
	l.Check(c.Limits.MaxInFlight >= 1, "limits.max_in_flight", "must be at least 1")
	l.Check(c.Limits.MaxConnections >= 1, "limits.max_connections", "must be at least 1")
	l.Check(c.Limits.Timeout > 0, "limits.timeout", "must be positive")
	l.Check(c.Limits.ShutdownTimeout > 0, "limits.shutdown_timeout", "must be positive")
	checkRate(l, "rate_limits.public", c.RateLimits.Public)
	checkRate(l, "rate_limits.authenticated", c.RateLimits.Authenticated)
	if r := c.RateLimits.RedisURL.Reveal(); r != "" {
		u, err := url.Parse(r)
		l.Check(err == nil && (u.Scheme == "redis" || u.Scheme == "rediss"), "BASALT_GATEWAY_REDIS_URL", "must be a redis:// or rediss:// URL")
	}
	procs := make([]string, 0, len(c.Routes))
	for p := range c.Routes {
		procs = append(procs, p)
	}
	slices.Sort(procs)
	for _, p := range procs {
		r := c.Routes[p]
		field := "routes[" + p + "]"
		l.Check(strings.Count(p, "/") == 2 && strings.HasPrefix(p, "/"), field, "must be a procedure path /package.Service/Method")
		if r.Timeout != nil {
			l.Check(*r.Timeout >= 0, field+".timeout", "must not be negative")
		}
		if r.RateLimit != nil {
			checkRate(l, field+".rate_limit", *r.RateLimit)
		}
	}
	for name, urls := range c.Upstreams {
		for i, raw := range urls {
			u, err := url.Parse(raw)
			l.Check(err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "", fmt.Sprintf("upstreams[%s][%d]", name, i), "must be an http(s) base URL, not %q", raw)
		}
	}
	for i, p := range c.Passthrough {
		field := fmt.Sprintf("passthrough[%d]", i)
		l.Check(p.Service != "" && !strings.HasPrefix(p.Service, "basalt."), field+".service", "must name a service outside the basalt contracts")
		u, err := url.Parse(p.Upstream)
		l.Check(err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "", field+".upstream", "must be an http(s) base URL")
	}
	c.trusted = nil
	for i, cidr := range c.TrustedProxies {
		p, err := netip.ParsePrefix(cidr)
		l.Check(err == nil, fmt.Sprintf("trusted_proxies[%d]", i), "must be a network such as 10.0.0.0/8, not %q", cidr)
		c.trusted = append(c.trusted, p)
	}
	l.Check(c.Environment == "development" || c.Environment == "production", "BASALT_ENV", "must be development or production")
	checkBuilt(l, "console.dir", c.Console.Dir, "the built console's index.html (go tool task console:build builds it)")
	checkBuilt(l, "docs.dir", c.Docs.Dir, "the built reference page's index.html (go tool task apidocs:build builds it)")
	c.Discovery.Check(l)
	c.Log.Check(l)
	c.Telemetry.Check(l)
}

func checkRate(l *kconfig.Loader, field string, r Rate) {
	l.Check(r.Rate > 0, field+".rate", "must be positive")
	l.Check(r.Burst >= 1, field+".burst", "must be at least 1")
}

// Trusted returns the parsed trusted proxy networks.
func (c *Config) Trusted() []netip.Prefix { return c.trusted }
