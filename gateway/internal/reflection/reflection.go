// Package reflection serves gRPC server reflection at the gateway, so that buf curl and grpcurl
// can call the platform through it without local protos. It describes only what the gateway
// routes: the basalt services with their internal methods removed from the descriptors, and the
// files of the messages errors carry (google.rpc.Status and its details), so that grpcurl
// decodes an error's BadRequest or RetryInfo too.
package reflection

import (
	"fmt"
	"net/http"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// errorFiles are the files of google.rpc.Status and of the error details the platform sends
// (errdetails: BadRequest, RetryInfo and the rest). No contract imports them, so files holds
// them only when something linked into the binary happens to; Files adds them in any case.
var errorFiles = []protoreflect.FileDescriptor{
	statuspb.File_google_rpc_status_proto,
	errdetails.File_google_rpc_error_details_proto,
}

// Files returns a copy of files in which every service method that keep rejects is removed,
// with the error files (and what they import) added when files lacks them.
func Files(files *protoregistry.Files, keep func(protoreflect.MethodDescriptor) bool) (*protoregistry.Files, error) {
	set := &descriptorpb.FileDescriptorSet{}
	have := map[string]bool{}
	files.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		have[fd.Path()] = true
		fdp := protodesc.ToFileDescriptorProto(fd)
		for i, sd := range fdp.GetService() {
			svc := fd.Services().Get(i)
			kept := sd.GetMethod()[:0]
			for j, md := range sd.GetMethod() {
				if keep(svc.Methods().Get(j)) {
					kept = append(kept, md)
				}
			}
			sd.Method = kept
		}
		set.File = append(set.File, fdp)
		return true
	})
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if have[fd.Path()] {
			return
		}
		have[fd.Path()] = true
		for i := range fd.Imports().Len() {
			add(fd.Imports().Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	for _, fd := range errorFiles {
		add(fd)
	}
	out, err := protodesc.NewFiles(set)
	if err != nil {
		return nil, fmt.Errorf("reflection: %w", err)
	}
	return out, nil
}

// Handlers returns the v1 and v1alpha reflection handlers over files for the named services.
func Handlers(files *protoregistry.Files, services []string, opts ...connect.HandlerOption) map[string]http.Handler {
	reflector := grpcreflect.NewReflector(
		grpcreflect.NamerFunc(func() []string { return services }),
		grpcreflect.WithDescriptorResolver(files),
	)
	out := map[string]http.Handler{}
	path, h := grpcreflect.NewHandlerV1(reflector, opts...)
	out[path] = h
	path, h = grpcreflect.NewHandlerV1Alpha(reflector, opts...)
	out[path] = h
	return out
}
