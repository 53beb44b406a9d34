package httpproxy

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/proxy/h2relay"
)

// RequestKey derives the balancing key of an HTTP request, as a
// balancer.KeySpec says. A request that lacks the named part (no such
// header, cookie or parameter) falls back to the client's IP address, so
// that it still lands on a stable endpoint.
type RequestKey struct {
	kind  balancer.KeySource
	name  string // a header's canonical name, a cookie's or a parameter's
	lower string // a header's name in lower case, as HTTP/2 carries it
}

// NewRequestKey returns the RequestKey of spec.
func NewRequestKey(spec balancer.KeySpec) RequestKey {
	k := RequestKey{kind: spec.Source, name: spec.Name}
	if spec.Source == balancer.Header {
		k.name, k.lower = http.CanonicalHeaderKey(spec.Name), strings.ToLower(spec.Name)
	}
	return k
}

// ParseRequestKey parses a key specification (see balancer.ParseKeySpec).
func ParseRequestKey(s string) (RequestKey, error) {
	spec, err := balancer.ParseKeySpec(s)
	if err != nil {
		return RequestKey{}, err
	}
	return NewRequestKey(spec), nil
}

// Hash returns the key hash of r whose client address is client.
func (k RequestKey) Hash(r *http.Request, client netip.AddrPort) uint64 {
	return k.hash(httpParts{r}, client)
}

// HashHead returns the key hash of a request stream of the HTTP/2 relay.
func (k RequestKey) HashHead(h *h2relay.RequestHead) uint64 {
	return k.hash(headParts{h}, h.Client)
}

// requestParts are the parts of a request a key is read from, whichever
// path (net/http or the HTTP/2 relay) carries it.
type requestParts interface {
	header(canonical, lower string) (string, bool)
	cookie(name string) (string, bool)
	query(name string) string
	path() string
}

func (k RequestKey) hash(r requestParts, client netip.AddrPort) uint64 {
	switch k.kind {
	case balancer.ClientIPPort:
		return balancer.HashAddrPort(client)
	case balancer.Header:
		if v, ok := r.header(k.name, k.lower); ok {
			return balancer.HashString(v)
		}
	case balancer.Cookie:
		if v, ok := r.cookie(k.name); ok {
			return balancer.HashString(v)
		}
	case balancer.Query:
		if v := r.query(k.name); v != "" {
			return balancer.HashString(v)
		}
	case balancer.Path:
		return balancer.HashString(r.path())
	}
	return balancer.HashAddr(client.Addr())
}

type httpParts struct{ r *http.Request }

func (p httpParts) header(canonical, _ string) (string, bool) {
	if v := p.r.Header[canonical]; len(v) > 0 {
		return v[0], true
	}
	return "", false
}

func (p httpParts) cookie(name string) (string, bool) {
	c, err := p.r.Cookie(name)
	if err != nil {
		return "", false
	}
	return c.Value, true
}

func (p httpParts) query(name string) string { return p.r.URL.Query().Get(name) }
func (p httpParts) path() string             { return p.r.URL.Path }

type headParts struct{ h *h2relay.RequestHead }

func (p headParts) header(_, lower string) (string, bool) { return p.h.Header(lower) }
func (p headParts) cookie(name string) (string, bool)     { return p.h.Cookie(name) }
func (p headParts) query(name string) string              { return p.h.Query(name) }
func (p headParts) path() string                          { return p.h.URLPath() }
