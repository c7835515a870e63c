package gateway

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Compression bounds: files under minGzipSize gain less than gzip's own header costs, files over
// maxGzipSize are not what a console holds, and the cache never holds more than maxGzipCache
// bytes of compressed files (a build's worth many times over).
const (
	minGzipSize  = 1 << 10
	maxGzipSize  = 8 << 20
	maxGzipCache = 32 << 20
)

// gzipCache keeps the compressed form of the console's text files, so each is compressed once
// per version of the file rather than on every request. An entry is keyed by the file's name,
// size and modification time, so a rebuilt console is picked up without a restart.
type gzipCache struct {
	mu      sync.Mutex
	entries map[string]gzipEntry
	size    int
}

type gzipEntry struct {
	modTime time.Time
	size    int64
	data    []byte
}

// get returns the compressed content of the open file f (name, info), compressing it on a miss.
func (c *gzipCache) get(name string, info os.FileInfo, f io.Reader) ([]byte, error) {
	c.mu.Lock()
	e, ok := c.entries[name]
	c.mu.Unlock()
	if ok && e.size == info.Size() && e.modTime.Equal(info.ModTime()) {
		return e.data, nil
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(zw, io.LimitReader(f, info.Size())); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]gzipEntry{}
	}
	if old, ok := c.entries[name]; ok {
		c.size -= len(old.data)
		delete(c.entries, name)
	}
	if c.size+len(data) <= maxGzipCache {
		c.entries[name] = gzipEntry{modTime: info.ModTime(), size: info.Size(), data: data}
		c.size += len(data)
	}
	return data, nil
}

// compressible reports content types that gzip shrinks; images, fonts and WebAssembly of a
// build are compressed already or barely shrink.
func compressible(ctype string) bool {
	return strings.HasPrefix(ctype, "text/") || strings.HasPrefix(ctype, "application/json") ||
		strings.HasPrefix(ctype, "image/svg+xml")
}

// acceptsGzip reports whether the request's Accept-Encoding allows gzip: named, or covered by
// *, with a quality above zero.
func acceptsGzip(h http.Header) bool {
	for _, v := range h.Values("Accept-Encoding") {
		for part := range strings.SplitSeq(v, ",") {
			coding, params, _ := strings.Cut(part, ";")
			coding = strings.TrimSpace(coding)
			if !strings.EqualFold(coding, "gzip") && coding != "*" {
				continue
			}
			q := 1.0
			for p := range strings.SplitSeq(params, ";") {
				if k, val, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(k, "q") {
					if n, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
						q = n
					}
				}
			}
			if q > 0 {
				return true
			}
		}
	}
	return false
}
