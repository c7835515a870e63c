package gateway

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/basaltplatform/basalt/gen/go/openapi"
	"github.com/basaltplatform/basalt/kernel/policy"

	"github.com/basaltplatform/basalt/gateway/internal/config"
	"github.com/basaltplatform/basalt/gateway/internal/routes"
)

// loadDocument loads and validates the embedded OpenAPI document with kin-openapi.
func loadDocument(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(openapi.JSON)
	if err != nil {
		t.Fatalf("the OpenAPI document does not load: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the OpenAPI document is not valid: %v", err)
	}
	return doc
}

func TestOpenAPIDocumentIsValidOpenAPI31(t *testing.T) {
	t.Parallel()
	doc := loadDocument(t)
	if !doc.IsOpenAPI31OrLater() || doc.IsOpenAPI32OrLater() {
		t.Errorf("openapi = %q, want 3.1", doc.OpenAPI)
	}
	scheme := doc.Components.SecuritySchemes["bearerAuth"]
	if scheme == nil || scheme.Value.Type != "http" || scheme.Value.Scheme != "bearer" || scheme.Value.BearerFormat != "JWT" {
		t.Errorf("the bearerAuth scheme = %+v, want HTTP bearer JWT", scheme)
	}
	status := doc.Components.Schemas["Status"]
	if status == nil {
		t.Fatal("the document has no Status schema for errors")
	}
	for _, prop := range []string{"code", "message", "details"} {
		if status.Value.Properties[prop] == nil {
			t.Errorf("the Status schema has no %s", prop)
		}
	}
}

// pathVariables matches the variables of a path template, in the contracts' form
// ({post.post_id}) and OpenAPI's ({postId}).
var pathVariables = regexp.MustCompile(`\{[^}]*\}`)

// TestOpenAPIDocumentDescribesEveryRESTRoute checks the document against the route table the
// gateway builds from the same contracts: each REST binding of a routed method is an operation
// with the same method and path (its variables may be named differently), with the security
// the method's access rule asks for, and the document has no other operation. Internal methods
// are not routed, so they must not appear either.
func TestOpenAPIDocumentDescribesEveryRESTRoute(t *testing.T) {
	t.Parallel()
	doc := loadDocument(t)
	table, err := routes.Build(protoregistry.GlobalFiles, config.Defaults())
	if err != nil {
		t.Fatal(err)
	}
	type operation struct {
		route string
		op    *openapi3.Operation
	}
	documented := map[string]operation{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			documented[method+" "+pathVariables.ReplaceAllString(path, "{}")] = operation{method + " " + path, op}
		}
	}
	served := map[string]bool{}
	for _, r := range table.Routes() {
		if r.Method == nil {
			continue
		}
		rule, _ := proto.GetExtension(r.Method.Options(), annotations.E_Http).(*annotations.HttpRule)
		if rule == nil {
			continue
		}
		for _, binding := range append([]*annotations.HttpRule{rule}, rule.GetAdditionalBindings()...) {
			method, path := httpBinding(binding)
			key := method + " " + pathVariables.ReplaceAllString(path, "{}")
			served[key] = true
			got, ok := documented[key]
			if !ok {
				t.Errorf("%s (%s %s) is not in the OpenAPI document", r.Procedure, method, path)
				continue
			}
			sec := got.op.Security
			switch {
			case sec == nil:
				t.Errorf("%s: no security requirement, want one from its access rule", got.route)
			case r.Rule.Audience == policy.Public && len(*sec) != 0:
				t.Errorf("%s is public but the document asks for %v", got.route, *sec)
			case r.Rule.Audience != policy.Public && (len(*sec) != 1 || len((*sec)[0]) != 1 || (*sec)[0]["bearerAuth"] == nil):
				t.Errorf("%s needs a token but the document asks for %v, want bearerAuth", got.route, *sec)
			}
		}
	}
	for key, got := range documented {
		if !served[key] {
			t.Errorf("the document describes %s (%s), which the gateway does not route", got.route, got.op.OperationID)
		}
	}
	if len(served) == 0 {
		t.Fatal("the route table has no REST route")
	}
}

