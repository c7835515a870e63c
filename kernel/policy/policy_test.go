package policy_test

import (
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	_ "github.com/basaltplatform/basalt/gen/go/basalt/audit/v1"
	_ "github.com/basaltplatform/basalt/gen/go/basalt/auth/v1"
	_ "github.com/basaltplatform/basalt/gen/go/basalt/authz/v1"
	_ "github.com/basaltplatform/basalt/gen/go/basalt/identity/v1"
	"github.com/basaltplatform/basalt/kernel/policy"
)

func TestRulesComeFromTheContracts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		procedure  string
		audience   policy.Audience
		permission string
		callers    []string
		idempotent bool
	}{
		{"/basalt.audit.v1.AuditService/Record", policy.Internal, "", nil, true},
		{"/basalt.auth.v1.AuthService/Login", policy.Public, "", nil, false},
		{"/basalt.identity.v1.IdentityService/CreateUser", policy.Authenticated, "identity.users.create", nil, false},
		{"/basalt.identity.v1.IdentityService/GetUser", policy.Authenticated, "", nil, true},
		{"/basalt.identity.v1.IdentityService/VerifyCredentials", policy.Internal, "", []string{"auth"}, false},
		{"/basalt.authz.v1.AuthzService/GrantRole", policy.Internal, "", []string{"auth", "identity"}, true},
	}
	for _, tt := range tests {
		r, ok := policy.Lookup(tt.procedure)
		if !ok || !r.Declared || r.Audience != tt.audience || r.Permission != tt.permission || strings.Join(r.Callers, ",") != strings.Join(tt.callers, ",") || r.Idempotent != tt.idempotent {
			t.Errorf("%s: %+v, want %v %q %v idempotent=%v", tt.procedure, r, tt.audience, tt.permission, tt.callers, tt.idempotent)
		}
	}
	for _, p := range []string{"/grpc.health.v1.Health/Check", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"} {
		if r := policy.For(p); r.Audience != policy.Public {
			t.Errorf("%s must be public, got %v", p, r.Audience)
		}
	}
	if r := policy.For("/basalt.audit.v1.AuditService/Nope"); r.Audience != policy.Internal {
		t.Errorf("an unknown basalt method must be internal, got %v", r.Audience)
	}
	for _, p := range []string{"/basalt.audit.v1.AuditService/Nope", "/nope", "", "/a/b/c"} {
		if _, ok := policy.Lookup(p); ok {
			t.Errorf("%q resolved to a method", p)
		}
	}
	r, _ := policy.Lookup("/basalt.identity.v1.IdentityService/VerifyCredentials")
	if !r.AllowsCaller("auth") || r.AllowsCaller("blog") {
		t.Error("callers must restrict internal methods")
	}
}

func TestAMethodWithoutTheOptionIsInternal(t *testing.T) {
	t.Parallel()
	fdp := &descriptorpb.FileDescriptorProto{
		Name:        proto.String("basalt/forgetful/v1/forgetful.proto"),
		Package:     proto.String("basalt.forgetful.v1"),
		Syntax:      proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{Name: proto.String("Empty")}},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: proto.String("ForgetfulService"),
			Method: []*descriptorpb.MethodDescriptorProto{{
				Name: proto.String("Oops"), InputType: proto.String(".basalt.forgetful.v1.Empty"), OutputType: proto.String(".basalt.forgetful.v1.Empty"),
			}},
		}},
	}
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	r := policy.FromDescriptor(fd.Services().Get(0).Methods().Get(0))
	if r.Audience != policy.Internal || r.Declared {
		t.Fatalf("a basalt method without the option = %+v, want internal and undeclared", r)
	}
}

// TestEveryContractMethodDeclaresItsPolicy guards the contracts: every method of a basalt
// package declares its access option; public and authenticated unary methods have a REST
// route, streaming ones none (REST transcoding covers unary methods), and internal ones never
// do, so the gateway cannot expose them by accident.
func TestEveryContractMethodDeclaresItsPolicy(t *testing.T) {
	t.Parallel()
	methods := 0
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if !strings.HasPrefix(string(fd.Package()), "basalt.") {
			return true
		}
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				md := sd.Methods().Get(j)
				methods++
				r := policy.FromDescriptor(md)
				if !r.Declared {
					t.Errorf("%s has no basalt.api.v1.access option", md.FullName())
				}
				hasRoute := proto.HasExtension(md.Options(), annotations.E_Http)
				if r.Audience == policy.Internal && hasRoute {
					t.Errorf("%s is internal but has a google.api.http route", md.FullName())
				}
				streaming := md.IsStreamingClient() || md.IsStreamingServer()
				if r.Audience != policy.Internal && !streaming && !hasRoute {
					t.Errorf("%s is %s but has no google.api.http route", md.FullName(), r.Audience)
				}
				if streaming && hasRoute {
					t.Errorf("%s streams but has a google.api.http route, which REST transcoding cannot serve", md.FullName())
				}
				if len(r.Callers) > 0 && r.Audience != policy.Internal {
					t.Errorf("%s names callers but is not internal", md.FullName())
				}
				if r.Permission != "" && strings.Count(r.Permission, ".") != 2 {
					t.Errorf("%s: permission %q is not <service>.<resource>.<verb>", md.FullName(), r.Permission)
				}
			}
		}
		return true
	})
	if methods < 20 {
		t.Fatalf("only %d contract methods were found; are the generated packages imported?", methods)
	}
}
