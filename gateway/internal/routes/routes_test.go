package routes_test

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/basaltplatform/basalt/kernel/policy"
	"github.com/basaltplatform/basalt/kernel/testkit"

	"github.com/basaltplatform/basalt/gateway/internal/config"
	"github.com/basaltplatform/basalt/gateway/internal/ratelimit"
	"github.com/basaltplatform/basalt/gateway/internal/routes"
)

func build(t *testing.T, cfg config.Config) *routes.Table {
	t.Helper()
	table, err := routes.Build(protoregistry.GlobalFiles, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return table
}

func TestBuildFromTheContracts(t *testing.T) {
	t.Parallel()
	table := build(t, config.Defaults())
	public := ratelimit.Rate{PerSecond: 10, Burst: 20}
	user := ratelimit.Rate{PerSecond: 50, Burst: 100}
	tests := []struct {
		procedure string
		upstream  string
		audience  policy.Audience
		bucket    string
		limit     ratelimit.Rate
		timeout   time.Duration
	}{
		// Credentials are throttled harder, each in a bucket of its own.
		{"/basalt.auth.v1.AuthService/Login", "auth", policy.Public, "/basalt.auth.v1.AuthService/Login", ratelimit.Rate{PerSecond: 0.5, Burst: 5}, 30 * time.Second},
		{"/basalt.auth.v1.AuthService/Register", "auth", policy.Public, "/basalt.auth.v1.AuthService/Register", ratelimit.Rate{PerSecond: 0.1, Burst: 3}, 30 * time.Second},
		{"/basalt.auth.v1.AuthService/Refresh", "auth", policy.Public, "public", public, 30 * time.Second},
		{"/basalt.auth.v1.AuthService/Logout", "auth", policy.Public, "public", public, 30 * time.Second},
		{"/basalt.auth.v1.AuthService/ListSessions", "auth", policy.Authenticated, "user", user, 30 * time.Second},
		// Exports stream for as long as they need.
		{"/basalt.audit.v1.AuditService/ExportEvents", "audit", policy.Authenticated, "user", user, 0},
		{"/basalt.audit.v1.AuditService/ListEvents", "audit", policy.Authenticated, "user", user, 30 * time.Second},
		{"/basalt.identity.v1.IdentityService/GetUser", "identity", policy.Authenticated, "user", user, 30 * time.Second},
		{"/basalt.identity.v1.IdentityService/ChangePassword", "identity", policy.Authenticated, "user", user, 30 * time.Second},
		{"/basalt.authz.v1.AuthzService/Check", "authz", policy.Authenticated, "user", user, 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.procedure, func(t *testing.T) {
			t.Parallel()
			r, ok := table.Lookup(tt.procedure)
			if !ok {
				t.Fatal("not routed")
			}
			if r.Procedure != tt.procedure || r.Upstream != tt.upstream || r.Rule.Audience != tt.audience ||
				r.Bucket != tt.bucket || r.Limit != tt.limit || r.Timeout != tt.timeout {
				t.Fatalf("route = {%s %s %v bucket %s %+v timeout %v}, want {%s %s %v bucket %s %+v timeout %v}",
					r.Procedure, r.Upstream, r.Rule.Audience, r.Bucket, r.Limit, r.Timeout,
					tt.procedure, tt.upstream, tt.audience, tt.bucket, tt.limit, tt.timeout)
			}
		})
	}
}

func TestBuildLeavesOutInternalMethods(t *testing.T) {
	t.Parallel()
	table := build(t, config.Defaults())
	for _, proc := range []string{
		"/basalt.audit.v1.AuditService/Record",
		"/basalt.auth.v1.AuthService/CheckSession",
		"/basalt.auth.v1.AuthService/RevokeUserSessions",
		"/basalt.identity.v1.IdentityService/VerifyCredentials",
		"/basalt.identity.v1.IdentityService/RegisterUser",
		"/basalt.authz.v1.AuthzService/GrantRole",
		"/basalt.authz.v1.AuthzService/Sync",
	} {
		// Each exists in the contracts, so the test cannot pass by a typo.
		if _, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(strings.ReplaceAll(proc[1:], "/", "."))); err != nil {
			t.Fatalf("%s is not in the contracts: %v", proc, err)
		}
		if r, ok := table.Lookup(proc); ok {
			t.Fatalf("internal method %s is routed: %+v", proc, r)
		}
		for _, r := range table.Routes() {
			if r.Procedure == proc {
				t.Fatalf("internal method %s is in Routes()", proc)
			}
		}
	}
}

