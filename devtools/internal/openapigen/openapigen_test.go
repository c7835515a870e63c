package openapigen_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/bufbuild/protocompile"
	"github.com/getkin/kin-openapi/openapi3"
	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	_ "google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/pluginpb"

	"github.com/basaltplatform/basalt/devtools/internal/openapigen"
)

// shop is a contract of two services with one method of each audience, an internal method with an HTTP binding
// (which the gateway would never route), field behaviors, message fields of every kind, and a
// PATCH route whose path variable names a field of the body.
const shop = `syntax = "proto3";

package basalt.shop.v1;

option go_package = "example.com/shop/v1;shopv1";

import "basalt/api/v1/options.proto";
import "google/api/annotations.proto";
import "google/api/field_behavior.proto";
import "google/protobuf/timestamp.proto";

// ShopService sells items.
service ShopService {
  // GetItem returns an item to anyone.
  rpc GetItem(GetItemRequest) returns (Item) {
    option (google.api.http) = {get: "/v1/items/{item_id}"};
    option (basalt.api.v1.access) = {audience: AUDIENCE_PUBLIC};
  }

  // UpdateItem changes an item.
  rpc UpdateItem(UpdateItemRequest) returns (Item) {
    option (google.api.http) = {
      patch: "/v1/items/{item.item_id}"
      body: "item"
    };
    option (basalt.api.v1.access) = {
      audience: AUDIENCE_AUTHENTICATED
      permission: "shop.items.update"
    };
  }

  // ListItems lists items to members.
  rpc ListItems(ListItemsRequest) returns (ListItemsResponse) {
    option (google.api.http) = {get: "/v1/items"};
    option (basalt.api.v1.access) = {audience: AUDIENCE_AUTHENTICATED};
  }

  // Restock is for other services only.
  rpc Restock(RestockRequest) returns (RestockResponse) {
    option (google.api.http) = {
      post: "/v1/items:restock"
      body: "*"
    };
    option (basalt.api.v1.access) = {audience: AUDIENCE_INTERNAL};
  }

  // Forgotten declares no access, so it is internal.
  rpc Forgotten(RestockRequest) returns (RestockResponse) {
    option (google.api.http) = {
      post: "/v1/forgotten"
      body: "*"
    };
  }
}

// CartService holds what a visitor means to buy.
service CartService {
  // GetCart returns the visitor's cart.
  rpc GetCart(GetItemRequest) returns (ListItemsResponse) {
    option (google.api.http) = {get: "/v1/cart"};
    option (basalt.api.v1.access) = {audience: AUDIENCE_PUBLIC};
  }
}

// Item is a thing for sale.
message Item {
  // item_id is assigned by the shop.
  string item_id = 1 [(google.api.field_behavior) = OUTPUT_ONLY];
  // name is the item's name.
  string name = 2 [(google.api.field_behavior) = REQUIRED];
  // create_time is when the item was added.
  google.protobuf.Timestamp create_time = 3 [(google.api.field_behavior) = OUTPUT_ONLY];
  Price price = 4;
  // history holds the earlier prices.
  repeated Price history = 5;
  oneof offer {
    Price sale = 6;
    string note = 7;
  }
}

// Price is an amount of money.
message Price {
  int64 cents = 1;
}

message GetItemRequest {
  string item_id = 1;
}

message UpdateItemRequest {
  Item item = 1;
}

message ListItemsRequest {
  int32 page_size = 1;
}

message ListItemsResponse {
  repeated Item items = 1;
}

message RestockRequest {
  string secret_supplier = 1;
}

message RestockResponse {}
`

