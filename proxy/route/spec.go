package route

import "time"

// Spec is what a Table is built from: the routes attached to one
// listener. B is the caller's backend reference, opaque to this package
// (a name, a pointer to an upstream). HTTP and gRPC routes are kept apart:
// MatchHTTP never returns a gRPC rule and MatchGRPC never an HTTP one (the
// API forbids merging them). TCP and TLS routes are for a listener of
// connections, not requests: a Spec with either has no HTTP or gRPC
// route, and not both (see TCPRoute, TLSRoute).
type Spec[B any] struct {
	HTTP []HTTPRoute[B]
	GRPC []GRPCRoute[B]
	TCP  []TCPRoute[B]
	TLS  []TLSRoute[B]
}

// Meta identifies a route and orders routes whose matches tie: the older
// Created first, then "{Namespace}/{Name}" in alphabetical order.
// Namespace/Name must be unique among the routes of one kind in a Spec.
type Meta struct {
	Namespace string
	Name      string
	Created   time.Time
}

// String is "{namespace}/{name}", the form the API orders by.
func (m Meta) String() string { return m.Namespace + "/" + m.Name }

// HTTPRoute is an HTTPRoute of the Gateway API reduced to what the data
// path needs.
type HTTPRoute[B any] struct {
	Meta
	// Hostnames the route serves: exact ("foo.example.com") or a wildcard
	// ("*.example.com", matching one or more labels in place of the "*",
	// so "a.example.com" and "a.b.example.com" but not "example.com").
	// Lower case, no IP addresses. None means every host.
	Hostnames []string
	// Listener is the hostname of the Gateway listener the route is
	// attached to ("" for a listener without one). When a table's routes
	// name several listeners, a request is matched only against the routes
	// of the most specific listener whose hostname matches its host (the
	// API's listener isolation): an exact name, then the longest wildcard,
	// then "". Without a Gateway every route has "".
	Listener string
	Rules    []HTTPRule[B]
}

// HTTPRule is one rule of an HTTPRoute: it applies to a request that
// satisfies any one of Matches (none means a PathPrefix "/" match, i.e.
// every request).
type HTTPRule[B any] struct {
	// Name is optional; errors name the rule by it and by its index.
	Name     string
	Matches  []HTTPMatch
	Filters  []HTTPFilter[B]
	Backends []Backend[B]
}

// HTTPMatch is satisfied when all of its conditions are. The zero value
// matches every request (PathPrefix "/").
type HTTPMatch struct {
	Path PathMatch
	// Method, upper case ("GET"); empty matches any method.
	Method      string
	Headers     []HeaderMatch
	QueryParams []QueryParamMatch
}

// PathMatchType is how a path is compared; the values are the API's.
type PathMatchType string

const (
	// PathExact matches the path exactly and case-sensitively: "/abc"
	// matches "/abc" only, not "/abc/", "/Abc" or "/abcd".
	PathExact PathMatchType = "Exact"
	// PathPrefix matches element by element: "/abc" (or "/abc/")
	// matches "/abc", "/abc/" and "/abc/def", not "/abcd". The empty
	// type is PathPrefix.
	PathPrefix PathMatchType = "PathPrefix"
	// PathRegularExpression matches when the Go regexp (RE2 syntax)
	// matches the whole path.
	PathRegularExpression PathMatchType = "RegularExpression"
)

// PathMatch is a path condition. The zero value is PathPrefix "/".
// Exact and PathPrefix values begin with "/" and have no "//".
type PathMatch struct {
	Type  PathMatchType
	Value string
}

// ValueMatchType is how a header, query parameter, gRPC service or gRPC
// method value is compared; the values are the API's.
type ValueMatchType string

const (
	// MatchExact compares case-sensitively; it is the empty type's meaning.
	MatchExact ValueMatchType = "Exact"
	// MatchRegularExpression matches when the Go regexp (RE2 syntax)
	// matches the whole value.
	MatchRegularExpression ValueMatchType = "RegularExpression"
)

// HeaderMatch is a request header condition. Name is compared
// case-insensitively; of several entries naming the same header in one
// match, only the first is considered (the API's rule). A header sent
// several times is matched on its values joined by ",".
type HeaderMatch struct {
	Type  ValueMatchType
	Name  string
	Value string
}

// QueryParamMatch is a query parameter condition. Name is compared
// exactly; of several entries naming the same parameter, only the first
// is considered. A parameter sent several times is matched on its first
// value (the API's recommendation).
type QueryParamMatch struct {
	Type  ValueMatchType
	Name  string
	Value string
}

// Backend is a weighted backend reference. Weight is taken as given: 0
// sends no traffic, and a rule whose weights are all 0 (or which has no
// backends) answers 500. The API's default weight of 1 for an omitted
// weight is the translator's to apply. At most 1,000,000.
type Backend[B any] struct {
	Ref    B
	Weight int32
}

// FilterType names a filter; the values are the API's.
type FilterType string

const (
	RequestHeaderModifier  FilterType = "RequestHeaderModifier"
	ResponseHeaderModifier FilterType = "ResponseHeaderModifier"
	RequestRedirect        FilterType = "RequestRedirect"
	URLRewrite             FilterType = "URLRewrite"
	RequestMirror          FilterType = "RequestMirror"
)