// httpBinding returns the HTTP method and path template of a google.api.http binding.
func httpBinding(b *annotations.HttpRule) (string, string) {
	switch p := b.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		return http.MethodGet, p.Get
	case *annotations.HttpRule_Post:
		return http.MethodPost, p.Post
	case *annotations.HttpRule_Put:
		return http.MethodPut, p.Put
	case *annotations.HttpRule_Patch:
		return http.MethodPatch, p.Patch
	case *annotations.HttpRule_Delete:
		return http.MethodDelete, p.Delete
	case *annotations.HttpRule_Custom:
		return p.Custom.GetKind(), p.Custom.GetPath()
	}
	return "", ""
}

func TestServesTheOpenAPIDocument(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, nil)

	// (Go's transport asks for gzip unless told otherwise.)
	resp, body := f.do(t, http.MethodGet, OpenAPIPath, "", map[string]string{"Accept-Encoding": "identity"})
	if resp.StatusCode != http.StatusOK || body != string(openapi.JSON) {
		t.Fatalf("GET /openapi.json = %d, %d bytes; want the document", resp.StatusCode, len(body))
	}
	etag := resp.Header.Get("ETag")
	for k, want := range map[string]string{
		"Content-Type":           "application/json",
		"Cache-Control":          "public, max-age=300",
		"X-Content-Type-Options": "nosniff",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if vary := resp.Header.Values("Vary"); !slices.Contains(vary, "Accept-Encoding") {
		t.Errorf("Vary = %q, want Accept-Encoding among them", vary)
	}
	if !strings.HasPrefix(etag, `"`) {
		t.Errorf("ETag = %q, want a strong one", etag)
	}

	// Compressed for clients that accept it, under its own ETag.
	resp, body = f.do(t, http.MethodGet, OpenAPIPath, "", map[string]string{"Accept-Encoding": "gzip"})
	if resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("ETag") == etag {
		t.Fatalf("gzip: Content-Encoding %q, ETag %q (plain %q)", resp.Header.Get("Content-Encoding"), resp.Header.Get("ETag"), etag)
	}
	zr, err := gzip.NewReader(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if inflated, err := io.ReadAll(zr); err != nil || !bytes.Equal(inflated, openapi.JSON) {
		t.Fatalf("the gzipped document inflates to %d bytes, %v; want the document", len(inflated), err)
	}
	if len(body) >= len(openapi.JSON)/3 {
		t.Errorf("gzipped, the document is %d of %d bytes", len(body), len(openapi.JSON))
	}

	// Revalidation, HEAD and other methods.
	if resp, body := f.do(t, http.MethodGet, OpenAPIPath, "", map[string]string{"If-None-Match": etag, "Accept-Encoding": "identity"}); resp.StatusCode != http.StatusNotModified || body != "" {
		t.Errorf("GET with If-None-Match = %d %q, want 304", resp.StatusCode, body)
	}
	if resp, body := f.do(t, http.MethodHead, OpenAPIPath, "", map[string]string{"Accept-Encoding": "identity"}); resp.StatusCode != http.StatusOK || body != "" || resp.Header.Get("ETag") != etag {
		t.Errorf("HEAD = %d %q %q, want 200 without a body", resp.StatusCode, body, resp.Header.Get("ETag"))
	}
	if resp, _ := f.do(t, http.MethodPost, OpenAPIPath, "{}", map[string]string{"Content-Type": "application/json"}); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST = %d, Allow %q; want 405 allowing GET, HEAD", resp.StatusCode, resp.Header.Get("Allow"))
	}
	// Public: no token needed, and no rate-limit bucket spent.
	if resp, _ := f.do(t, http.MethodGet, OpenAPIPath, "", map[string]string{"Authorization": "Bearer not-a-token"}); resp.StatusCode != http.StatusOK {
		t.Errorf("GET with a bad token = %d, want 200", resp.StatusCode)
	}
}

const docsIndex = "<!doctype html><title>Basalt API reference</title>"