func TestGenerate(t *testing.T) {
	t.Parallel()
	doc := generate(t, map[string]string{"basalt/shop/v1/shop.proto": shop})

	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi = %q, want 3.1.0", doc.OpenAPI)
	}
	var routes []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			routes = append(routes, method+" "+path)
		}
	}
	slices.Sort(routes)
	// The internal methods are gone; the PATCH route shares the path of GET /v1/items/{itemId}.
	want := []string{"GET /v1/cart", "GET /v1/items", "GET /v1/items/{itemId}", "PATCH /v1/items/{itemId}"}
	if !slices.Equal(routes, want) {
		t.Errorf("routes = %q, want %q", routes, want)
	}
	for _, name := range []string{"RestockRequest", "RestockResponse"} {
		if doc.Components.Schemas[name] != nil {
			t.Errorf("the schema %s of an internal method is in the document", name)
		}
	}

	get := doc.Paths.Value("/v1/items/{itemId}").Get
	patch := doc.Paths.Value("/v1/items/{itemId}").Patch
	list := doc.Paths.Value("/v1/items").Get
	if get.Description != "GetItem returns an item to anyone." || get.Summary != "GetItem" {
		t.Errorf("GetItem's summary and description = %q, %q; want the method's name and comment", get.Summary, get.Description)
	}
	if tag := doc.Tags.Get("ShopService"); tag == nil || tag.Description != "ShopService sells items." {
		t.Errorf("the service's tag = %+v, want its comment", tag)
	}

	// Security: none for the public method, the bearer scheme for the others.
	if get.Security == nil || len(*get.Security) != 0 {
		t.Errorf("GetItem's security = %v, want [] (public)", get.Security)
	}
	for name, op := range map[string]*openapi3.Operation{"UpdateItem": patch, "ListItems": list} {
		if op.Security == nil || len(*op.Security) != 1 || (*op.Security)[0][openapigen.SecurityScheme] == nil {
			t.Errorf("%s's security = %v, want bearerAuth", name, op.Security)
		}
	}
	scheme := doc.Components.SecuritySchemes[openapigen.SecurityScheme]
	if scheme == nil || scheme.Value.Type != "http" || scheme.Value.Scheme != "bearer" || scheme.Value.BearerFormat != "JWT" {
		t.Errorf("the security scheme = %+v, want HTTP bearer JWT", scheme)
	}
	if patch.Extensions["x-basalt-permission"] != "shop.items.update" || !strings.Contains(patch.Description, "`shop.items.update`") {
		t.Errorf("UpdateItem = %q %v, want its permission named", patch.Description, patch.Extensions)
	}
	if list.Extensions["x-basalt-permission"] != nil {
		t.Errorf("ListItems names a permission it does not need: %v", list.Extensions)
	}

	// The path variable binding item.item_id is the path's itemId.
	var pathParams []string
	for _, p := range patch.Parameters {
		if p.Value.In == openapi3.ParameterInPath {
			pathParams = append(pathParams, p.Value.Name)
		}
	}
	if !slices.Equal(pathParams, []string{"itemId"}) {
		t.Errorf("UpdateItem's path parameters = %q, want [itemId]", pathParams)
	}

	// Errors are google.rpc.Status.
	for name, op := range map[string]*openapi3.Operation{"GetItem": get, "UpdateItem": patch, "ListItems": list} {
		def := op.Responses.Default()
		if def == nil || def.Value.Content.Get("application/json").Schema.Ref != "#/components/schemas/"+openapigen.StatusSchema {
			t.Errorf("%s has no default response of Status", name)
		}
	}
	status := doc.Components.Schemas[openapigen.StatusSchema].Value
	for _, prop := range []string{"code", "message", "details"} {
		if status.Properties[prop] == nil {
			t.Errorf("Status has no %s", prop)
		}
	}

	// Field behaviors, and which fields may be null.
	item := doc.Components.Schemas["Item"].Value
	if !slices.Equal(item.Required, []string{"name"}) {
		t.Errorf("Item's required = %q, want [name]", item.Required)
	}
	for _, prop := range []string{"itemId", "createTime"} {
		if !item.Properties[prop].Value.ReadOnly {
			t.Errorf("Item's %s is not readOnly (OUTPUT_ONLY)", prop)
		}
	}
	if d := item.Properties["createTime"].Value.Description; d != "create_time is when the item was added." {
		t.Errorf("Item's createTime is described as %q, want its comment", d)
	}
	if d := item.Properties["name"].Value.Description; d != "name is the item's name." {
		t.Errorf("Item's name is described as %q, want its comment", d)
	}
	for prop, null := range map[string]bool{"createTime": true, "price": true, "history": false, "sale": false, "note": false, "name": false} {
		if got := item.Properties[prop].Value.VisitJSON(nil, openapi3.EnableJSONSchema2020()) == nil; got != null {
			t.Errorf("Item's %s admits null: %t, want %t", prop, got, null)
		}
	}
	// A nullable reference keeps its target.
	if err := item.Properties["price"].Value.VisitJSON(map[string]any{"cents": "12"}, openapi3.EnableJSONSchema2020()); err != nil {
		t.Errorf("Item's price refuses a price: %v", err)
	}
	if err := item.Properties["price"].Value.VisitJSON("12", openapi3.EnableJSONSchema2020()); err == nil {
		t.Error("Item's price accepts a string")
	}
}

