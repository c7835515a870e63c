package reflection

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"connectrpc.com/grpcreflect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	authv1 "github.com/basaltplatform/basalt/gen/go/basalt/auth/v1"
	"github.com/basaltplatform/basalt/kernel/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m, testkit.CheckLeaks()) }

// registry holds fds and everything they import, as a binary that links only them would.
func registry(t *testing.T, fds ...protoreflect.FileDescriptor) *protoregistry.Files {
	t.Helper()
	files := &protoregistry.Files{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if _, err := files.FindFileByPath(fd.Path()); err == nil {
			return
		}
		for i := range fd.Imports().Len() {
			add(fd.Imports().Get(i).FileDescriptor)
		}
		if err := files.RegisterFile(fd); err != nil {
			t.Fatal(err)
		}
	}
	for _, fd := range fds {
		add(fd)
	}
	return files
}

func TestFilesDropRejectedMethodsAndAlwaysDescribeErrorDetails(t *testing.T) {
	t.Parallel()
	contract := authv1.File_basalt_auth_v1_auth_service_proto
	tests := []struct {
		name  string
		files *protoregistry.Files
	}{
		// A gateway built with WithFiles, or one whose binary links no error details.
		{"contracts alone", registry(t, contract)},
		// The global registry of a binary that links errdetails already holds the files.
		{"contracts with the error details", registry(t, contract, errdetails.File_google_rpc_error_details_proto)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, err := Files(tt.files, func(md protoreflect.MethodDescriptor) bool { return md.Name() != "CheckSession" })
			if err != nil {
				t.Fatal(err)
			}
			svc, err := out.FindDescriptorByName("basalt.auth.v1.AuthService")
			if err != nil {
				t.Fatal(err)
			}
			methods := svc.(protoreflect.ServiceDescriptor).Methods()
			if methods.ByName("CheckSession") != nil || methods.ByName("Login") == nil {
				t.Errorf("methods kept: CheckSession %v, Login %v; want only Login", methods.ByName("CheckSession") != nil, methods.ByName("Login") != nil)
			}
			for _, name := range []protoreflect.FullName{"google.rpc.Status", "google.rpc.BadRequest", "google.rpc.RetryInfo"} {
				if _, err := out.FindDescriptorByName(name); err != nil {
					t.Errorf("%s: %v", name, err)
				}
			}
		})
	}
}

// TestReflectionAnswersForBadRequest asks as grpcurl does, over gRPC, for the file that defines
// a detail of an error, on handlers that describe one contract.
func TestReflectionAnswersForBadRequest(t *testing.T) {
	t.Parallel()
	files, err := Files(registry(t, authv1.File_basalt_auth_v1_auth_service_proto), func(protoreflect.MethodDescriptor) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for path, h := range Handlers(files, []string{"basalt.auth.v1.AuthService"}) {
		mux.Handle(path, h)
	}
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)

	stream := grpcreflect.NewClient(testkit.H2CClient(t), srv.URL).NewStream(context.Background())
	defer stream.Close()
	fds, err := stream.FileContainingSymbol("google.rpc.BadRequest")
	if err != nil {
		t.Fatal(err)
	}
	if len(fds) == 0 || fds[0].GetName() != "google/rpc/error_details.proto" {
		t.Fatalf("reflection answers %d files for google.rpc.BadRequest, want google/rpc/error_details.proto first", len(fds))
	}
	if _, err := stream.FileByFilename("google/rpc/status.proto"); err != nil {
		t.Fatalf("google/rpc/status.proto: %v", err)
	}
}
