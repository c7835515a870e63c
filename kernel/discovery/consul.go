package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

// Consul registers instances with a Consul agent, keeps them registered while they run, and
// resolves services through it.
//
// Resolution keeps one blocking query per service running in the background, over the passing
// instances only, and answers Endpoints from the last result. If the agent becomes unreachable
// the last known set keeps being served (and the query retried with backoff), so a short
// Consul outage does not take callers down with it.
type Consul struct {
	client    *api.Client
	transport *http.Transport
	token     string
	log       *slog.Logger
	opts      consulOptions

	mu       sync.Mutex
	watchers map[string]*watcher
	// kept stops the loop that keeps an instance registered, by instance id.
	kept   map[string]func()
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var (
	_ Registrar = (*Consul)(nil)
	_ Resolver  = (*Consul)(nil)
)

type consulOptions struct {
	checkInterval   time.Duration
	checkTimeout    time.Duration
	deregisterAfter time.Duration
	waitTime        time.Duration
	maxBackoff      time.Duration
	recoveryGrace   time.Duration
	log             *slog.Logger
	token           string
}

// ConsulOption configures NewConsul.
type ConsulOption func(*consulOptions)

// WithCheck sets the health check's interval and timeout and how long an instance may stay
// critical before Consul removes it (defaults 5s, 2s and 1m).
func WithCheck(interval, timeout, deregisterAfter time.Duration) ConsulOption {
	return func(o *consulOptions) {
		o.checkInterval, o.checkTimeout, o.deregisterAfter = interval, timeout, deregisterAfter
	}
}

// WithWaitTime bounds each blocking query (default 5m, Consul's maximum is 10m).
func WithWaitTime(d time.Duration) ConsulOption { return func(o *consulOptions) { o.waitTime = d } }

// WithMaxBackoff bounds the wait between failed queries (default 5s).
func WithMaxBackoff(d time.Duration) ConsulOption {
	return func(o *consulOptions) { o.maxBackoff = d }
}

// WithRecoveryGrace bounds how long, after the agent answers again following failures or
// with an index that went backwards, an answer with no instances leaves the last known ones
// in place (default 10s): long enough for registrars to register again with their backoff.
func WithRecoveryGrace(d time.Duration) ConsulOption {
	return func(o *consulOptions) { o.recoveryGrace = d }
}

// WithConsulLogger sets the logger.
func WithConsulLogger(l *slog.Logger) ConsulOption { return func(o *consulOptions) { o.log = l } }

// WithToken sets the ACL token.
func WithToken(token string) ConsulOption { return func(o *consulOptions) { o.token = token } }

// NewConsul returns a client of the Consul agent at addr ("127.0.0.1:8500" or a URL).
func NewConsul(addr string, opts ...ConsulOption) (*Consul, error) {
	o := consulOptions{
		checkInterval:   5 * time.Second,
		checkTimeout:    2 * time.Second,
		deregisterAfter: time.Minute,
		waitTime:        5 * time.Minute,
		maxBackoff:      5 * time.Second,
		recoveryGrace:   10 * time.Second,
		log:             slog.New(slog.DiscardHandler),
	}
	for _, opt := range opts {
		opt(&o)
	}
	// The transport is ours so that Close can release its idle connections.
	transport := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	cfg := api.DefaultNonPooledConfig()
	cfg.Address = addr
	cfg.Token = o.token
	cfg.HttpClient = &http.Client{Transport: transport}
	client, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("discovery: consul: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Consul{
		client:    client,
		transport: transport,
		token:     o.token,
		log:       o.log,
		opts:      o,
		watchers:  map[string]*watcher{},
		kept:      map[string]func(){},
		ctx:       ctx,
		cancel:    cancel,
	}, nil
}

// Client returns the underlying Consul API client.
func (c *Consul) Client() *api.Client { return c.client }

// Register registers inst with an HTTP health check against its HealthURL, and keeps it
// registered until Deregister or Close. The instance starts as passing: it is registered only
// once it listens and its dependencies answered.
//
// Consul forgets registrations while a process runs: an agent that restarts loses those made
// through its API (all of them in dev mode), and an instance critical for longer than the
// deregistration period is removed. A process registered once would then be gone for good
// while it still serves. So a background loop watches the agent's entry for inst with
// blocking queries and registers it again, with backoff, whenever the agent no longer has it;
// the instance and check ids stay the same.
func (c *Consul) Register(ctx context.Context, inst Instance) error {
	if err := c.register(ctx, inst, api.HealthPassing); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx.Err() != nil {
		return errors.New("discovery: consul registrar is closed")
	}
	if stop, ok := c.kept[inst.ID]; ok {
		stop()
	}
	kctx, cancel := context.WithCancel(c.ctx)
	done := make(chan struct{})
	c.kept[inst.ID] = func() { cancel(); <-done }
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(done)
		c.keep(kctx, inst)
	}()
	return nil
}

