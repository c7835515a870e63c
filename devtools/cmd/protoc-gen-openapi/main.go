// Command protoc-gen-openapi is the buf plugin (buf.gen.yaml) that writes gen/go/openapi: the
// OpenAPI 3.1 document of the gateway's REST routes and the Go package embedding it.
package main

import (
	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/types/pluginpb"

	"github.com/basaltplatform/basalt/devtools/internal/openapigen"
)

func main() {
	protogen.Options{}.Run(func(plugin *protogen.Plugin) error {
		plugin.SupportedFeatures = uint64(pluginpb.CodeGeneratorResponse_FEATURE_PROTO3_OPTIONAL)
		return openapigen.Generate(plugin)
	})
}
