package gateway

import (
	"bytes"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"strings"
)

// ConsolePath is where the gateway serves the browser console, when console.dir is set.
const ConsolePath = "/console/"

// consoleHeaders go on every answer under /console/ and /docs/. The pages' scripts and styles
// are their own files and they call only their own origin, so the policy allows nothing else;
// they may not be framed (clickjacking), browsers must not guess content types, and no URL
// leaves in a Referer.
var consoleHeaders = map[string]string{
	"Content-Security-Policy":      "default-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'",
	"X-Content-Type-Options":       "nosniff",
	"Referrer-Policy":              "no-referrer",
	"X-Frame-Options":              "DENY",
	"Cross-Origin-Opener-Policy":   "same-origin",
	"Cross-Origin-Resource-Policy": "same-origin",
}

// consoleTypes fixes the content types of what a Vite build holds, rather than trusting the
// machine's MIME tables.
var consoleTypes = map[string]string{
	".html":  "text/html; charset=utf-8",
	".js":    "text/javascript; charset=utf-8",
	".mjs":   "text/javascript; charset=utf-8",
	".css":   "text/css; charset=utf-8",
	".json":  "application/json",
	".map":   "application/json",
	".svg":   "image/svg+xml",
	".png":   "image/png",
	".ico":   "image/x-icon",
	".webp":  "image/webp",
	".woff2": "font/woff2",
	".txt":   "text/plain; charset=utf-8",
	".wasm":  "application/wasm",
}

// console serves a built page from a folder under path (the console under /console/, the REST
// reference page under /docs/): files only (no listings), nothing outside the folder
// (os.OpenInRoot refuses .. and symbolic links that leave it), and index.html for every other
// path without a file extension, so the console's own routes (/console/posts) survive a
// reload. Vite names everything under assets/ by its content's hash, so those files are cached
// for a year; everything else is revalidated on every load.
type console struct {
	dir  string
	path string
	gz   gzipCache
}

func (c *console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	for k, v := range consoleHeaders {
		h.Set(k, v)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name, ok := strings.CutPrefix(r.URL.Path, c.path)
	if !ok {
		// /console itself: the console's base is /console/.
		target := c.path
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		http.Redirect(w, r, target, http.StatusMovedPermanently)
		return
	}
	// A page's URL may end in a slash (/console/posts/); a file's never does.
	if trimmed, slash := strings.CutSuffix(name, "/"); slash {
		if !isRoute(trimmed) {
			http.NotFound(w, r)
			return
		}
		name = trimmed
	}
	if name == "" {
		name = "index.html"
	}
	if !consoleName(name) {
		http.NotFound(w, r)
		return
	}
	f, info, err := c.open(name)
	if err != nil && isRoute(name) {
		name = "index.html"
		f, info, err = c.open(name)
	}
	if err != nil {
		// Missing, a folder (never listed), or outside the folder: all the same to a client.
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	ext := path.Ext(name)
	ctype, ok := consoleTypes[ext]
	if !ok {
		if ctype = mime.TypeByExtension(ext); ctype == "" {
			ctype = "application/octet-stream"
		}
	}
	h.Set("Content-Type", ctype)
	if strings.HasPrefix(name, "assets/") {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	// Text files go out gzipped to clients that accept it; a cache must keep both forms apart.
	if compressible(ctype) && info.Size() >= minGzipSize && info.Size() <= maxGzipSize {
		h.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header) {
			if data, err := c.gz.get(name, info, f); err == nil {
				h.Set("Content-Encoding", "gzip")
				http.ServeContent(w, r, name, info.ModTime(), bytes.NewReader(data))
				return
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				http.Error(w, "the file could not be read", http.StatusInternalServerError)
				return
			}
		}
	}
	http.ServeContent(w, r, name, info.ModTime(), f)
}

// open opens the regular file name inside the console's folder.
func (c *console) open(name string) (*os.File, os.FileInfo, error) {
	f, err := os.OpenInRoot(c.dir, name)
	if err != nil {
		return nil, nil, err
	}
	info, err := f.Stat()
	if err == nil && !info.Mode().IsRegular() {
		err = fs.ErrNotExist
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, info, nil
}

// consoleName reports whether name (the path after /console/) may name a file: a valid,
// clean, slash-separated path without hidden elements or backslashes.
func consoleName(name string) bool {
	if !fs.ValidPath(name) || strings.ContainsAny(name, "\\\x00") {
		return false
	}
	for elem := range strings.SplitSeq(name, "/") {
		if strings.HasPrefix(elem, ".") {
			return false
		}
	}
	return true
}

// isRoute reports whether name looks like one of the console's pages rather than a file: its
// last element has no extension. A missing script or stylesheet stays a 404 instead of
// becoming HTML.
func isRoute(name string) bool {
	return path.Ext(name) == "" && !strings.HasPrefix(name, "assets/")
}

// servesConsole reports whether r is for the console.
func servesConsole(p string) bool {
	return p == strings.TrimSuffix(ConsolePath, "/") || strings.HasPrefix(p, ConsolePath)
}

// wantsHTML reports whether r is a browser asking for a page.
func wantsHTML(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && strings.Contains(r.Header.Get("Accept"), "text/html")
}
