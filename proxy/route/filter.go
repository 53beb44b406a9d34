package route

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Apply sets, adds and removes m's headers in h (names are
// case-insensitive). Set replaces every value of a header by one; Add
// appends a value, so "my-header: foo" plus an add of "bar,baz" is sent
// as two field lines, the same header as "my-header: foo,bar,baz". A nil
// m does nothing. The Host of an *http.Request is not in its Header: a
// modifier naming "Host" does not change it (use a Rewrite).
func (m *HeaderModifier) Apply(h http.Header) {
	if m == nil {
		return
	}
	for _, s := range m.Set {
		h.Set(s.Name, s.Value)
	}
	for _, a := range m.Add {
		h.Add(a.Name, a.Value)
	}
	for _, n := range m.Remove {
		h.Del(n)
	}
}

// ReplacePrefix replaces the PathPrefix prefix (as in
// HTTPResult.MatchedPrefix; a trailing "/" is ignored) of path by
// replacement, element by element as the API's table gives it:
//
//	path      prefix  replacement  result
//	/foo/bar  /foo    /xyz         /xyz/bar
//	/foo/bar  /foo    /xyz/        /xyz/bar
//	/foo      /foo    /xyz         /xyz
//	/foo/     /foo    /xyz         /xyz/
//	/foo/bar  /foo    ""           /bar
//	/foo      /foo    "" or "/"    /
//	/foo/x    /       /bar         /bar/foo/x
//
// The result begins with "/" when replacement does or is empty. A path
// that prefix does not match is returned unchanged.
func ReplacePrefix(path, prefix, replacement string) string {
	prefix = strings.TrimSuffix(prefix, "/")
	rest, ok := strings.CutPrefix(path, prefix)
	if !ok || (rest != "" && rest[0] != '/') {
		return path
	}
	out := strings.TrimSuffix(replacement, "/") + rest
	if out == "" {
		return "/"
	}
	return out
}

// Apply returns path modified by p: replaced whole, or its matched prefix
// replaced (see ReplacePrefix). A nil p returns path.
func (p *PathModifier) Apply(path, matchedPrefix string) string {
	switch {
	case p == nil:
		return path
	case p.Type == ReplaceFullPath:
		return p.Value
	case p.Type == ReplacePrefixMatch:
		return ReplacePrefix(path, matchedPrefix, p.Value)
	}
	return path
}

// Location is the Location header of r's redirect of a request, given the
// request's scheme ("http" or "https"), Host (a port is dropped), the port
// of the listener it came on, its path (decoded, as r.URL.Path; it is
// escaped in the result), its raw query (kept) and the matched prefix
// (HTTPResult.MatchedPrefix, for a ReplacePrefixMatch).
//
// The port is r.Port if set; else the well-known port of r.Scheme if
// set (80 for http, 443 for https); else listenerPort. It is left out of
// the Location for http on 80, https on 443, or when it is 0.
func (r *Redirect) Location(scheme, host string, listenerPort int, path, rawQuery, matchedPrefix string) string {
	port := listenerPort
	switch {
	case r.Port != 0:
		port = r.Port
	case r.Scheme == "http":
		port = 80
	case r.Scheme == "https":
		port = 443
	}
	if r.Scheme != "" {
		scheme = r.Scheme
	}
	h := normalHost(host)
	if r.Hostname != "" {
		h = r.Hostname
	}
	switch {
	case port == 0 || (scheme == "http" && port == 80) || (scheme == "https" && port == 443):
		if strings.IndexByte(h, ':') >= 0 {
			h = "[" + h + "]"
		}
	default:
		h = net.JoinHostPort(h, strconv.Itoa(port))
	}
	u := url.URL{Scheme: scheme, Host: h, Path: r.Path.Apply(path, matchedPrefix), RawQuery: rawQuery}
	return u.String()
}

// Apply rewrites req for forwarding: its Host to rw.Hostname if set, its
// path by rw.Path if set (matchedPrefix as in HTTPResult.MatchedPrefix).
// The query is kept. A nil rw does nothing.
func (rw *Rewrite) Apply(req *http.Request, matchedPrefix string) {
	if rw == nil {
		return
	}
	if rw.Hostname != "" {
		req.Host = rw.Hostname
	}
	if rw.Path == nil {
		return
	}
	// The escaped form is rewritten alongside, so that an escaped "/" in
	// the part kept stays escaped; url.URL drops a RawPath that is not an
	// encoding of Path.
	raw := ""
	if req.URL.RawPath != "" && rw.Path.Type == ReplacePrefixMatch {
		raw = ReplacePrefix(req.URL.RawPath, escapePath(matchedPrefix), escapePath(rw.Path.Value))
	}
	req.URL.Path = rw.Path.Apply(req.URL.Path, matchedPrefix)
	req.URL.RawPath = raw
}

func escapePath(p string) string { return (&url.URL{Path: p}).EscapedPath() }

// Take reports whether the request drawn as rnd (uniform over uint64,
// from the caller) is one of the share m copies: all of them without
// Percent or Fraction, none at 0, rnd's share otherwise.
func (m *Mirror[B]) Take(rnd uint64) bool {
	switch {
	case m.Fraction != nil:
		return rnd%uint64(max(m.Fraction.Denominator, 1)) < uint64(max(m.Fraction.Numerator, 0))
	case m.Percent != nil:
		return rnd%100 < uint64(max(*m.Percent, 0))
	}
	return true
}

// check validates m's share: Percent within 0 to 100, or a Fraction of
// 0 to 1 with a positive denominator, not both.
func (m *Mirror[B]) check() error {
	var errs []error
	if p := m.Percent; p != nil && (*p < 0 || *p > 100) {
		errs = append(errs, fmt.Errorf("percent %d: not within 0 to 100", *p))
	}
	if f := m.Fraction; f != nil {
		if m.Percent != nil {
			errs = append(errs, errors.New("percent and fraction both set: at most one"))
		}
		if f.Denominator <= 0 {
			errs = append(errs, fmt.Errorf("fraction denominator %d: must be above 0", f.Denominator))
		}
		if f.Numerator < 0 || f.Numerator > max(f.Denominator, 0) {
			errs = append(errs, fmt.Errorf("fraction numerator %d: not within 0 to the denominator %d", f.Numerator, f.Denominator))
		}
	}
	return errors.Join(errs...)
}
