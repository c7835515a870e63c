// Package policy reads each method's access rule from the contracts: the basalt.api.v1.access
// option compiled into the generated descriptors. The kernel's interceptors and the gateway
// all ask this package, so the contract is the only place a rule is written.
package policy

import (
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	apiv1 "github.com/basaltplatform/basalt/gen/go/basalt/api/v1"
)

// Audience says who may reach a method.
type Audience int

// The audiences, as options.proto defines them.
const (
	// Internal methods are for services of the platform only.
	Internal Audience = iota
	// Public methods need no credentials.
	Public
	// Authenticated methods need a user's access token or a service's credentials.
	Authenticated
)

// String names the audience.
func (a Audience) String() string {
	switch a {
	case Public:
		return "public"
	case Authenticated:
		return "authenticated"
	default:
		return "internal"
	}
}

// Rule is one method's access rule.
type Rule struct {
	// Procedure is the method's path, "/basalt.audit.v1.AuditService/Record".
	Procedure string
	// Audience says who may reach the method.
	Audience Audience
	// Permission, when set, must be held by the caller.
	Permission string
	// Callers, for internal methods, lists the services allowed to call; empty means any.
	Callers []string
	// Idempotent is true when the contract declares the method idempotent or free of side
	// effects, so that it may be retried.
	Idempotent bool
	// Declared is false for methods whose rule was derived rather than written (methods
	// outside the basalt packages, and basalt methods that forgot the option).
	Declared bool
}

// AllowsCaller reports whether the service may call an internal method with this rule.
func (r Rule) AllowsCaller(service string) bool {
	if len(r.Callers) == 0 {
		return true
	}
	for _, c := range r.Callers {
		if c == service {
			return true
		}
	}
	return false
}

var cache sync.Map // procedure -> Rule

// Lookup returns the rule of a procedure. A method of the platform's own packages (basalt.*)
// without an access option is internal, so forgetting the option fails closed; methods of
// other packages (gRPC health, reflection) are public. ok is false when no such method is
// registered.
func Lookup(procedure string) (Rule, bool) {
	if r, ok := cache.Load(procedure); ok {
		return r.(Rule), true
	}
	md, ok := method(procedure)
	if !ok {
		return Rule{}, false
	}
	r := FromDescriptor(md)
	cache.Store(procedure, r)
	return r, true
}

// For returns the rule a server applies to a procedure it serves: the contract's rule when the
// method is registered; internal for an unregistered procedure of the platform's own packages
// (fail closed); public for anything else a server mounts (gRPC health and reflection, whose
// descriptors connect registers under other names).
func For(procedure string) Rule {
	if r, ok := Lookup(procedure); ok {
		return r
	}
	if strings.HasPrefix(strings.TrimPrefix(procedure, "/"), "basalt.") {
		return Rule{Procedure: procedure, Audience: Internal}
	}
	return Rule{Procedure: procedure, Audience: Public}
}

// FromDescriptor derives the rule of a method descriptor.
func FromDescriptor(md protoreflect.MethodDescriptor) Rule {
	r := Rule{Procedure: "/" + string(md.Parent().FullName()) + "/" + string(md.Name())}
	opts, _ := md.Options().(*descriptorpb.MethodOptions)
	r.Idempotent = opts.GetIdempotencyLevel() != descriptorpb.MethodOptions_IDEMPOTENCY_UNKNOWN
	if opts == nil || !proto.HasExtension(opts, apiv1.E_Access) {
		if !strings.HasPrefix(string(md.FullName()), "basalt.") {
			r.Audience = Public
		}
		return r
	}
	r.Declared = true
	access, _ := proto.GetExtension(opts, apiv1.E_Access).(*apiv1.Access)
	switch access.GetAudience() {
	case apiv1.Audience_AUDIENCE_PUBLIC:
		r.Audience = Public
	case apiv1.Audience_AUDIENCE_AUTHENTICATED:
		r.Audience = Authenticated
	default:
		r.Audience = Internal
	}
	r.Permission = access.GetPermission()
	r.Callers = access.GetCallers()
	return r
}

// Methods returns the rules of every method of the named services.
func Methods(services ...string) []Rule {
	var out []Rule
	for _, name := range services {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			continue
		}
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if !ok {
			continue
		}
		for i := range sd.Methods().Len() {
			out = append(out, FromDescriptor(sd.Methods().Get(i)))
		}
	}
	return out
}

func method(procedure string) (protoreflect.MethodDescriptor, bool) {
	p := strings.TrimPrefix(procedure, "/")
	svc, name, ok := strings.Cut(p, "/")
	if !ok || svc == "" || name == "" {
		return nil, false
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return nil, false
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, false
	}
	md := sd.Methods().ByName(protoreflect.Name(name))
	return md, md != nil
}