// TestEveryRouteMatchesItsContract walks every method of every basalt service: routed exactly
// when not internal, with the route's fields taken from the method.
func TestEveryRouteMatchesItsContract(t *testing.T) {
	t.Parallel()
	cfg := config.Defaults()
	table := build(t, cfg)
	routed := 0
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if !strings.HasPrefix(string(fd.Package()), "basalt.") {
			return true
		}
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				md := sd.Methods().Get(j)
				proc := "/" + string(sd.FullName()) + "/" + string(md.Name())
				rule := policy.FromDescriptor(md)
				r, ok := table.Lookup(proc)
				if ok != (rule.Audience != policy.Internal) {
					t.Errorf("%s (%v): routed = %v", proc, rule.Audience, ok)
					continue
				}
				if !ok {
					continue
				}
				routed++
				if r.Method.FullName() != md.FullName() || r.Rule.Procedure != proc || r.Rule.Audience != rule.Audience ||
					r.Rule.Permission != rule.Permission || r.Rule.Idempotent != rule.Idempotent {
					t.Errorf("%s: route %+v does not match its contract %+v", proc, r.Rule, rule)
				}
				if r.StreamingRequest != md.IsStreamingClient() {
					t.Errorf("%s: StreamingRequest = %v", proc, r.StreamingRequest)
				}
				if want := strings.Split(string(sd.FullName()), ".")[1]; r.Upstream != want {
					t.Errorf("%s: upstream %q, want %q", proc, r.Upstream, want)
				}
			}
		}
		return true
	})
	if routed < 20 || routed != len(table.Routes()) {
		t.Fatalf("%d methods routed, Routes() has %d", routed, len(table.Routes()))
	}
	for i, r := range table.Routes() {
		if r.Index != i {
			t.Fatalf("Routes()[%d].Index = %d", i, r.Index)
		}
		if got, ok := table.Lookup(r.Procedure); !ok || got != r {
			t.Fatalf("Lookup(%s) does not return Routes()[%d]", r.Procedure, i)
		}
	}
}

func TestServices(t *testing.T) {
	t.Parallel()
	table := build(t, config.Defaults())
	var names []string
	for _, sd := range table.Services() {
		names = append(names, string(sd.FullName()))
	}
	want := []string{"basalt.audit.v1.AuditService", "basalt.auth.v1.AuthService", "basalt.authz.v1.AuthzService", "basalt.identity.v1.IdentityService"}
	for _, w := range want {
		if !slices.Contains(names, w) {
			t.Fatalf("Services() = %v, missing %s", names, w)
		}
	}
	if !slices.IsSorted(names) {
		t.Fatalf("Services() = %v, not sorted", names)
	}
	for _, sd := range table.Services() {
		n := 0
		for _, r := range table.Routes() {
			if r.Method != nil && r.Method.Parent().FullName() == sd.FullName() {
				n++
			}
		}
		if n == 0 {
			t.Fatalf("service %s has no routed method", sd.FullName())
		}
	}
}

