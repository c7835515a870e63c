// Package reflection serves gRPC server reflection at the gateway, so that buf curl and grpcurl
// can call the platform through it without local protos. It describes only what the gateway
// routes: the basalt services with their internal methods removed from the descriptors.
package reflection

import (
	"fmt"
	"net/http"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// Files returns a copy of files in which every service method that keep rejects is removed.
func Files(files *protoregistry.Files, keep func(protoreflect.MethodDescriptor) bool) (*protoregistry.Files, error) {
	set := &descriptorpb.FileDescriptorSet{}
	files.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
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