// register sends inst's registration to the agent with its check in the given initial status.
func (c *Consul) register(ctx context.Context, inst Instance, status string) error {
	reg := &api.AgentServiceRegistration{
		ID:      inst.ID,
		Name:    inst.Service,
		Address: inst.Host,
		Port:    inst.Port,
		Tags:    inst.Tags,
		Meta:    inst.Meta,
		Check: &api.AgentServiceCheck{
			CheckID:                        CheckID(inst),
			Name:                           inst.Service + " readiness",
			HTTP:                           inst.HealthURL,
			Method:                         http.MethodGet,
			Interval:                       c.opts.checkInterval.String(),
			Timeout:                        c.opts.checkTimeout.String(),
			DeregisterCriticalServiceAfter: c.opts.deregisterAfter.String(),
			Status:                         status,
		},
	}
	opts := api.ServiceRegisterOpts{ReplaceExistingChecks: true}
	if err := c.client.Agent().ServiceRegisterOpts(reg, opts.WithContext(ctx)); err != nil {
		return fmt.Errorf("discovery: register %s with consul: %w", inst.ID, err)
	}
	return nil
}

// CheckID is the id of inst's readiness check in Consul.
func CheckID(inst Instance) string { return inst.ID + ":ready" }

// keep registers inst again whenever the agent no longer has it, until ctx ends. It waits on
// the agent's entry for inst with hash-based blocking queries, so a loss is noticed as soon as
// the agent drops the entry, or as soon as a restarted agent answers.
func (c *Consul) keep(ctx context.Context, inst Instance) {
	var hash string
	backoff := minBackoff
	for ctx.Err() == nil {
		q := (&api.QueryOptions{WaitHash: hash, WaitTime: c.opts.waitTime}).WithContext(ctx)
		_, meta, err := c.client.Agent().Service(inst.ID, q)
		if err == nil {
			hash, backoff = meta.LastContentHash, minBackoff
			continue
		}
		if ctx.Err() != nil {
			return
		}
		hash = ""
		if statusErr := (api.StatusError{}); errors.As(err, &statusErr) && statusErr.Code == http.StatusNotFound {
			status := api.HealthPassing
			if inst.Ready != nil && !inst.Ready(ctx) {
				status = api.HealthCritical
			}
			if err = c.register(ctx, inst, status); err == nil {
				c.log.Warn("consul had lost this instance's registration; registered it again", "instance", inst.ID, "status", status)
				backoff = minBackoff
				continue
			}
		}
		if ctx.Err() != nil {
			return
		}
		c.log.Warn("cannot confirm this instance's registration with consul; retrying", "instance", inst.ID, "error", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, c.opts.maxBackoff)
	}
}

// minBackoff is the first wait after a failed query to Consul.
const minBackoff = 100 * time.Millisecond

// Deregister stops keeping inst registered and removes it from the agent.
func (c *Consul) Deregister(ctx context.Context, inst Instance) error {
	c.mu.Lock()
	stop := c.kept[inst.ID]
	delete(c.kept, inst.ID)
	c.mu.Unlock()
	if stop != nil {
		stop()
	}
	q := (&api.QueryOptions{}).WithContext(ctx)
	if err := c.client.Agent().ServiceDeregisterOpts(inst.ID, q); err != nil {
		return fmt.Errorf("discovery: deregister %s from consul: %w", inst.ID, err)
	}
	return nil
}