func TestRouteOverrides(t *testing.T) {
	t.Parallel()
	cfg := config.Defaults()
	five := config.Duration(5 * time.Second)
	cfg.Limits.Timeout = config.Duration(7 * time.Second)
	cfg.RateLimits.Public = config.Rate{Rate: 1, Burst: 2}
	cfg.RateLimits.Authenticated = config.Rate{Rate: 3, Burst: 4}
	cfg.Routes["/basalt.identity.v1.IdentityService/GetUser"] = config.Route{Timeout: &five, RateLimit: &config.Rate{Rate: 9, Burst: 9}}
	cfg.Routes["/basalt.auth.v1.AuthService/Refresh"] = config.Route{Timeout: &five}
	table := build(t, cfg)
	tests := []struct {
		procedure string
		bucket    string
		limit     ratelimit.Rate
		timeout   time.Duration
	}{
		{"/basalt.identity.v1.IdentityService/GetUser", "/basalt.identity.v1.IdentityService/GetUser", ratelimit.Rate{PerSecond: 9, Burst: 9}, 5 * time.Second},
		// A timeout alone keeps the class's bucket.
		{"/basalt.auth.v1.AuthService/Refresh", "public", ratelimit.Rate{PerSecond: 1, Burst: 2}, 5 * time.Second},
		{"/basalt.auth.v1.AuthService/Logout", "public", ratelimit.Rate{PerSecond: 1, Burst: 2}, 7 * time.Second},
		{"/basalt.identity.v1.IdentityService/ListUsers", "user", ratelimit.Rate{PerSecond: 3, Burst: 4}, 7 * time.Second},
		{"/basalt.audit.v1.AuditService/ExportEvents", "user", ratelimit.Rate{PerSecond: 3, Burst: 4}, 0},
	}
	for _, tt := range tests {
		r, ok := table.Lookup(tt.procedure)
		if !ok {
			t.Fatalf("%s not routed", tt.procedure)
		}
		if r.Bucket != tt.bucket || r.Limit != tt.limit || r.Timeout != tt.timeout {
			t.Fatalf("%s: bucket %s %+v timeout %v, want %s %+v %v", tt.procedure, r.Bucket, r.Limit, r.Timeout, tt.bucket, tt.limit, tt.timeout)
		}
	}
	// An endpoint of the gateway's own is limited as the public methods are, from their bucket.
	local := routes.Local(len(table.Routes()), "/.well-known/jwks.json", cfg)
	if local.Index != len(table.Routes()) || local.Bucket != "public" || local.Limit != (ratelimit.Rate{PerSecond: 1, Burst: 2}) || local.Rule.Audience != policy.Public {
		t.Fatalf("local route %+v, want the public bucket and limit", local)
	}
}

func TestRoutesConfigNamingNoRoutedMethodIsAnError(t *testing.T) {
	t.Parallel()
	for _, proc := range []string{
		"/basalt.auth.v1.AuthService/Nope",          // no such method
		"/basalt.nope.v1.NopeService/Get",           // no such service
		"/basalt.audit.v1.AuditService/Record",      // internal
		"/basalt.auth.v1.AuthService/CheckSession",  // internal
		"/svc.Name/Method",                          // a passthrough service's
		"basalt.auth.v1.AuthService/Login",          // not a path
		"/basalt.auth.v1.AuthService/Login/",        // not exactly a procedure
		"/BASALT.AUTH.V1.AUTHSERVICE/LOGIN",         // procedures are case-sensitive
		"/basalt.auth.v1.AuthService/Login?x=1",     // nor a URL
		"/basalt.identity.v1.IdentityService/Login", // the method of another service
	} {
		t.Run(proc, func(t *testing.T) {
			t.Parallel()
			cfg := config.Defaults()
			cfg.Passthrough = []config.Passthrough{{Service: "svc.Name", Upstream: "http://127.0.0.1:9"}}
			cfg.Routes[proc] = config.Route{RateLimit: &config.Rate{Rate: 1, Burst: 1}}
			_, err := routes.Build(protoregistry.GlobalFiles, cfg)
			if err == nil || !strings.Contains(err.Error(), "routes["+proc+"]") {
				t.Fatalf("err = %v, want one naming routes[%s]", err, proc)
			}
		})
	}
}

