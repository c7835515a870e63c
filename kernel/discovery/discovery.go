// Package discovery registers service instances and finds the healthy instances of a service:
// through Consul (registration with an HTTP health check, blocking queries over the passing
// set) or through a static table for the embedded default.
package discovery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"strconv"
)

// Instance describes one process of a service for registration.
type Instance struct {
	// ID is unique among the service's instances.
	ID string
	// Service is the service name ("audit").
	Service string
	// Host and Port are where other processes reach the instance.
	Host string
	Port int
	// HealthURL is polled by Consul; it must answer 200 only while the instance can serve.
	HealthURL string
	// Tags and Meta are published with the instance.
	Tags []string
	Meta map[string]string
	// Ready reports whether the instance can take traffic now. A registrar that must register
	// the instance again while it runs (its agent lost the registration) publishes it in that
	// state, so an instance whose dependencies are down does not come back as passing. Nil
	// counts as ready.
	Ready func(context.Context) bool
}

// Addr returns host:port.
func (i Instance) Addr() string { return net.JoinHostPort(i.Host, strconv.Itoa(i.Port)) }

// NewInstanceID returns an id for an instance of service: the name and 64 random bits, so that
// restarts never collide with a crashed instance still awaiting its critical timeout.
func NewInstanceID(service string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return service + "-" + hex.EncodeToString(b[:])
}

// Endpoint is one reachable instance as a resolver reports it.
type Endpoint struct {
	// ID identifies the instance (its registration id, or its URL for static endpoints).
	ID string
	// Scheme is "http" (h2c or HTTP/1.1) or "https".
	Scheme string
	// Host is the instance's host:port.
	Host string
}

// URL returns the instance's base URL.
func (e Endpoint) URL() string { return e.Scheme + "://" + e.Host }

// Registrar announces this process to discovery and withdraws it on shutdown.
type Registrar interface {
	// Register announces inst and keeps it announced until Deregister: a registration that
	// discovery loses while the process runs is made again.
	Register(ctx context.Context, inst Instance) error
	// Deregister withdraws inst and stops keeping it announced.
	Deregister(ctx context.Context, inst Instance) error
}

// Resolver reports the endpoints of a service that can take traffic.
type Resolver interface {
	// Endpoints returns the current endpoints of service. The caller must not modify the
	// slice. An empty slice with a nil error means the service has no healthy instance.
	Endpoints(ctx context.Context, service string) ([]Endpoint, error)
}

// ErrUnknownService is returned by the static resolver for a service it has no entry for.
var ErrUnknownService = errors.New("discovery: unknown service")