// Endpoints returns the passing instances of service. The first call for a service starts its
// watch and waits, bounded by ctx, for the first answer.
func (c *Consul) Endpoints(ctx context.Context, service string) ([]Endpoint, error) {
	w, err := c.watch(service)
	if err != nil {
		return nil, err
	}
	select {
	case <-w.ready:
	case <-ctx.Done():
		if err := w.lastError(); err != nil {
			return nil, fmt.Errorf("discovery: %s: %w", service, err)
		}
		return nil, ctx.Err()
	}
	return w.current(), nil
}

// Close stops every watch and every loop keeping an instance registered, and releases
// connections. It does not deregister anything.
func (c *Consul) Close() {
	c.mu.Lock()
	c.cancel()
	c.mu.Unlock()
	c.wg.Wait()
	c.transport.CloseIdleConnections()
}

func (c *Consul) watch(service string) (*watcher, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx.Err() != nil {
		return nil, errors.New("discovery: consul resolver is closed")
	}
	if w, ok := c.watchers[service]; ok {
		return w, nil
	}
	w := &watcher{service: service, ready: make(chan struct{})}
	c.watchers[service] = w
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.run(w)
	}()
	return w, nil
}

// run keeps w up to date with blocking queries until the resolver is closed.
//
// An agent that answers again after queries failed, or whose index went backwards, may have
// lost its state (a restart): the instances register again within moments, since every
// registrar keeps its registration, but until they do the agent answers with none. So in that
// window an empty answer does not replace the last known instances, for the recovery grace at
// most; any answer with instances does.
func (c *Consul) run(w *watcher) {
	var (
		index      uint64
		recovering time.Time // when the agent came back, zero while it is trusted
	)
	backoff := minBackoff
	for c.ctx.Err() == nil {
		wait := c.opts.waitTime
		if !recovering.IsZero() {
			wait = max(c.opts.recoveryGrace-time.Since(recovering), time.Second)
		}
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: wait}).WithContext(c.ctx)
		entries, meta, err := c.client.Health().Service(w.service, "", true, q)
		if err != nil {
			if c.ctx.Err() != nil {
				return
			}
			w.fail(err)
			recovering = time.Time{}
			index = 0
			c.log.Warn("consul query failed; serving last known instances", "service", w.service, "error", err, "retry_in", backoff)
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, c.opts.maxBackoff)
			continue
		}
		if backoff > minBackoff || meta.LastIndex < index {
			// The agent is back after failures, or its index went backwards (after a restart
			// or a snapshot restore, say; the documented answer is to start over from zero).
			recovering = time.Now()
		}
		backoff = minBackoff
		if meta.LastIndex < index {
			index = 0
		} else {
			index = meta.LastIndex
		}
		eps := make([]Endpoint, 0, len(entries))
		for _, e := range entries {
			host := e.Service.Address
			if host == "" {
				host = e.Node.Address
			}
			eps = append(eps, Endpoint{ID: e.Service.ID, Scheme: "http", Host: net.JoinHostPort(host, strconv.Itoa(e.Service.Port))})
		}
		if !recovering.IsZero() {
			if len(eps) == 0 && len(w.current()) > 0 && time.Since(recovering) < c.opts.recoveryGrace {
				w.answered()
				continue
			}
			recovering = time.Time{}
		}
		w.update(eps)
	}
}

// watcher holds the last known endpoints of one service.
type watcher struct {
	service string
	ready   chan struct{}
	once    sync.Once

	mu  sync.RWMutex
	eps []Endpoint
	err error
}

func (w *watcher) update(eps []Endpoint) {
	w.mu.Lock()
	w.eps, w.err = eps, nil
	w.mu.Unlock()
	w.once.Do(func() { close(w.ready) })
}

// answered notes that the agent answers again, keeping the last known endpoints.
func (w *watcher) answered() {
	w.mu.Lock()
	w.err = nil
	w.mu.Unlock()
}

func (w *watcher) fail(err error) {
	w.mu.Lock()
	w.err = err
	w.mu.Unlock()
}

func (w *watcher) current() []Endpoint {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.eps
}

func (w *watcher) lastError() error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.err
}