// docsDir lays out a built reference page the way apidocs/build.mjs does, beside files it must
// never serve.
func docsDir(t *testing.T) string {
	t.Helper()
	parent := t.TempDir()
	dir := filepath.Join(parent, "dist")
	files := map[string]string{
		"dist/index.html":    docsIndex,
		"dist/docs.js":       "Scalar.createApiReference('#app', {url: '/openapi.json'})",
		"dist/scalar.js":     strings.Repeat("/* Scalar */\n", 200),
		"dist/scalar.css":    "body{margin:0}",
		"dist/.env":          "SECRET=hidden-file",
		"dist/.git/config":   "SECRET=hidden-folder",
		"dist/nested/a.json": `{"nested":true}`,
		"secret.txt":         "SECRET=outside",
	}
	for name, body := range files {
		p := filepath.Join(parent, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(parent, "secret.txt"), filepath.Join(dir, "link.txt")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestServesTheReferencePage(t *testing.T) {
	t.Parallel()
	dir := docsDir(t)
	f := newFixture(t, 1, func(c *config.Config) { c.Docs.Dir = dir })

	tests := []struct {
		path, ctype, want string
	}{
		{"/docs/", "text/html; charset=utf-8", docsIndex},
		{"/docs/index.html", "text/html; charset=utf-8", docsIndex},
		{"/docs/docs.js", "text/javascript; charset=utf-8", "Scalar.createApiReference('#app', {url: '/openapi.json'})"},
		{"/docs/scalar.css", "text/css; charset=utf-8", "body{margin:0}"},
		{"/docs/nested/a.json", "application/json", `{"nested":true}`},
	}
	for _, tt := range tests {
		resp, body := f.do(t, http.MethodGet, tt.path, "", nil)
		if resp.StatusCode != http.StatusOK || body != tt.want || resp.Header.Get("Content-Type") != tt.ctype {
			t.Errorf("GET %s = %d %q %q; want %q as %s", tt.path, resp.StatusCode, resp.Header.Get("Content-Type"), body, tt.want, tt.ctype)
			continue
		}
		// The console's policy: the page, its scripts and styles and the document all come from
		// the gateway's own origin.
		for k, v := range consoleHeaders {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("GET %s: %s = %q, want %q", tt.path, k, got, v)
			}
		}
		if resp.Header.Get("Cache-Control") != "no-cache" || resp.Header.Get("Last-Modified") == "" {
			t.Errorf("GET %s: Cache-Control %q, Last-Modified %q; want revalidation", tt.path, resp.Header.Get("Cache-Control"), resp.Header.Get("Last-Modified"))
		}
	}

	// The script is large enough to go out gzipped.
	resp, _ := f.do(t, http.MethodGet, "/docs/scalar.js", "", map[string]string{"Accept-Encoding": "gzip"})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("GET /docs/scalar.js with gzip = %d, Content-Encoding %q", resp.StatusCode, resp.Header.Get("Content-Encoding"))
	}

	resp, _ = rawGet(t, f.gw.Addr().String(), http.MethodGet, "/docs?x=1")
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/docs/?x=1" {
		t.Errorf("GET /docs = %d to %q, want a redirect to /docs/", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := f.do(t, http.MethodPost, "/docs/", "", nil); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /docs/ = %d, want 405", resp.StatusCode)
	}
	for _, path := range []string{"/docs/.env", "/docs/.git/config", "/docs/link.txt", "/docs/missing.js", "/docs/../secret.txt", "/docs/%2e%2e/secret.txt"} {
		resp, body := rawGet(t, f.gw.Addr().String(), http.MethodGet, path)
		if resp.StatusCode != http.StatusNotFound || strings.Contains(body, "SECRET") {
			t.Errorf("GET %s = %d %q, want 404", path, resp.StatusCode, body)
		}
	}
}

func TestReferencePageIsOffByDefault(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, nil)
	for _, path := range []string{"/docs/", "/docs/index.html", "/docs"} {
		if resp, body := f.do(t, http.MethodGet, path, "", nil); resp.StatusCode != http.StatusNotFound || strings.Contains(body, "<title>") {
			t.Errorf("GET %s without docs.dir = %d %q, want the gateway's 404", path, resp.StatusCode, body)
		}
	}
	// The document does not need the page.
	if resp, _ := f.do(t, http.MethodGet, OpenAPIPath, "", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /openapi.json without docs.dir = %d, want 200", resp.StatusCode)
	}
}
