package gateway

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/basaltplatform/basalt/gen/go/openapi"
)

// OpenAPIPath is where the gateway serves the OpenAPI document of its REST routes.
const OpenAPIPath = "/openapi.json"

// DocsPath is where the gateway serves the REST reference page, when docs.dir is set.
const DocsPath = "/docs/"

// mountAPIDocs has the gateway answer GET /openapi.json with the document of its REST routes
// and, when docs.dir is set, serve the reference page's files under /docs/ (with the console's
// rules and headers). The page's files are those in the folder at start-up; each is read when
// asked for, so a rebuilt page is served without a restart.
func (g *Gateway) mountAPIDocs() error {
	g.local[OpenAPIPath] = newOpenAPIDocument(openapi.JSON)
	if g.cfg.Docs.Dir == "" {
		return nil
	}
	page := &console{dir: g.cfg.Docs.Dir, path: DocsPath}
	g.local[strings.TrimSuffix(DocsPath, "/")] = page
	g.local[DocsPath] = page
	err := fs.WalkDir(os.DirFS(g.cfg.Docs.Dir), ".", func(name string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case name != "." && strings.HasPrefix(d.Name(), "."):
			// Hidden files and folders are never served.
			if d.IsDir() {
				return fs.SkipDir
			}
		case d.Type().IsRegular():
			g.local[DocsPath+name] = page
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("gateway: docs.dir: %w", err)
	}
	return nil
}

// openAPIDocument serves the OpenAPI document (gen/go/openapi, embedded in the binary): it
// describes the contracts this build routes, so it cannot drift from them as a file deployed
// beside the binary could. It never changes while the gateway runs, so it is compressed once
// and carries a strong ETag per encoding; clients and caches may keep it for five minutes and
// then revalidate it.
type openAPIDocument struct {
	plain, gzipped []byte
	etag, gzipETag string
}

func newOpenAPIDocument(doc []byte) *openAPIDocument {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = zw.Write(doc)
	_ = zw.Close()
	sum := sha256.Sum256(doc)
	tag := hex.EncodeToString(sum[:16])
	return &openAPIDocument{plain: doc, gzipped: buf.Bytes(), etag: `"` + tag + `"`, gzipETag: `"` + tag + `-gzip"`}
}

func (d *openAPIDocument) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Add("Vary", "Accept-Encoding")
	body, etag := d.plain, d.etag
	if acceptsGzip(r.Header) {
		body, etag = d.gzipped, d.gzipETag
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("ETag", etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}
