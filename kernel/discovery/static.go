package discovery

import (
	"context"
	"fmt"
	"net/url"
)

// Static resolves services from a fixed table; the embedded default uses it, where every
// process is started by one launcher that knows every address.
type Static struct {
	endpoints map[string][]Endpoint
}

var _ Resolver = (*Static)(nil)

// NewStatic returns a resolver over table, which maps service names to base URLs
// ("http://127.0.0.1:7101").
func NewStatic(table map[string][]string) (*Static, error) {
	s := &Static{endpoints: make(map[string][]Endpoint, len(table))}
	for name, urls := range table {
		for _, raw := range urls {
			u, err := url.Parse(raw)
			if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
				return nil, fmt.Errorf("discovery: service %q: %q is not an http(s) base URL", name, raw)
			}
			s.endpoints[name] = append(s.endpoints[name], Endpoint{ID: raw, Scheme: u.Scheme, Host: u.Host})
		}
	}
	return s, nil
}

// Endpoints returns the table's entry for service.
func (s *Static) Endpoints(_ context.Context, service string) ([]Endpoint, error) {
	eps, ok := s.endpoints[service]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownService, service)
	}
	return eps, nil
}

// NopRegistrar is the registrar of static discovery: the launcher already knows every address.
type NopRegistrar struct{}

var _ Registrar = NopRegistrar{}

// Register does nothing.
func (NopRegistrar) Register(context.Context, Instance) error { return nil }

// Deregister does nothing.
func (NopRegistrar) Deregister(context.Context, Instance) error { return nil }
