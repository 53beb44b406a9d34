package h2relay

import (
	"net/netip"
	"net/url"
	"strings"

	"golang.org/x/net/http2/hpack"
)

// RequestHead is a request stream's decoded header, as the Router sees it.
// It belongs to the stream and is valid only during Route; the strings may
// be kept.
type RequestHead struct {
	Method, Scheme, Authority string
	// Path is :path as sent, query included.
	Path   string
	Client netip.AddrPort
	TLS    bool
	GRPC   bool // content-type application/grpc*
	// fields are the regular header fields, names lower case, as decoded.
	fields []hpack.HeaderField
}

// Header returns the first value of the header field name, which must be
// lower case, without allocating.
func (h *RequestHead) Header(name string) (string, bool) {
	for i := range h.fields {
		if h.fields[i].Name == name {
			return h.fields[i].Value, true
		}
	}
	return "", false
}

// Values returns every value of the header field name, in any case (the
// fields are lower case; route matching asks by canonical names), in the
// order sent; nil when there is none. It allocates only for a field found.
func (h *RequestHead) Values(name string) []string {
	var out []string
	for i := range h.fields {
		if strings.EqualFold(h.fields[i].Name, name) {
			out = append(out, h.fields[i].Value)
		}
	}
	return out
}

// Cookie returns the value of the named cookie, from any cookie field
// (HTTP/2 may split cookies over several).
func (h *RequestHead) Cookie(name string) (string, bool) {
	for i := range h.fields {
		if h.fields[i].Name != "cookie" {
			continue
		}
		rest := h.fields[i].Value
		for rest != "" {
			var part string
			part, rest, _ = strings.Cut(rest, ";")
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			if ok && k == name {
				return strings.Trim(v, `"`), true
			}
		}
	}
	return "", false
}

// Query returns the first value of the named query parameter, or "" when
// there is none or it is empty.
func (h *RequestHead) Query(name string) string {
	_, q, ok := strings.Cut(h.Path, "?")
	if !ok {
		return ""
	}
	for q != "" {
		var part string
		part, q, _ = strings.Cut(q, "&")
		k, v, _ := strings.Cut(part, "=")
		if k != name {
			if uk, err := url.QueryUnescape(k); err != nil || uk != name {
				continue
			}
		}
		if uv, err := url.QueryUnescape(v); err == nil {
			return uv
		}
		return v
	}
	return ""
}

// URLPath returns Path without its query.
func (h *RequestHead) URLPath() string {
	p, _, _ := strings.Cut(h.Path, "?")
	return p
}