// HTTPFilter is one filter of an HTTP rule: Type says which one, and the
// field of that name (only that one) is set. RequestRedirect and
// URLRewrite exclude each other; only RequestMirror may appear more than
// once in a rule.
type HTTPFilter[B any] struct {
	Type                   FilterType
	RequestHeaderModifier  *HeaderModifier
	ResponseHeaderModifier *HeaderModifier
	RequestRedirect        *Redirect
	URLRewrite             *Rewrite
	RequestMirror          *Mirror[B]
}

// Header is a header name and value.
type Header struct {
	Name  string
	Value string
}

// HeaderModifier sets (replacing), adds (appending) and removes headers.
// Names are case-insensitive, and one name may have only one action in a
// modifier (the API's rule), so the order of the three does not matter.
type HeaderModifier struct {
	Set    []Header
	Add    []Header
	Remove []string
}

// PathModifierType is how a redirect or rewrite changes the path; the
// values are the API's.
type PathModifierType string

const (
	// ReplaceFullPath replaces the whole path by Value.
	ReplaceFullPath PathModifierType = "ReplaceFullPath"
	// ReplacePrefixMatch replaces the matched PathPrefix by Value, element
	// by element (see ReplacePrefix). Only allowed in a rule whose
	// matches are all PathPrefix.
	ReplacePrefixMatch PathModifierType = "ReplacePrefixMatch"
)

// PathModifier changes a request path. Value begins with "/" or, for
// ReplacePrefixMatch, may be empty (which removes the prefix).
type PathModifier struct {
	Type  PathModifierType
	Value string
}

// Redirect answers the request with a redirection. Empty fields keep the
// request's: scheme, host (its port dropped), path. StatusCode is one of
// 301, 302, 303, 307, 308; 0 means 302 (the API's default). Port 0 means
// the port the API derives (see Redirect.Location).
type Redirect struct {
	Scheme     string
	Hostname   string
	Path       *PathModifier
	Port       int
	StatusCode int
}

// Rewrite changes the request before it is forwarded: Hostname (if not
// empty) replaces the Host, Path (if set) the path.
type Rewrite struct {
	Hostname string
	Path     *PathModifier
}

// Mirror sends a copy of requests to Backend, whose responses are
// ignored: Percent of requests (0 to 100), or Fraction of them; neither
// means all, both is an error. This package only carries it and draws
// the requests to copy (Mirror.Take): sending the copies is the proxy's.
type Mirror[B any] struct {
	Backend  B
	Percent  *int32
	Fraction *Fraction
}

// Fraction is Numerator/Denominator: 0 <= Numerator <= Denominator, and
// Denominator > 0 (the API's default of 100 is the translator's to
// apply).
type Fraction struct {
	Numerator   int32
	Denominator int32
}

// GRPCRoute is a GRPCRoute of the Gateway API reduced to what the data
// path needs. Hostnames are as for HTTPRoute.
type GRPCRoute[B any] struct {
	Meta
	Hostnames []string
	Listener  string // as for HTTPRoute
	Rules     []GRPCRule[B]
}

// GRPCRule applies to a call that satisfies any one of Matches (none
// means every call).
type GRPCRule[B any] struct {
	Name     string
	Matches  []GRPCMatch
	Filters  []GRPCFilter[B]
	Backends []Backend[B]
}

// GRPCMatch is satisfied when all of its conditions are. Service and
// Method are compared with the call's "/{service}/{method}" path; an empty
// one matches any. Type applies to both (empty: Exact). Exact values
// contain no "/".
type GRPCMatch struct {
	Type    ValueMatchType
	Service string
	Method  string
	Headers []HeaderMatch
}

// GRPCFilter is one filter of a gRPC rule: RequestHeaderModifier,
// ResponseHeaderModifier or RequestMirror (several mirrors allowed).
type GRPCFilter[B any] struct {
	Type                   FilterType
	RequestHeaderModifier  *HeaderModifier
	ResponseHeaderModifier *HeaderModifier
	RequestMirror          *Mirror[B]
}

// TCPRoute is a TCPRoute of the Gateway API: every connection of the
// listener goes to one of its backends, picked by weight. Several
// TCPRoutes on one listener are implementation-specific in the API; a
// Spec may hold one. The backends of all its rules form one weighted set
// (the API's TCPRoute rules have no matches to tell them apart).
type TCPRoute[B any] struct {
	Meta
	Rules []TCPRule[B]
}

// TCPRule is one rule of a TCPRoute.
type TCPRule[B any] struct {
	Name     string
	Backends []Backend[B]
}

// TLSRoute is a TLSRoute of the Gateway API (TLS passthrough): a
// connection goes to a backend of the route whose hostname matches the
// server name (SNI) of its ClientHello best, picked by weight; the TLS
// session is the client's and the backend's. Hostnames are as for
// HTTPRoute; none means every server name, at the lowest precedence. The
// backends of all its rules form one weighted set, as for TCPRoute.
type TLSRoute[B any] struct {
	Meta
	Hostnames []string
	Rules     []TLSRule[B]
}

// TLSRule is one rule of a TLSRoute.
type TLSRule[B any] struct {
	Name     string
	Backends []Backend[B]
}