func TestPassthrough(t *testing.T) {
	t.Parallel()
	cfg := config.Defaults()
	cfg.Passthrough = []config.Passthrough{
		{Service: "svc.Name", Upstream: "http://127.0.0.1:9"},
		{Service: "connectrpc.conformance.v1.ConformanceService", Upstream: "http://127.0.0.1:10"},
	}
	table := build(t, cfg)
	contracts := 0
	for _, r := range table.Routes() {
		if r.Method != nil {
			contracts++
		}
	}
	tests := []struct {
		path     string
		upstream string // "" when not found
	}{
		{"/svc.Name/Method", "passthrough:svc.Name"},
		{"/svc.Name/Other", "passthrough:svc.Name"},
		{"/connectrpc.conformance.v1.ConformanceService/Unary", "passthrough:connectrpc.conformance.v1.ConformanceService"},
		{"/svc.Name/a/b", ""},
		{"/svc.Name/", ""},
		{"/svc.Name", ""},
		{"/svc.Name//", ""},
		{"/svc.Other/Method", ""},
		{"/svc.Name.Sub/Method", ""},
		{"/Name/Method", ""},
		{"/", ""},
		{"", ""},
		// The contracts stay routed as contracts, and internal methods stay hidden.
		{"/basalt.auth.v1.AuthService/Login", "auth"},
		{"/basalt.auth.v1.AuthService/CheckSession", ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			t.Parallel()
			r, ok := table.Lookup(tt.path)
			if ok != (tt.upstream != "") {
				t.Fatalf("Lookup(%q) found = %v, want %v", tt.path, ok, tt.upstream != "")
			}
			if !ok {
				return
			}
			if r.Upstream != tt.upstream {
				t.Fatalf("upstream %q, want %q", r.Upstream, tt.upstream)
			}
			if !strings.HasPrefix(tt.upstream, "passthrough:") {
				return
			}
			svc := strings.TrimPrefix(tt.upstream, "passthrough:")
			// A passthrough service is public, streamed, in the public bucket, and numbered after
			// the contracts.
			if r.Procedure != "/"+svc+"/" || r.Method != nil || r.Rule.Audience != policy.Public || !r.StreamingRequest ||
				r.Bucket != "public" || r.Timeout != 30*time.Second || r.Index < contracts || table.Routes()[r.Index] != r {
				t.Fatalf("passthrough route %+v", r)
			}
		})
	}
	// Without passthrough services, nothing outside the contracts is found.
	if _, ok := build(t, config.Defaults()).Lookup("/svc.Name/Method"); ok {
		t.Fatal("an unconfigured service was found")
	}
}

func TestIsProcedurePath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		path string
		want bool
	}{
		{"/basalt.auth.v1.AuthService/Login", true},
		{"/svc.Name/Method", true},
		{"/grpc.health.v1.Health/Check", true},
		{"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", true},
		{"/svc.Name/a/b", false},
		{"/svc.Name/", false},
		{"/svc.Name", false},
		{"/Service/Method", false}, // a service name has a package
		{"/v1/users/123", false},   // REST
		{"/v1/users", false},
		{"/healthz", false},
		{"/metrics", false},
		{"/", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			t.Parallel()
			if got := routes.IsProcedurePath(tt.path); got != tt.want {
				t.Fatalf("IsProcedurePath(%q) = %v, want %v", tt.path, got, tt.want)
			}
		})
	}
}

func TestUpstreamOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		service protoreflect.FullName
		want    string // "" for an error
	}{
		{"basalt.audit.v1.AuditService", "audit"},
		{"basalt.auth.v1.AuthService", "auth"},
		{"basalt.identity.v1.IdentityService", "identity"},
		{"basalt.blog.v1alpha1.PostService", "blog"},
		{"basalt.blog.v1.admin.PostAdminService", "blog"},
		{"basalt.audit.AuditService", ""},
		{"basalt.AuditService", ""},
		{"basalt..v1.AuditService", ""},
		{"acme.audit.v1.AuditService", ""},
		{"Basalt.audit.v1.AuditService", ""},
		{"AuditService", ""},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(string(tt.service), func(t *testing.T) {
			t.Parallel()
			got, err := routes.UpstreamOf(tt.service)
			if tt.want == "" {
				if err == nil || !strings.Contains(err.Error(), string(tt.service)) {
					t.Fatalf("UpstreamOf(%q) = %q, %v; want an error naming it", tt.service, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("UpstreamOf(%q) = %q, %v; want %q", tt.service, got, err, tt.want)
			}
		})
	}
}

// registry returns a registry of one file with one method in service svc of package pkg.
func registry(t *testing.T, pkg, svc string) *protoregistry.Files {
	t.Helper()
	fdp := &descriptorpb.FileDescriptorProto{
		Name:        proto.String(strings.ReplaceAll(pkg, ".", "/") + "/x.proto"),
		Package:     proto.String(pkg),
		Syntax:      proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{Name: proto.String("M")}},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name:   proto.String(svc),
			Method: []*descriptorpb.MethodDescriptorProto{{Name: proto.String("Do"), InputType: proto.String("." + pkg + ".M"), OutputType: proto.String("." + pkg + ".M")}},
		}},
	}
	files := &protoregistry.Files{}
	fd, err := protodesc.NewFile(fdp, files)
	if err != nil {
		t.Fatal(err)
	}
	if err := files.RegisterFile(fd); err != nil {
		t.Fatal(err)
	}
	return files
}

