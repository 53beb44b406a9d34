package route

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// Headers gives a request's values of a header. name is in canonical form
// (textproto.CanonicalMIMEHeaderKey); an implementation over another
// representation (HPACK fields) compares names case-insensitively.
// http.Header satisfies it.
type Headers interface {
	Values(name string) []string
}

// HTTPResult is the outcome of MatchHTTP.
type HTTPResult[B any] struct {
	// Action is the matched rule's; nil when no rule matched (404).
	Action *HTTPAction[B]
	// Backend is the picked backend, valid when HasBackend.
	Backend    B
	HasBackend bool
	// MatchedPrefix is the PathPrefix value that matched, without its
	// trailing "/" ("/" for the root); empty for other path matches. It
	// is the prefix a ReplacePrefixMatch replaces.
	MatchedPrefix string
}

// Status is the answer the API gives without a backend: 404 when no rule
// matched, the redirect's status when the rule redirects, 500 when the
// rule has no backend of non-zero weight; 0 when the request is to be
// forwarded to Backend.
func (r HTTPResult[B]) Status() int {
	switch {
	case r.Action == nil:
		return http.StatusNotFound
	case r.Action.Redirect != nil:
		return r.Action.Redirect.StatusCode
	case !r.HasBackend:
		return http.StatusInternalServerError
	}
	return 0
}

// MatchHTTP finds the rule for a request and picks its backend with rnd
// (see Pick). host is the Host header or :authority (a port, a trailing
// dot and upper case are ignored); path is the path as routed on (e.g.
// r.URL.Path), rawQuery the query without "?" (r.URL.RawQuery); header may
// be nil.
//
// Precedence, first match wins:
//  1. the routes of the request's host exactly, then of the wildcards
//     matching it, longest first, then the routes without hostnames;
//  2. within those, an Exact path, then PathPrefix longest first, then
//     RegularExpression longest pattern first;
//  3. a match with a method, then more header matches, then more query
//     parameter matches;
//  4. the older route, then "{namespace}/{name}" alphabetically, then the
//     first rule of the route, the first match of the rule.
//
// It does not allocate unless a header is sent several times, the query
// has escaped characters, the host has upper case, or a regular expression
// is evaluated.
func (t *Table[B]) MatchHTTP(host, method, path string, header Headers, rawQuery string, rnd uint64) HTTPResult[B] {
	host = normalHost(host)
	r := &reqView{method: method, path: path, header: header, query: rawQuery}
	t = t.forHost(host)
	if t == nil {
		return HTTPResult[B]{}
	}
	e := t.matchHTTP(host, r)
	if e == nil {
		return HTTPResult[B]{}
	}
	res := HTTPResult[B]{Action: e.action}
	if e.kind == kindPrefix {
		res.MatchedPrefix = e.path
	}
	res.Backend, res.HasBackend = e.action.Pick(rnd)
	return res
}

func (t *Table[B]) matchHTTP(host string, r *reqView) *httpEntry[B] {
	if b, ok := t.http.exact[host]; ok {
		if e := b.match(r); e != nil {
			return e
		}
	}
	if len(t.http.wild) > 0 {
		for i := 1; i < len(host); i++ {
			if host[i] != '.' {
				continue
			}
			if b, ok := t.http.wild[host[i:]]; ok {
				if e := b.match(r); e != nil {
					return e
				}
			}
		}
	}
	return t.http.any.match(r)
}

// reqView is what matching reads of a request.
type reqView struct {
	method, path string
	header       Headers
	query        string
}

// normalHost returns host without port and trailing dot, in lower case.
func normalHost(h string) string {
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			h = h[1:i]
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.IndexByte(h, ':') == i {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if 'A' <= h[i] && h[i] <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// httpBucket holds the sorted entries of one hostname: Exact entries by
// path, PathPrefix entries by prefix, RegularExpression entries in a list.
// Each list keeps the precedence order.
type httpBucket[B any] struct {
	exact  map[string][]*httpEntry[B]
	prefix map[string][]*httpEntry[B]
	regex  []*httpEntry[B]
}

func newHTTPBucket[B any](es []*httpEntry[B]) *httpBucket[B] {
	b := &httpBucket[B]{exact: map[string][]*httpEntry[B]{}, prefix: map[string][]*httpEntry[B]{}}
	for _, e := range es {
		switch e.kind {
		case kindExact:
			b.exact[e.path] = append(b.exact[e.path], e)
		case kindPrefix:
			b.prefix[e.path] = append(b.prefix[e.path], e)
		case kindRegex:
			b.regex = append(b.regex, e)
		}
	}
	return b
}

// match returns the first entry matching r in precedence order: the
// exact entries of the path; the prefix entries of each element prefix of
// the path, longest first ("/a/b", "/a", "/" for "/a/b" or "/a/b/");
// the regular expressions.
func (b *httpBucket[B]) match(r *reqView) *httpEntry[B] {
	p := r.path
	if e := firstOK(b.exact[p], r); e != nil {
		return e
	}
	if len(b.prefix) > 0 && strings.HasPrefix(p, "/") {
		if p[len(p)-1] != '/' {
			if e := firstOK(b.prefix[p], r); e != nil {
				return e
			}
		}
		for i := len(p) - 1; i > 0; i-- {
			if p[i] == '/' && p[i-1] != '/' {
				if e := firstOK(b.prefix[p[:i]], r); e != nil {
					return e
				}
			}
		}
		if e := firstOK(b.prefix["/"], r); e != nil {
			return e
		}
	}
	for _, e := range b.regex {
		if strings.HasPrefix(p, e.lit) && e.re.MatchString(p) && e.ok(r) {
			return e
		}
	}
	return nil
}

func firstOK[B any](es []*httpEntry[B], r *reqView) *httpEntry[B] {
	for _, e := range es {
		if e.ok(r) {
			return e
		}
	}
	return nil
}

// ok checks the conditions other than the path.
func (e *httpEntry[B]) ok(r *reqView) bool {
	if e.method != "" && e.method != r.method {
		return false
	}
	for i := range e.headers {
		c := &e.headers[i]
		v, found := headerValue(r.header, c.name)
		if !found || !valueOK(c.value, c.re, v) {
			return false
		}
	}
	for i := range e.query {
		c := &e.query[i]
		v, found := queryValue(r.query, c.name)
		if !found || !valueOK(c.value, c.re, v) {
			return false
		}
	}
	return true
}

func valueOK(want string, re *regexp.Regexp, v string) bool {
	if re != nil {
		return re.MatchString(v)
	}
	return v == want
}

// headerValue returns a header's value, its values joined by "," when
// sent several times.
func headerValue(h Headers, name string) (string, bool) {
	if h == nil {
		return "", false
	}
	vs := h.Values(name)
	switch len(vs) {
	case 0:
		return "", false
	case 1:
		return vs[0], true
	}
	return strings.Join(vs, ","), true
}

// queryValue returns the first value of a query parameter, as
// url.ParseQuery reads it (pairs with a ";" or bad escapes are skipped).
func queryValue(raw, name string) (string, bool) {
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		if kv == "" || strings.IndexByte(kv, ';') >= 0 {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		if k, ok := unescape(k); !ok || k != name {
			continue
		}
		if v, ok := unescape(v); ok {
			return v, true
		}
	}
	return "", false
}

func unescape(s string) (string, bool) {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s, true
	}
	u, err := url.QueryUnescape(s)
	return u, err == nil
}
