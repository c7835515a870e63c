package config

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/basaltplatform/basalt/kernel/listen"
)

// Service is the configuration every Basalt service process shares. A service embeds it in
// its own config type and binds its extra settings on the same Loader.
type Service struct {
	// Name is the service's name, as registered in discovery ("audit"). It is set by the
	// service's main package, not by the environment.
	Name string
	// Environment is "development" or "production".
	Environment string
	// DataDir holds the embedded default's SQLite files when no DATABASE_URL is set.
	DataDir   string
	HTTP      HTTP
	Database  Database
	Discovery Discovery
	Log       Log
	Telemetry Telemetry
	Auth      Auth
	Outbox    Outbox
}

// Auth configures how the service authenticates callers and checks permissions.
type Auth struct {
	// InternalSecret is shared by the services of one deployment; service credentials are
	// signed with it. At least 32 bytes.
	InternalSecret Secret
	// InternalSecretAccepted, when set, also verifies service credentials, so that the shared
	// secret can change while the services restart one at a time.
	InternalSecretAccepted Secret
	// Issuer and Audience are what access tokens must carry in iss and aud.
	Issuer   string
	Audience string
	// SessionCheck makes services ask the auth service (cached for SessionCacheTTL) whether a
	// token's session is still active, so logout and revocation take effect before the token
	// expires.
	SessionCheck    bool
	SessionCacheTTL time.Duration
	// PermissionCacheTTL is how long a service reuses an answer of the authz service.
	PermissionCacheTTL time.Duration
}

// Outbox configures the relay of audit events.
type Outbox struct {
	// Interval is how often the relay looks for events when nothing woke it.
	Interval time.Duration
	// BatchSize is the most events sent in one call.
	BatchSize int
	// MaxBackoff bounds the wait before failed events are sent again.
	MaxBackoff time.Duration
}

// HTTP configures the service's one listening port.
type HTTP struct {
	// ListenAddr is the host:port to listen on; port 0 picks a free port, which works with
	// Consul because the actual port is what gets registered.
	ListenAddr string
	// Inherited holds the listening socket a parent process bound to ListenAddr and handed down,
	// if it did; the service serves on it instead of binding the address again.
	Inherited listen.Inherited
	// AdvertiseAddr is the host:port other processes use to reach this one. Empty means the
	// listen address with its actual port.
	AdvertiseAddr string
	// ReadHeaderTimeout bounds how long a client may take to send request headers.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes keep-alive connections that carry no request for this long.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the size of request headers.
	MaxHeaderBytes int
	// MaxMessageBytes bounds the size of one (decompressed) RPC message in either direction.
	MaxMessageBytes int
	// ShutdownTimeout bounds how long in-flight requests may take to finish on shutdown.
	ShutdownTimeout time.Duration
	// DrainDelay is how long the service keeps serving after it deregistered and before it stops
	// accepting, so that clients watching discovery move away first.
	DrainDelay time.Duration
	// AdminListen is the host:port of the admin listener, which serves /metrics to Prometheus
	// and /healthz and /readyz; empty turns it off. It is a port of its own so that it can stay
	// private while the RPC port is reachable by every other service.
	AdminListen string
}

// Database configures the service's own pool of database connections.
type Database struct {
	// URL is a postgres:// URL, or sqlite:// followed by a file path for the embedded default.
	// On PostgreSQL the service's sessions log in with it and run as AppRole.
	URL Secret
	// OwnerURL, when set, is the postgres:// URL that provisioning and migrations log in with,
	// as OwnerRole; URL then logs in as a member of AppRole only, so the service's sessions
	// cannot become the owner. Empty means URL, whose login must then be able to act as both.
	OwnerURL Secret
	// Schema is the PostgreSQL schema the service owns; it defaults to the service name.
	Schema string
	// OwnerRole owns the schema and every object in it; migrations run as it and the
	// service's sessions never do. Empty means basalt_<schema>.
	OwnerRole string
	// AppRole is the role the service's sessions run as: it may read and write the schema's
	// tables but neither change nor drop them. Empty means basalt_<schema>_app.
	AppRole string
	// MaxConns and MinConns bound the pool.
	MaxConns int
	MinConns int
	// MaxConnLifetime recycles connections, so that a fail-over or a pooler restart is picked up.
	MaxConnLifetime time.Duration
	// MaxConnIdleTime closes connections that sit unused for this long.
	MaxConnIdleTime time.Duration
	// ConnectTimeout bounds each new connection.
	ConnectTimeout time.Duration
}