func TestGenerateRefusesSchemaNameClashes(t *testing.T) {
	t.Parallel()
	service := func(pkg, msg string) string {
		return `syntax = "proto3";
package basalt.` + pkg + `.v1;
option go_package = "example.com/` + pkg + `";
import "basalt/api/v1/options.proto";
import "google/api/annotations.proto";
service ` + strings.ToUpper(pkg[:1]) + pkg[1:] + `Service {
  rpc Get(` + msg + `) returns (` + msg + `) {
    option (google.api.http) = {get: "/v1/` + pkg + `"};
    option (basalt.api.v1.access) = {audience: AUDIENCE_PUBLIC};
  }
}
message ` + msg + ` {}
`
	}
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"two packages' messages of one name", map[string]string{
			"basalt/a/v1/a.proto": service("a", "Thing"),
			"basalt/b/v1/b.proto": service("b", "Thing"),
		}, "would both be the schema Thing"},
		{"a message named like the error body", map[string]string{
			"basalt/a/v1/a.proto": service("a", "Status"),
		}, "which errors use"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := run(t, tt.files)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Generate = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// generate runs the plugin on files and returns the document it writes, which must load and
// validate.
func generate(t *testing.T, files map[string]string) *openapi3.T {
	t.Helper()
	res, err := run(t, files)
	if err != nil {
		t.Fatal(err)
	}
	var doc, embed string
	for _, f := range res.GetFile() {
		switch f.GetName() {
		case openapigen.DocumentFile:
			doc = f.GetContent()
		case openapigen.EmbedFile:
			embed = f.GetContent()
		default:
			t.Errorf("the plugin writes %s", f.GetName())
		}
	}
	if !strings.Contains(embed, "//go:embed openapi.json\nvar JSON []byte") {
		t.Errorf("the Go file does not embed the document:\n%s", embed)
	}
	loaded, err := openapi3.NewLoader().LoadFromData([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := loaded.Validate(context.Background()); err != nil {
		t.Fatalf("the document is not valid: %v", err)
	}
	return loaded
}

// run compiles files (with the contracts' options and the google/api annotations from the
// linked-in descriptors) and runs the plugin on them as buf would.
func run(t *testing.T, files map[string]string) (*pluginpb.CodeGeneratorResponse, error) {
	t.Helper()
	compiler := protocompile.Compiler{
		Resolver: protocompile.ResolverFunc(func(path string) (protocompile.SearchResult, error) {
			if src, ok := files[path]; ok {
				return protocompile.SearchResult{Source: strings.NewReader(src)}, nil
			}
			fd, err := protoregistry.GlobalFiles.FindFileByPath(path)
			if err != nil {
				return protocompile.SearchResult{}, err
			}
			return protocompile.SearchResult{Desc: fd}, nil
		}),
		SourceInfoMode: protocompile.SourceInfoStandard,
	}
	var names []string
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	compiled, err := compiler.Compile(context.Background(), names...)
	if err != nil {
		t.Fatal(err)
	}
	req := &pluginpb.CodeGeneratorRequest{FileToGenerate: names}
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		for i := range fd.Imports().Len() {
			add(fd.Imports().Get(i).FileDescriptor)
		}
		req.ProtoFile = append(req.ProtoFile, protodesc.ToFileDescriptorProto(fd))
	}
	for _, fd := range compiled {
		add(fd)
	}
	// Through the wire, as buf hands it over, so that options are read with the linked-in
	// extensions.
	data, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	req = &pluginpb.CodeGeneratorRequest{}
	if err := proto.Unmarshal(data, req); err != nil {
		t.Fatal(err)
	}
	plugin, err := protogen.Options{}.New(req)
	if err != nil {
		t.Fatal(err)
	}
	if err := openapigen.Generate(plugin); err != nil {
		return nil, err
	}
	return plugin.Response(), nil
}
