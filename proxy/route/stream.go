package route

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
)

// StreamAction is what a matched TCPRoute or TLSRoute asks for: the
// connection goes to one of its backends (those of all its rules).
type StreamAction[B any] struct {
	Route Meta
	be    backends[B]
}

// Pick is as for HTTPAction; false means the route has no backend of
// non-zero weight, and the connection is closed.
func (a *StreamAction[B]) Pick(rnd uint64) (B, bool) { return a.be.pick(rnd) }

// Backends returns the route's backends as given (its rules' in order),
// weights 0 included. The caller must not modify it.
func (a *StreamAction[B]) Backends() []Backend[B] { return a.be.list }

// StreamResult is the outcome of MatchTCP and MatchTLS.
type StreamResult[B any] struct {
	// Action is the matched route's; nil when none matched: the
	// connection is closed (the API's answer for TLSRoute).
	Action *StreamAction[B]
	// Backend is the picked backend, valid when HasBackend.
	Backend    B
	HasBackend bool
}

// StreamKind says how a table routes connections.
type StreamKind uint8

const (
	// NoStreams: the table has no TCP or TLS route.
	NoStreams StreamKind = iota
	// StreamTCP: every connection goes to the TCPRoute (MatchTCP).
	StreamTCP
	// StreamTLS: connections are routed by the server name of their
	// ClientHello (MatchTLS).
	StreamTLS
)

// Streams says how the table routes connections: by its TCPRoute, by
// server name (TLSRoutes), or not at all.
func (t *Table[B]) Streams() StreamKind {
	switch {
	case t.tcp != nil:
		return StreamTCP
	case t.hasTLS:
		return StreamTLS
	}
	return NoStreams
}

// MatchTCP returns the TCPRoute's action and the backend rnd picks
// (see Pick); no Action without a TCPRoute. It does not allocate.
func (t *Table[B]) MatchTCP(rnd uint64) StreamResult[B] {
	return t.tcp.result(rnd)
}

// MatchTLS finds the TLSRoute for a connection whose ClientHello names
// serverName (its SNI; a trailing dot and upper case are ignored) and
// picks its backend with rnd. Precedence: the route listing serverName
// exactly, then the one of the longest wildcard matching it
// ("*.b.example.com" before "*.example.com"), then a route without
// hostnames; routes claiming the same hostname tie as for HTTP routes
// (the older, then "{namespace}/{name}" first), the first winning it
// whole. An empty serverName (a ClientHello without SNI) matches no
// route. It does not allocate unless serverName has upper case.
func (t *Table[B]) MatchTLS(serverName string, rnd uint64) StreamResult[B] {
	if serverName == "" || !t.hasTLS {
		return StreamResult[B]{}
	}
	h := normalSNI(serverName)
	if a, ok := t.tls.exact[h]; ok {
		return a.result(rnd)
	}
	if len(t.tls.wild) > 0 {
		for i := 1; i < len(h); i++ {
			if h[i] != '.' {
				continue
			}
			if a, ok := t.tls.wild[h[i:]]; ok {
				return a.result(rnd)
			}
		}
	}
	return t.tls.any.result(rnd)
}

func (a *StreamAction[B]) result(rnd uint64) StreamResult[B] {
	if a == nil {
		return StreamResult[B]{}
	}
	r := StreamResult[B]{Action: a}
	r.Backend, r.HasBackend = a.Pick(rnd)
	return r
}

// normalSNI returns a server name without a trailing dot, in lower case.
func normalSNI(h string) string {
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if 'A' <= h[i] && h[i] <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// compileStreams checks and compiles the TCP and TLS routes of spec, one
// action each (its rules' backends together), appending errors to errs:
// at most one TCPRoute, not both kinds, neither beside HTTP or gRPC
// routes.
func compileStreams[B any](errs *[]error, spec Spec[B]) (tcp, tls []hostEntries[*StreamAction[B]]) {
	rule := func(bs []Backend[B]) ([]Backend[B], error) { return bs, checkBackends(bs) }
	tcps := compileRoutes(errs, "tcproute", spec.TCP, func(r *TCPRoute[B]) routeParts {
		return routeParts{r.Meta, nil, len(r.Rules), func(i int) string { return r.Rules[i].Name }}
	}, func(r *TCPRoute[B], i int) ([]Backend[B], error) { return rule(r.Rules[i].Backends) })
	tlss := compileRoutes(errs, "tlsroute", spec.TLS, func(r *TLSRoute[B]) routeParts {
		return routeParts{r.Meta, r.Hostnames, len(r.Rules), func(i int) string { return r.Rules[i].Name }}
	}, func(r *TLSRoute[B], i int) ([]Backend[B], error) { return rule(r.Rules[i].Backends) })
	// One action per route, of every backend of its rules.
	action := func(m Meta, he hostEntries[Backend[B]]) hostEntries[*StreamAction[B]] {
		return hostEntries[*StreamAction[B]]{he.hosts, []*StreamAction[B]{{Route: m, be: newBackends(he.entries)}}}
	}
	for i, he := range tcps {
		tcp = append(tcp, action(spec.TCP[i].Meta, he))
	}
	for i, he := range tlss {
		tls = append(tls, action(spec.TLS[i].Meta, he))
	}
	for i := 1; i < len(spec.TCP); i++ {
		*errs = append(*errs, fmt.Errorf("tcproute %q: a listener takes one TCPRoute, and %q is attached to it already",
			spec.TCP[i].Meta.String(), spec.TCP[0].Meta.String()))
	}
	if len(spec.TCP) > 0 && len(spec.TLS) > 0 {
		*errs = append(*errs, fmt.Errorf("tcproute %q and tlsroute %q: a listener takes TCPRoutes or TLSRoutes, not both",
			spec.TCP[0].Meta.String(), spec.TLS[0].Meta.String()))
	}
	if len(spec.TCP)+len(spec.TLS) > 0 && len(spec.HTTP)+len(spec.GRPC) > 0 {
		*errs = append(*errs, errors.New("a listener of TCPRoutes or TLSRoutes (connections) takes no HTTPRoute or GRPCRoute (requests)"))
	}
	return tcp, tls
}

// compareStreams orders the TLS routes claiming one hostname: the older
// first, then by "{namespace}/{name}".
func compareStreams[B any](a, b *StreamAction[B]) int {
	return cmp.Or(a.Route.Created.Compare(b.Route.Created), strings.Compare(a.Route.String(), b.Route.String()))
}

// firstStream is the route that wins a hostname; nil for none.
func firstStream[B any](as []*StreamAction[B]) *StreamAction[B] {
	if len(as) == 0 {
		return nil
	}
	return as[0]
}