// Discovery configures how the service registers itself and finds others.
type Discovery struct {
	// ConsulAddr is the Consul agent's HTTP address; empty means static discovery.
	ConsulAddr string
	// ConsulToken is the ACL token for Consul, if ACLs are on.
	ConsulToken Secret
	// Static maps service names to base URLs for static discovery.
	Static map[string][]string
	// CheckInterval and CheckTimeout configure the health check Consul runs against /readyz.
	CheckInterval time.Duration
	CheckTimeout  time.Duration
	// DeregisterAfter removes an instance whose check stayed critical this long (Consul's
	// minimum is one minute).
	DeregisterAfter time.Duration
}

// Log configures logging.
type Log struct {
	// Level is the minimum level written.
	Level slog.Level
	// Format is "json", "text", or "auto" (text on a terminal, JSON otherwise).
	Format string
}

// Telemetry configures OpenTelemetry.
type Telemetry struct {
	// OTLPEndpoint is the OTLP/HTTP collector URL; empty means no export (trace ids are still
	// generated for logs and propagation).
	OTLPEndpoint string
	// SampleRatio is the fraction of new traces sampled (parent-based).
	SampleRatio float64
}

// UsesConsul reports whether discovery goes through Consul.
func (d Discovery) UsesConsul() bool { return d.ConsulAddr != "" }

// IsPostgres reports whether the database URL points at PostgreSQL.
func (d Database) IsPostgres() bool {
	u := d.URL.Reveal()
	return strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")
}

