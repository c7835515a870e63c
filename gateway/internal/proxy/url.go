package proxy

import "net/url"

type urlValue = url.URL

// newURL joins the upstream's placeholder base URL (scheme://host, which the balancer replaces
// per attempt) with the request's path and query, without parsing either again.
func newURL(base, path, rawPath, rawQuery string) *url.URL {
	scheme, host := "http", base
	if i := indexScheme(base); i >= 0 {
		scheme, host = base[:i], base[i+3:]
	}
	return &url.URL{Scheme: scheme, Host: host, Path: path, RawPath: rawPath, RawQuery: rawQuery}
}

func indexScheme(s string) int {
	for i := 0; i+2 < len(s); i++ {
		if s[i] == ':' && s[i+1] == '/' && s[i+2] == '/' {
			return i
		}
	}
	return -1
}
