package proxy

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/longhaul-proxy/longhaul/balancer"
)

// RequestKey derives the balancing key of an HTTP request. A request that
// lacks the named part (no such header, cookie or parameter) falls back to
// the client's IP address, so that it still lands on a stable endpoint.
type RequestKey struct {
	kind keyKind
	name string
}

type keyKind int

const (
	keyClientIP keyKind = iota
	keyClientIPPort
	keyHeader
	keyCookie
	keyQuery
	keyPath
)

// ParseRequestKey parses a key specification: "client-ip", "client-ip-port",
// "path", "header:NAME", "grpc-metadata:NAME" (a header), "cookie:NAME" or
// "query:NAME".
func ParseRequestKey(s string) (RequestKey, error) {
	kind, name, _ := strings.Cut(s, ":")
	switch kind {
	case "", "client-ip":
		return RequestKey{kind: keyClientIP}, nil
	case "client-ip-port":
		return RequestKey{kind: keyClientIPPort}, nil
	case "path":
		return RequestKey{kind: keyPath}, nil
	}
	if name == "" {
		return RequestKey{}, fmt.Errorf("key %q: %s needs a name, as in %s:NAME", s, kind, kind)
	}
	switch kind {
	case "header":
		return RequestKey{kind: keyHeader, name: http.CanonicalHeaderKey(name)}, nil
	case "grpc-metadata":
		return RequestKey{kind: keyHeader, name: http.CanonicalHeaderKey(strings.ToLower(name))}, nil
	case "cookie":
		return RequestKey{kind: keyCookie, name: name}, nil
	case "query":
		return RequestKey{kind: keyQuery, name: name}, nil
	}
	return RequestKey{}, fmt.Errorf("key %q: unknown kind %q", s, kind)
}

// Hash returns the key hash of r whose client address is client.
func (k RequestKey) Hash(r *http.Request, client netip.AddrPort) uint64 {
	switch k.kind {
	case keyClientIPPort:
		return balancer.HashAddrPort(client)
	case keyHeader:
		if v := r.Header[k.name]; len(v) > 0 {
			return balancer.HashString(v[0])
		}
	case keyCookie:
		if c, err := r.Cookie(k.name); err == nil {
			return balancer.HashString(c.Value)
		}
	case keyQuery:
		if v := r.URL.Query().Get(k.name); v != "" {
			return balancer.HashString(v)
		}
	case keyPath:
		return balancer.HashString(r.URL.Path)
	}
	return balancer.HashAddr(client.Addr())
}
