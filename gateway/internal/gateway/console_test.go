package gateway

import (
	"bufio"
	"compress/gzip"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/basaltplatform/basalt/gateway/internal/config"
)

const consoleIndex = "<!doctype html><title>Basalt console</title>"

// consoleDir lays out a built console the way Vite does, beside a file it must never serve.
func consoleDir(t *testing.T) string {
	t.Helper()
	parent := t.TempDir()
	dir := filepath.Join(parent, "dist")
	files := map[string]string{
		"dist/index.html":                consoleIndex,
		"dist/favicon.svg":               "<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
		"dist/assets/index-Bx1a2b3c.js":  "console.log('console')",
		"dist/assets/index-Ck4d5e6f.css": "body{margin:0}",
		"dist/assets/logo.webp":          "RIFF",
		"dist/nested/page.txt":           "nested",
		"dist/.env":                      "SECRET=hidden-file",
		"secret.txt":                     "SECRET=outside",
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
	// Links that leave the folder are refused, however they are reached.
	if err := os.Symlink(filepath.Join(parent, "secret.txt"), filepath.Join(dir, "link.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(parent, filepath.Join(dir, "up")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// rawGet sends target exactly as given (a client library would clean dot segments first).
func rawGet(t *testing.T, addr, method, target string) (*http.Response, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, method+" "+target+" HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestConsoleServesTheBuiltFiles(t *testing.T) {
	t.Parallel()
	dir := consoleDir(t)
	f := newFixture(t, 1, func(c *config.Config) { c.Console.Dir = dir })

	tests := []struct {
		path, ctype, cache, body string
	}{
		{"/console/", "text/html; charset=utf-8", "no-cache", consoleIndex},
		{"/console/index.html", "text/html; charset=utf-8", "no-cache", consoleIndex},
		{"/console/favicon.svg", "image/svg+xml", "no-cache", "<svg"},
		{"/console/assets/index-Bx1a2b3c.js", "text/javascript; charset=utf-8", "public, max-age=31536000, immutable", "console.log"},
		{"/console/assets/index-Ck4d5e6f.css", "text/css; charset=utf-8", "public, max-age=31536000, immutable", "body{"},
		{"/console/assets/logo.webp", "image/webp", "public, max-age=31536000, immutable", "RIFF"},
		{"/console/nested/page.txt", "text/plain; charset=utf-8", "no-cache", "nested"},
		// The console's own pages, reloaded or bookmarked, get index.html.
		{"/console/posts", "text/html; charset=utf-8", "no-cache", consoleIndex},
		{"/console/admin/roles?subject=u1", "text/html; charset=utf-8", "no-cache", consoleIndex},
		{"/console/admin/audit/", "text/html; charset=utf-8", "no-cache", consoleIndex},
		// A folder is never listed: it is a page like any other.
		{"/console/nested", "text/html; charset=utf-8", "no-cache", consoleIndex},
		{"/console/nested/", "text/html; charset=utf-8", "no-cache", consoleIndex},
		{"/console/assets/", "text/html; charset=utf-8", "no-cache", consoleIndex},
	}
	for _, tt := range tests {
		resp, body := f.do(t, "GET", tt.path, "", nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != tt.ctype ||
			resp.Header.Get("Cache-Control") != tt.cache || !strings.HasPrefix(body, tt.body) {
			t.Errorf("GET %s = %d %q %q %q; want 200 %q %q %q…", tt.path, resp.StatusCode, resp.Header.Get("Content-Type"),
				resp.Header.Get("Cache-Control"), body, tt.ctype, tt.cache, tt.body)
		}
		assertConsoleHeaders(t, tt.path, resp.Header)
	}

	resp, body := f.do(t, "HEAD", "/console/", "", nil)
	if resp.StatusCode != http.StatusOK || body != "" || resp.Header.Get("Content-Length") != "44" {
		t.Errorf("HEAD /console/ = %d %v %q", resp.StatusCode, resp.Header, body)
	}
	resp, _ = f.do(t, "GET", "/console/", "", map[string]string{"If-Modified-Since": time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)})
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("a fresh copy: %d, want 304", resp.StatusCode)
	}
}

func TestConsoleRefusesWhatIsNotAFileOfIt(t *testing.T) {
	t.Parallel()
	dir := consoleDir(t)
	f := newFixture(t, 1, func(c *config.Config) { c.Console.Dir = dir })
	addr := strings.TrimPrefix(f.url, "http://")

	for _, target := range []string{
		"/console/../secret.txt",
		"/console/assets/../../secret.txt",
		"/console/%2e%2e/secret.txt",
		"/console/assets/..%2f..%2fsecret.txt",
		"/console/..%5csecret.txt",
		"/console//secret.txt",
		"/console/./index.html",
		"/console/link.txt",
		"/console/up/secret.txt",
		"/console/.env",
		"/console/assets/missing.js",
		"/console/assets/missing",
		"/console/missing.css",
		"/console/favicon.svg/",
		"/console/index.html%00.js",
	} {
		resp, body := rawGet(t, addr, "GET", target)
		if resp.StatusCode != http.StatusNotFound || strings.Contains(body, "SECRET") || strings.Contains(body, "index-Bx1a2b3c") {
			t.Errorf("GET %s = %d %q, want 404 without the file or a listing", target, resp.StatusCode, body)
		}
		assertConsoleHeaders(t, target, resp.Header)
	}

	resp, _ := f.do(t, "POST", "/console/", "x", nil)
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /console/ = %d %v, want 405 with Allow", resp.StatusCode, resp.Header)
	}
}

func TestConsoleRedirects(t *testing.T) {
	t.Parallel()
	dir := consoleDir(t)
	f := newFixture(t, 1, func(c *config.Config) { c.Console.Dir = dir })
	noRedirects := &http.Client{Transport: f.h1.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path, accept string) *http.Response {
		req, err := http.NewRequest("GET", f.url+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", accept)
		resp, err := noRedirects.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := get("/console", "*/*"); resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/console/" {
		t.Errorf("GET /console = %d %q, want a redirect to /console/", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp := get("/", "text/html,application/xhtml+xml,*/*;q=0.8"); resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/console/" {
		t.Errorf("a browser's GET / = %d %q, want a redirect to /console/", resp.StatusCode, resp.Header.Get("Location"))
	}
	// An API client asking for / still gets the gateway's JSON answer.
	if resp := get("/", "application/json"); resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("an API client's GET / = %d %v, want the JSON 404", resp.StatusCode, resp.Header)
	}
	// Calls still go through beside the console.
	resp, body := f.do(t, "POST", "/v1/auth/login", `{"email":"a@example.com","password":"right"}`, map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "from-upstream-a") || resp.Header.Get("Content-Security-Policy") != "" {
		t.Errorf("REST login beside the console = %d %q %v", resp.StatusCode, body, resp.Header)
	}
}

func TestConsoleIsOffByDefault(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1, nil)
	resp, body := f.do(t, "GET", "/console/", "", map[string]string{"Accept": "text/html"})
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "no such route") {
		t.Errorf("GET /console/ without console.dir = %d %q, want the gateway's 404", resp.StatusCode, body)
	}
}

func assertConsoleHeaders(t *testing.T, path string, h http.Header) {
	t.Helper()
	csp := h.Get("Content-Security-Policy")
	for _, directive := range []string{"default-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, directive) {
			t.Errorf("%s: Content-Security-Policy %q lacks %s", path, csp, directive)
		}
	}
	if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" || h.Get("X-Frame-Options") != "DENY" {
		t.Errorf("%s: security headers %v", path, h)
	}
}