func TestBuildOtherRegistries(t *testing.T) {
	t.Parallel()
	cfg := config.Defaults()
	cfg.Routes = nil
	// A basalt service named outside the convention cannot be routed: an error, not a guess.
	if _, err := routes.Build(registry(t, "basalt.audit", "AuditService"), cfg); err == nil || !strings.Contains(err.Error(), "basalt.audit.AuditService") {
		t.Fatalf("Build over basalt.audit.AuditService: err = %v, want one naming it", err)
	}
	// A basalt method without an access option is internal (fail closed), so its service is
	// not routed at all; services of other packages are not the gateway's.
	for _, files := range []*protoregistry.Files{
		registry(t, "basalt.secret.v1", "SecretService"),
		registry(t, "acme.v1", "AcmeService"),
		registry(t, "basalt", "Service"), // not a basalt.* package
	} {
		table, err := routes.Build(files, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if len(table.Routes()) != 0 || len(table.Services()) != 0 {
			t.Fatalf("routes %v, services %v; want none", table.Routes(), table.Services())
		}
	}
	// The default routes name the contracts' methods, which an empty registry lacks.
	if _, err := routes.Build(&protoregistry.Files{}, config.Defaults()); err == nil {
		t.Fatal("routes naming missing methods were accepted")
	}
}

// TestEveryContractIsLinked reads the services declared in proto/ and checks that the gateway
// was built with each of them, which is what adding a service to routes/contracts.go does. A
// service missing there would be answered as "not found" for every call, with nothing else
// failing.
func TestEveryContractIsLinked(t *testing.T) {
	t.Parallel()
	root, err := testkit.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	declared := protoServices(t, filepath.Join(root, "proto", "basalt"))
	if len(declared) < 4 {
		t.Fatalf("found only %v in proto/basalt: the walk is broken", declared)
	}
	table := build(t, config.Defaults())
	routed := map[protoreflect.FullName]bool{}
	for _, sd := range table.Services() {
		routed[sd.FullName()] = true
	}
	for _, name := range declared {
		if routed[name] {
			continue
		}
		// A service whose methods are all internal has no route, but must still be linked.
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
		if err != nil {
			t.Errorf("service %s is declared in proto/ but not linked into the gateway: add its generated package to gateway/internal/routes/contracts.go", name)
			continue
		}
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if !ok {
			t.Errorf("%s is not a service in the linked contracts", name)
			continue
		}
		for i := range sd.Methods().Len() {
			if rule := policy.FromDescriptor(sd.Methods().Get(i)); rule.Audience != policy.Internal {
				t.Errorf("%s is %v but not routed", rule.Procedure, rule.Audience)
			}
		}
	}
	// And the other way round: the gateway routes no service that proto/ no longer declares.
	for name := range routed {
		if !slices.Contains(declared, name) {
			t.Errorf("the gateway routes %s, which proto/ does not declare: regenerate, or drop it from contracts.go", name)
		}
	}
}

var (
	packageLine = regexp.MustCompile(`^\s*package\s+([A-Za-z0-9_.]+)\s*;`)
	serviceLine = regexp.MustCompile(`^\s*service\s+([A-Za-z0-9_]+)\s*\{`)
)

// protoServices returns the full names of the services declared under dir, except the API
// options' package.
func protoServices(t *testing.T, dir string) []protoreflect.FullName {
	t.Helper()
	var out []protoreflect.FullName
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".proto") {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		var pkg string
		var services []string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if m := packageLine.FindStringSubmatch(sc.Text()); m != nil {
				pkg = m[1]
			}
			if m := serviceLine.FindStringSubmatch(sc.Text()); m != nil {
				services = append(services, m[1])
			}
		}
		if err := sc.Err(); err != nil {
			return err
		}
		if pkg == "" {
			t.Errorf("%s has no package line", path)
		}
		if pkg == "basalt.api.v1" || !strings.HasPrefix(pkg, "basalt.") {
			return nil
		}
		for _, s := range services {
			out = append(out, protoreflect.FullName(pkg+"."+s))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
