package httpproxy

import (
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/longhaul-proxy/longhaul/proxy/h2relay"
	"github.com/longhaul-proxy/longhaul/proxy/route"
	"github.com/longhaul-proxy/longhaul/proxy/upstream"
)

// Backend is where a request goes: an upstream (its picker, its sessions,
// its drain), the key its picker hashes, and how its endpoints are
// reached. A listener without routes has one, its own; with routes, each
// rule's backend references are Backends.
type Backend struct {
	Up  *upstream.Upstream
	Key RequestKey
	// H2: requests go to the endpoints over HTTP/2 without TLS (h2c), as
	// gRPC servers expect; else over HTTP/1.1. On a listener with
	// UpstreamH2 every backend is reached over h2c.
	H2 bool
}

// Routes is a listener's route table over its backends.
type Routes = route.Table[*Backend]

// SetRoutes replaces the route table of a listener built with routes;
// requests routed from then on use it (each request reads the table once).
// Backends no longer referenced get no new request; the caller drains
// them. It panics on a listener built without routes: its one backend
// cannot become many.
func (l *Listener) SetRoutes(t *Routes) {
	if l.def != nil || t == nil {
		panic("httpproxy: SetRoutes on a listener without routes, or to none")
	}
	l.routes.Store(t)
}

// routed is the outcome of routing one request on the net/http path:
// where it goes, the response header changes its rule asks for, and the
// mirrors it copies HTTP requests to (gRPC calls are not mirrored; see
// mirror.go).
type routed struct {
	b       *Backend
	resp    *route.HeaderModifier
	mirrors []route.Mirror[*Backend]
	// meta is the matched route's (nil without routes), rule the index
	// and ruleName the name of its rule: for the access log.
	meta     *route.Meta
	rule     int
	ruleName string
}

// route finds the backend of r: the listener's own without routes; with
// routes, the best matching rule's backend, with the rule's request
// filters applied to r (headers, then host and path rewrite). When the
// rule answers itself, or none matches, route writes the answer (a
// redirect, 404, 500; for gRPC calls UNIMPLEMENTED or UNAVAILABLE) and
// returns false.
func (l *Listener) route(w http.ResponseWriter, r *http.Request, grpc bool) (routed, bool) {
	routes := l.routes.Load()
	if routes == nil {
		return routed{b: l.def}, true
	}
	if grpc {
		res := routes.MatchGRPC(r.Host, r.URL.Path, r.Header, rand.Uint64())
		switch {
		case res.Action == nil:
			l.failGRPC(w, 12, "no route for "+r.URL.Path) // UNIMPLEMENTED
			return routed{}, false
		case !res.HasBackend:
			l.failGRPC(w, 14, "the route has no backend")
			return routed{}, false
		}
		res.Action.RequestHeaders.Apply(r.Header)
		return routed{b: res.Backend, resp: res.Action.ResponseHeaders,
			meta: &res.Action.Route, rule: res.Action.RuleIndex, ruleName: res.Action.RuleName}, true
	}
	res := routes.MatchHTTP(r.Host, r.Method, r.URL.Path, r.Header, r.URL.RawQuery, rand.Uint64())
	switch st := res.Status(); {
	case st == 0:
	case res.Action != nil && res.Action.Redirect != nil:
		res.Action.RequestHeaders.Apply(r.Header)
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		loc := res.Action.Redirect.Location(scheme, r.Host, l.port(r), r.URL.Path, r.URL.RawQuery, res.MatchedPrefix)
		res.Action.ResponseHeaders.Apply(w.Header())
		http.Redirect(w, r, loc, st)
		return routed{}, false
	case st == http.StatusNotFound:
		http.Error(w, "longhaul: no route", st)
		return routed{}, false
	default:
		http.Error(w, "longhaul: the route has no backend", st)
		return routed{}, false
	}
	a := res.Action
	a.RequestHeaders.Apply(r.Header)
	a.Rewrite.Apply(r, res.MatchedPrefix)
	return routed{b: res.Backend, resp: a.ResponseHeaders, mirrors: a.Mirrors,
		meta: &a.Route, rule: a.RuleIndex, ruleName: a.RuleName}, true
}

// port returns the local port r came in on, for redirects; 0 if unknown.
func (l *Listener) port(r *http.Request) int {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if _, p, err := net.SplitHostPort(a.String()); err == nil {
			n, _ := strconv.Atoi(p)
			return n
		}
	}
	return 0
}

// failGRPC answers a gRPC call with a status and message, trailers-only.
func (l *Listener) failGRPC(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(code))
	h.Set("Grpc-Message", msg)
	w.WriteHeader(http.StatusOK)
}

// relayRouter leases endpoints for the HTTP/2 relay's streams: each stream
// holds its lease (counted as load) until it ends. Without routes every
// stream goes to def; with routes, to its rule's backend (gRPC calls by
// GRPCRoute, other requests by HTTPRoute). The relay forwards frames as
// they are, so rules whose filters change requests are refused by the
// configuration for relayed listeners; a stream no rule matches is
// answered 404 (gRPC UNIMPLEMENTED; see Missed). Pinned connections route
// through their relayConn instead.
type relayRouter struct {
	def    *Backend
	routes *atomic.Pointer[Routes] // the listener's
}

func (r relayRouter) Route(h *h2relay.RequestHead, tried []string) (string, func(), bool) {
	b := r.def
	if routes := r.routes.Load(); routes != nil {
		path, query, _ := strings.Cut(h.Path, "?")
		hd := headHeaders{h}
		var ok bool
		if h.GRPC {
			res := routes.MatchGRPC(h.Authority, path, hd, rand.Uint64())
			b, ok = res.Backend, res.HasBackend
		} else {
			res := routes.MatchHTTP(h.Authority, h.Method, path, hd, query, rand.Uint64())
			b, ok = res.Backend, res.Status() == 0
		}
		if !ok {
			return "", nil, false
		}
	}
	l, ok := b.Up.Route(b.Key.HashHead(h), "", tried)
	if !ok {
		return "", nil, false
	}
	return l.Addr(), l.Release, true
}

// Missed reports whether no route serves h (h2relay.RouteMisser): the
// relay answers 404 (gRPC UNIMPLEMENTED) as the Gateway API asks.
func (r relayRouter) Missed(h *h2relay.RequestHead) bool {
	routes := r.routes.Load()
	if routes == nil {
		return false
	}
	path, query, _ := strings.Cut(h.Path, "?")
	if h.GRPC {
		return routes.MatchGRPC(h.Authority, path, headHeaders{h}, 0).Action == nil
	}
	return routes.MatchHTTP(h.Authority, h.Method, path, headHeaders{h}, query, 0).Action == nil
}

// headHeaders gives route matching the header fields of a relayed
// request (h2relay.RequestHead.Values compares names in any case).
type headHeaders struct{ h *h2relay.RequestHead }

func (hh headHeaders) Values(name string) []string { return hh.h.Values(name) }