func TestConsoleCompressesTextFiles(t *testing.T) {
	t.Parallel()
	dir := consoleDir(t)
	script := strings.Repeat("export const greeting = 'hello from the console';\n", 400)
	image := strings.Repeat("\x89PNG-not-really", 400)
	for name, body := range map[string]string{"assets/app-D9e8f7a6.js": script, "assets/big.png": image} {
		if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(name)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f := newFixture(t, 1, func(c *config.Config) { c.Console.Dir = dir })

	tests := []struct {
		name, path, accept string
		gzipped, varies    bool
		want               string
	}{
		{"gzip accepted", "/console/assets/app-D9e8f7a6.js", "gzip, deflate, br", true, true, script},
		{"gzip among others with a quality", "/console/assets/app-D9e8f7a6.js", "br;q=1.0, GZIP;q=0.5", true, true, script},
		{"any coding", "/console/assets/app-D9e8f7a6.js", "*", true, true, script},
		{"gzip refused", "/console/assets/app-D9e8f7a6.js", "gzip;q=0, identity", false, true, script},
		{"identity only", "/console/assets/app-D9e8f7a6.js", "identity", false, true, script},
		{"an image is sent as it is", "/console/assets/big.png", "gzip", false, false, image},
		{"a small file is sent as it is", "/console/assets/index-Bx1a2b3c.js", "gzip", false, false, "console.log('console')"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := f.do(t, "GET", tt.path, "", map[string]string{"Accept-Encoding": tt.accept})
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if gz := resp.Header.Get("Content-Encoding") == "gzip"; gz != tt.gzipped {
				t.Fatalf("Content-Encoding %q, want gzip: %t", resp.Header.Get("Content-Encoding"), tt.gzipped)
			}
			if varies := strings.Contains(strings.Join(resp.Header.Values("Vary"), ","), "Accept-Encoding"); varies != tt.varies {
				t.Errorf("Vary %q, want Accept-Encoding: %t", resp.Header.Values("Vary"), tt.varies)
			}
			if tt.gzipped {
				if resp.Header.Get("Content-Length") != strconv.Itoa(len(body)) || len(body) >= len(tt.want)/4 {
					t.Errorf("compressed to %d bytes (Content-Length %s) from %d", len(body), resp.Header.Get("Content-Length"), len(tt.want))
				}
				body = gunzip(t, body)
			}
			if body != tt.want {
				t.Errorf("body of %d bytes differs from the file's %d", len(body), len(tt.want))
			}
		})
	}

	// A rebuilt file is compressed again rather than served from the cache.
	rebuilt := strings.Repeat("export const greeting = 'rebuilt';\n", 400)
	path := filepath.Join(dir, "assets", "app-D9e8f7a6.js")
	if err := os.WriteFile(path, []byte(rebuilt), 0o644); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	resp, body := f.do(t, "GET", "/console/assets/app-D9e8f7a6.js", "", map[string]string{"Accept-Encoding": "gzip"})
	if resp.Header.Get("Content-Encoding") != "gzip" || gunzip(t, body) != rebuilt {
		t.Errorf("after a rebuild: Content-Encoding %q, body not the rebuilt file", resp.Header.Get("Content-Encoding"))
	}
}

func gunzip(t *testing.T, s string) string {
	t.Helper()
	zr, err := gzip.NewReader(strings.NewReader(s))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	return string(b)
}
