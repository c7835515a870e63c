// Package routes builds the gateway's route table from the contracts compiled into it, so
// there is no second table to keep in step with the protos: every method of a basalt service
// is routed to the service its package names (basalt.audit.v1 → "audit"), with the access rule
// its basalt.api.v1.access option declares. Internal methods are left out, so a client cannot
// tell them from methods that do not exist.
package routes

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/basaltplatform/basalt/kernel/policy"

	"github.com/basaltplatform/basalt/gateway/internal/config"
	"github.com/basaltplatform/basalt/gateway/internal/ratelimit"
)

// Route is how the gateway serves one procedure (or, for a passthrough service, all of its
// procedures).
type Route struct {
	// Index numbers the routes from 0, so per-route state can live in slices.
	Index int
	// Procedure is "/basalt.auth.v1.AuthService/Login", or "/svc.Name/" for a passthrough
	// service.
	Procedure string
	// Upstream is the discovery name of the service that serves the route.
	Upstream string
	// Rule is the access rule from the contract.
	Rule policy.Rule
	// Method is the contract's descriptor; nil for a passthrough service.
	Method protoreflect.MethodDescriptor
	// StreamingRequest is true when the client sends a stream, so the body cannot be buffered.
	StreamingRequest bool
	// Timeout bounds a call, retries included; 0 means no bound.
	Timeout time.Duration
	// Limit is the route's bucket size and rate; Bucket names the bucket family, so routes
	// without an override share their class's bucket.
	Limit  ratelimit.Rate
	Bucket string
}

// Table finds routes by request path.
type Table struct {
	routes      []*Route
	byPath      map[string]*Route
	passthrough map[string]*Route
	services    []protoreflect.ServiceDescriptor
}

// Build returns the routes of every basalt service in files (protoregistry.GlobalFiles in the
// gateway) and the passthrough services of cfg.
func Build(files *protoregistry.Files, cfg config.Config) (*Table, error) {
	t := &Table{byPath: map[string]*Route{}, passthrough: map[string]*Route{}}
	var services []protoreflect.ServiceDescriptor
	files.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if !strings.HasPrefix(string(fd.Package()), "basalt.") {
			return true
		}
		for i := range fd.Services().Len() {
			services = append(services, fd.Services().Get(i))
		}
		return true
	})
	slices.SortFunc(services, func(a, b protoreflect.ServiceDescriptor) int {
		return strings.Compare(string(a.FullName()), string(b.FullName()))
	})
	for _, sd := range services {
		upstream, err := UpstreamOf(sd.FullName())
		if err != nil {
			return nil, err
		}
		routed := false
		for i := range sd.Methods().Len() {
			md := sd.Methods().Get(i)
			rule := policy.FromDescriptor(md)
			if rule.Audience == policy.Internal {
				continue
			}
			r := &Route{
				Procedure:        rule.Procedure,
				Upstream:         upstream,
				Rule:             rule,
				Method:           md,
				StreamingRequest: md.IsStreamingClient(),
			}
			t.add(r, cfg)
			t.byPath[r.Procedure] = r
			routed = true
		}
		if routed {
			t.services = append(t.services, sd)
		}
	}
	for _, p := range cfg.Passthrough {
		r := &Route{
			Procedure:        "/" + p.Service + "/",
			Upstream:         PassthroughUpstream(p.Service),
			Rule:             policy.Rule{Procedure: "/" + p.Service + "/", Audience: policy.Public},
			StreamingRequest: true,
		}
		t.add(r, cfg)
		t.passthrough[p.Service] = r
	}
	for proc := range cfg.Routes {
		if _, ok := t.byPath[proc]; !ok {
			return nil, fmt.Errorf("routes[%s]: no such public or authenticated method in the contracts", proc)
		}
	}
	return t, nil
}

// add numbers r and applies the configured timeout and rate limit.
func (t *Table) add(r *Route, cfg config.Config) {
	r.Index = len(t.routes)
	r.Timeout = time.Duration(cfg.Limits.Timeout)
	if r.Rule.Audience == policy.Public {
		r.Limit, r.Bucket = rate(cfg.RateLimits.Public), "public"
	} else {
		r.Limit, r.Bucket = rate(cfg.RateLimits.Authenticated), "user"
	}
	if o, ok := cfg.Routes[r.Procedure]; ok {
		if o.Timeout != nil {
			r.Timeout = time.Duration(*o.Timeout)
		}
		if o.RateLimit != nil {
			r.Limit, r.Bucket = rate(*o.RateLimit), r.Procedure
		}
	}
	t.routes = append(t.routes, r)
}

func rate(r config.Rate) ratelimit.Rate { return ratelimit.Rate{PerSecond: r.Rate, Burst: r.Burst} }

// Local returns the route of an endpoint the gateway answers itself at path, numbered index
// (after the table's routes): public, and limited as the public methods are, from their bucket.
func Local(index int, path string, cfg config.Config) *Route {
	return &Route{
		Index:     index,
		Procedure: path,
		Rule:      policy.Rule{Procedure: path, Audience: policy.Public},
		Limit:     rate(cfg.RateLimits.Public),
		Bucket:    "public",
	}
}

// UpstreamOf returns the discovery name of the service that serves a basalt service: the
// second element of its package, "basalt.audit.v1.AuditService" → "audit".
func UpstreamOf(service protoreflect.FullName) (string, error) {
	parts := strings.Split(string(service), ".")
	if len(parts) < 4 || parts[0] != "basalt" || parts[1] == "" {
		return "", fmt.Errorf("routes: %s is not named basalt.<service>.<version>.<Name>", service)
	}
	return parts[1], nil
}

// PassthroughUpstream is the upstream name of a passthrough service.
func PassthroughUpstream(service string) string { return "passthrough:" + service }

// Lookup returns the route of a request path, and false when the path is not a routed
// procedure.
func (t *Table) Lookup(path string) (*Route, bool) {
	if r, ok := t.byPath[path]; ok {
		return r, true
	}
	if len(t.passthrough) == 0 {
		return nil, false
	}
	svc, method, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	if !ok || method == "" || strings.Contains(method, "/") {
		return nil, false
	}
	r, ok := t.passthrough[svc]
	return r, ok
}

// Routes returns every route, in index order.
func (t *Table) Routes() []*Route { return t.routes }

// Services returns the basalt services with at least one routed method.
func (t *Table) Services() []protoreflect.ServiceDescriptor { return t.services }

// IsProcedurePath reports whether path has the shape of an RPC procedure,
// "/package.Service/Method", so that an unknown one is answered as an RPC error rather than a
// plain 404.
func IsProcedurePath(path string) bool {
	svc, method, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	return ok && strings.Contains(svc, ".") && method != "" && !strings.Contains(method, "/")
}