var (
	namePattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,40}$`)
	rolePattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
)

// Bind binds every shared setting on l; name is the service's name.
func (s *Service) Bind(l *Loader, name string) {
	s.Name = name
	l.String(&s.Environment, "env", "BASALT_ENV", "development", "development or production")
	l.String(&s.DataDir, "data-dir", "BASALT_DATA_DIR", ".data", "folder for the embedded default's SQLite files")

	l.String(&s.HTTP.ListenAddr, "listen", "BASALT_LISTEN_ADDR", "127.0.0.1:0", "host:port to listen on")
	BindInherited(l, &s.HTTP.Inherited)
	l.String(&s.HTTP.AdvertiseAddr, "advertise", "BASALT_ADVERTISE_ADDR", "", "host:port others reach this instance at")
	l.Duration(&s.HTTP.ReadHeaderTimeout, "read-header-timeout", "BASALT_READ_HEADER_TIMEOUT", 5*time.Second, "time allowed to read request headers")
	l.Duration(&s.HTTP.IdleTimeout, "idle-timeout", "BASALT_IDLE_TIMEOUT", 2*time.Minute, "keep-alive idle timeout")
	l.Int(&s.HTTP.MaxHeaderBytes, "max-header-bytes", "BASALT_MAX_HEADER_BYTES", 64<<10, "largest request header block")
	l.Int(&s.HTTP.MaxMessageBytes, "max-message-bytes", "BASALT_MAX_MESSAGE_BYTES", 4<<20, "largest RPC message")
	l.Duration(&s.HTTP.ShutdownTimeout, "shutdown-timeout", "BASALT_SHUTDOWN_TIMEOUT", 15*time.Second, "time allowed to drain in-flight requests")
	l.Duration(&s.HTTP.DrainDelay, "drain-delay", "BASALT_DRAIN_DELAY", 0, "time to keep serving after deregistration")
	l.String(&s.HTTP.AdminListen, "admin-listen", "BASALT_ADMIN_LISTEN", "", "host:port for /metrics, /healthz and /readyz; empty turns them off")

	l.Secret(&s.Database.URL, "database-url", "DATABASE_URL", "postgres:// URL; empty means SQLite under the data dir")
	l.Secret(&s.Database.OwnerURL, "database-owner-url", "BASALT_DATABASE_OWNER_URL", "postgres:// URL of the login that provisions the schema and migrates it; empty means DATABASE_URL")
	l.String(&s.Database.Schema, "db-schema", "BASALT_DB_SCHEMA", name, "PostgreSQL schema owned by this service")
	l.String(&s.Database.OwnerRole, "db-role", "BASALT_DB_ROLE", "", "PostgreSQL role that owns the schema and runs migrations; empty means basalt_<schema>")
	l.String(&s.Database.AppRole, "db-app-role", "BASALT_DB_APP_ROLE", "", "PostgreSQL role the service's sessions run as; empty means basalt_<schema>_app")
	l.Int(&s.Database.MaxConns, "db-max-conns", "BASALT_DB_MAX_CONNS", 10, "largest pool size")
	l.Int(&s.Database.MinConns, "db-min-conns", "BASALT_DB_MIN_CONNS", 0, "connections kept open when idle")
	l.Duration(&s.Database.MaxConnLifetime, "db-max-conn-lifetime", "BASALT_DB_MAX_CONN_LIFETIME", time.Hour, "connection recycling age")
	l.Duration(&s.Database.MaxConnIdleTime, "db-max-conn-idle", "BASALT_DB_MAX_CONN_IDLE", 5*time.Minute, "idle connection timeout")
	l.Duration(&s.Database.ConnectTimeout, "db-connect-timeout", "BASALT_DB_CONNECT_TIMEOUT", 5*time.Second, "timeout for a new connection")

	s.Discovery.Bind(l)

	s.Log.Bind(l)

	l.Secret(&s.Auth.InternalSecret, "internal-secret", "BASALT_INTERNAL_SECRET", "secret shared by the services of a deployment (32 bytes or more)")
	l.Secret(&s.Auth.InternalSecretAccepted, "internal-secret-accepted", "BASALT_INTERNAL_SECRET_ACCEPTED", "a second secret whose service credentials are accepted, while the shared secret changes")
	l.String(&s.Auth.Issuer, "auth-issuer", "BASALT_AUTH_ISSUER", "basalt", "iss of access tokens")
	l.String(&s.Auth.Audience, "auth-audience", "BASALT_AUTH_AUDIENCE", "basalt", "aud of access tokens")
	l.Bool(&s.Auth.SessionCheck, "auth-session-check", "BASALT_AUTH_SESSION_CHECK", true, "refuse tokens of ended sessions before they expire")
	l.Duration(&s.Auth.SessionCacheTTL, "auth-session-cache-ttl", "BASALT_AUTH_SESSION_CACHE_TTL", 5*time.Second, "how long a session check is reused")
	l.Duration(&s.Auth.PermissionCacheTTL, "permission-cache-ttl", "BASALT_PERMISSION_CACHE_TTL", 2*time.Second, "how long a permission check is reused")
	l.Duration(&s.Outbox.Interval, "outbox-interval", "BASALT_OUTBOX_INTERVAL", 500*time.Millisecond, "how often the audit relay looks for events")
	l.Int(&s.Outbox.BatchSize, "outbox-batch", "BASALT_OUTBOX_BATCH", 100, "most events relayed in one call")
	l.Duration(&s.Outbox.MaxBackoff, "outbox-max-backoff", "BASALT_OUTBOX_MAX_BACKOFF", 30*time.Second, "longest wait before failed events are sent again")

	s.Telemetry.Bind(l)
}

// Check validates the loaded settings and fills in derived defaults. Call it after Load.
func (s *Service) Check(l *Loader) {
	l.Check(s.Environment == "development" || s.Environment == "production", "BASALT_ENV", "must be development or production, not %q", s.Environment)
	host, _, err := net.SplitHostPort(s.HTTP.ListenAddr)
	l.Check(err == nil, "BASALT_LISTEN_ADDR", "must be host:port, not %q", s.HTTP.ListenAddr)
	if s.HTTP.AdminListen != "" {
		_, adminPort, err := net.SplitHostPort(s.HTTP.AdminListen)
		l.Check(err == nil, "BASALT_ADMIN_LISTEN", "must be host:port, not %q", s.HTTP.AdminListen)
		l.Check(err != nil || adminPort == "0" || s.HTTP.AdminListen != s.HTTP.ListenAddr, "BASALT_ADMIN_LISTEN", "must differ from BASALT_LISTEN_ADDR (%s)", s.HTTP.ListenAddr)
	}
	CheckInherited(l, s.HTTP.Inherited, s.HTTP.ListenAddr, s.HTTP.AdminListen)
	if s.HTTP.AdvertiseAddr != "" {
		_, _, err := net.SplitHostPort(s.HTTP.AdvertiseAddr)
		l.Check(err == nil, "BASALT_ADVERTISE_ADDR", "must be host:port, not %q", s.HTTP.AdvertiseAddr)
	} else if ip := net.ParseIP(host); s.Discovery.UsesConsul() && (host == "" || (ip != nil && ip.IsUnspecified())) {
		l.Check(false, "BASALT_ADVERTISE_ADDR", "must be set when listening on all interfaces (%s) with Consul, so the registered address is reachable", s.HTTP.ListenAddr)
	}
	l.Check(s.HTTP.ReadHeaderTimeout > 0, "BASALT_READ_HEADER_TIMEOUT", "must be positive")
	l.Check(s.HTTP.MaxHeaderBytes >= 4<<10, "BASALT_MAX_HEADER_BYTES", "must be at least 4096")
	l.Check(s.HTTP.MaxMessageBytes >= 1<<10, "BASALT_MAX_MESSAGE_BYTES", "must be at least 1024")
	l.Check(s.HTTP.ShutdownTimeout > 0, "BASALT_SHUTDOWN_TIMEOUT", "must be positive")
	l.Check(s.HTTP.DrainDelay >= 0, "BASALT_DRAIN_DELAY", "must not be negative")

	if !s.Database.URL.IsSet() {
		abs, err := filepath.Abs(filepath.Join(s.DataDir, s.Name+".db"))
		l.Check(err == nil, "BASALT_DATA_DIR", "cannot be resolved: %v", err)
		s.Database.URL = NewSecret("sqlite://" + abs)
	}
	switch u := s.Database.URL.Reveal(); {
	case s.Database.IsPostgres():
		_, err := url.Parse(u)
		l.Check(err == nil, "DATABASE_URL", "is not a valid URL")
	case strings.HasPrefix(u, "sqlite://"):
		l.Check(len(u) > len("sqlite://"), "DATABASE_URL", "sqlite:// needs a file path")
	default:
		l.Check(false, "DATABASE_URL", "must start with postgres://, postgresql:// or sqlite://")
	}
	l.Check(namePattern.MatchString(s.Database.Schema), "BASALT_DB_SCHEMA", "must be a lower-case identifier, not %q", s.Database.Schema)
	if s.Database.OwnerURL.IsSet() {
		u, err := url.Parse(s.Database.OwnerURL.Reveal())
		l.Check(err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql"), "BASALT_DATABASE_OWNER_URL", "must be a postgres:// or postgresql:// URL")
		l.Check(s.Database.IsPostgres(), "BASALT_DATABASE_OWNER_URL", "needs a postgres:// DATABASE_URL; SQLite has no roles")
	}
	l.Check(s.Database.OwnerRole == "" || rolePattern.MatchString(s.Database.OwnerRole), "BASALT_DB_ROLE", "must be a lower-case identifier, not %q", s.Database.OwnerRole)
	l.Check(s.Database.AppRole == "" || rolePattern.MatchString(s.Database.AppRole), "BASALT_DB_APP_ROLE", "must be a lower-case identifier, not %q", s.Database.AppRole)
	l.Check(s.Database.AppRole == "" || s.Database.AppRole != s.Database.OwnerRole, "BASALT_DB_APP_ROLE", "must differ from BASALT_DB_ROLE: the sessions' role must not own the schema")
	l.Check(s.Database.MaxConns >= 1 && s.Database.MaxConns <= 1000, "BASALT_DB_MAX_CONNS", "must be between 1 and 1000")
	l.Check(s.Database.MinConns >= 0 && s.Database.MinConns <= s.Database.MaxConns, "BASALT_DB_MIN_CONNS", "must be between 0 and BASALT_DB_MAX_CONNS")
	l.Check(s.Database.ConnectTimeout > 0, "BASALT_DB_CONNECT_TIMEOUT", "must be positive")

	s.Discovery.Check(l)

	l.Check(len(s.Auth.InternalSecret.Reveal()) >= 32, "BASALT_INTERNAL_SECRET", "must be set, 32 bytes or more (go tool task up generates one)")
	l.Check(!s.Auth.InternalSecretAccepted.IsSet() || len(s.Auth.InternalSecretAccepted.Reveal()) >= 32, "BASALT_INTERNAL_SECRET_ACCEPTED", "must be 32 bytes or more when set")
	l.Check(s.Auth.Issuer != "" && s.Auth.Audience != "", "BASALT_AUTH_ISSUER", "issuer and audience must not be empty")
	l.Check(s.Auth.SessionCacheTTL >= 0 && s.Auth.PermissionCacheTTL >= 0, "BASALT_PERMISSION_CACHE_TTL", "cache lifetimes must not be negative")
	l.Check(s.Outbox.Interval > 0, "BASALT_OUTBOX_INTERVAL", "must be positive")
	l.Check(s.Outbox.BatchSize >= 1 && s.Outbox.BatchSize <= 500, "BASALT_OUTBOX_BATCH", "must be between 1 and 500")
	l.Check(s.Outbox.MaxBackoff > 0, "BASALT_OUTBOX_MAX_BACKOFF", "must be positive")

	s.Log.Check(l)
	s.Telemetry.Check(l)
}

// Bind binds the discovery settings on l; processes other than services (the gateway) share
// them.
func (d *Discovery) Bind(l *Loader) {
	l.String(&d.ConsulAddr, "consul", "CONSUL_HTTP_ADDR", "", "Consul agent address; empty means static discovery")
	l.Secret(&d.ConsulToken, "consul-token", "CONSUL_HTTP_TOKEN", "Consul ACL token")
	l.Func("static-endpoints", "BASALT_STATIC_ENDPOINTS", "", "static discovery: name=url[,url];name2=url", func(v string) error {
		m, err := ParseEndpoints(v)
		if err != nil {
			return err
		}
		d.Static = m
		return nil
	})
	l.Duration(&d.CheckInterval, "check-interval", "BASALT_CHECK_INTERVAL", 5*time.Second, "Consul health check interval")
	l.Duration(&d.CheckTimeout, "check-timeout", "BASALT_CHECK_TIMEOUT", 2*time.Second, "Consul health check timeout")
	l.Duration(&d.DeregisterAfter, "deregister-after", "BASALT_DEREGISTER_AFTER", time.Minute, "remove an instance critical this long")

}

// Check validates the discovery settings.
func (d *Discovery) Check(l *Loader) {
	l.Check(d.CheckInterval >= 100*time.Millisecond, "BASALT_CHECK_INTERVAL", "must be at least 100ms")
	l.Check(d.CheckTimeout > 0 && d.CheckTimeout <= d.CheckInterval, "BASALT_CHECK_TIMEOUT", "must be positive and at most the check interval")
	l.Check(d.DeregisterAfter >= time.Minute, "BASALT_DEREGISTER_AFTER", "must be at least 1m (Consul's minimum)")
}

// BindInherited binds the listening sockets a parent process handed down, in the form
// listen.Parse reads; every process that listens shares the setting.
func BindInherited(l *Loader, dst *listen.Inherited) {
	l.Func("listen-fds", "BASALT_LISTEN_FDS", "", "sockets handed down by the parent process: address=descriptor,...", func(v string) error {
		in, err := listen.Parse(v)
		if err != nil {
			return err
		}
		*dst = in
		return nil
	})
}

// CheckInherited fails for a handed-down socket whose address is none of the ones the process
// listens on: nobody would serve on it, yet it would keep its port taken and let connections
// wait in its queue.
func CheckInherited(l *Loader, in listen.Inherited, listening ...string) {
	for addr := range in {
		l.Check(slices.Contains(listening, addr), "BASALT_LISTEN_FDS", "hands down a socket for %s, which the process does not listen on (%s)", addr, strings.Join(listening, ", "))
	}
}

// Bind binds the log settings on l.
func (lg *Log) Bind(l *Loader) {
	l.Func("log-level", "BASALT_LOG_LEVEL", "info", "debug, info, warn or error", func(v string) error {
		return lg.Level.UnmarshalText([]byte(v))
	})
	l.String(&lg.Format, "log-format", "BASALT_LOG_FORMAT", "auto", "json, text or auto")

}

// Check validates the log settings.
func (lg *Log) Check(l *Loader) {
	l.Check(lg.Format == "auto" || lg.Format == "json" || lg.Format == "text", "BASALT_LOG_FORMAT", "must be auto, json or text, not %q", lg.Format)
}

// Bind binds the telemetry settings on l.
func (t *Telemetry) Bind(l *Loader) {
	l.String(&t.OTLPEndpoint, "otlp-endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT", "", "OTLP/HTTP collector URL")
	l.Func("trace-sample-ratio", "BASALT_TRACE_SAMPLE_RATIO", "1", "fraction of new traces sampled", func(v string) error {
		var r float64
		if _, err := fmt.Sscanf(strings.TrimSpace(v), "%g", &r); err != nil || r < 0 || r > 1 {
			return fmt.Errorf("not a number between 0 and 1")
		}
		t.SampleRatio = r
		return nil
	})
}

// Check validates the telemetry settings.
func (t *Telemetry) Check(l *Loader) {
	if t.OTLPEndpoint != "" {
		u, err := url.Parse(t.OTLPEndpoint)
		l.Check(err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "", "OTEL_EXPORTER_OTLP_ENDPOINT", "must be an http(s) URL")
	}
}
