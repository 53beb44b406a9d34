package config

import (
	"fmt"

	"github.com/longhaul-proxy/longhaul/proxy/route"
)

// Backend is a named set of endpoints that a listener's routes send
// requests to: an upstream of its own, with its own picker, drain and
// rebalancing, so that migration, pacing and affinity work per backend as
// they do for a listener without routes. Balance and Drain start from the
// listener's (defaults included); a key given here overrides it.
type Backend struct {
	// Name identifies the backend in routes, logs and metrics (as
	// "listener/backend"); a DNS label, unique in the listener.
	Name      string    `mapstructure:"name"`
	Endpoints Endpoints `mapstructure:"endpoints"`
	Balance   Balance   `mapstructure:"balance"`
	Drain     Drain     `mapstructure:"drain"`
	// Protocol is how requests reach the endpoints: http1 (HTTP/1.1
	// keep-alive) or h2c (HTTP/2 without TLS, as gRPC servers expect);
	// empty means the listener's http.upstream. On an http listener with
	// http1 upstream, h2c backends (gRPC ones, say) share the port with
	// HTTP/1.1 ones. A listener whose upstream is h2c relays its HTTP/2
	// clients frame by frame, which needs h2c endpoints: http1 is refused
	// there.
	Protocol string `mapstructure:"protocol"`
}

// H2 reports whether requests reach b's endpoints over h2c on listener
// l: b's protocol, or else l's upstream.
func (b *Backend) H2(l *Listener) bool {
	if b.Protocol != "" {
		return b.Protocol == "h2c"
	}
	return l.upstreamH2()
}

// upstreamH2 reports whether l's own upstream is h2c: protocol grpc, or
// http.upstream h2c.
func (l *Listener) upstreamH2() bool {
	return l.Protocol == "grpc" || l.HTTP.Upstream == "h2c"
}

// Routes are a listener's route table, as the Gateway API's HTTPRoute,
// GRPCRoute, TCPRoute and TLSRoute define it (the field names are the
// API's). On an http or grpc listener, a request goes to the backends of
// the rule that matches it best (proxy/route states the precedence); none
// matching is a 404 (gRPC: UNIMPLEMENTED). On a tcp listener, a
// connection goes to a backend of its one TCP route, or of the TLS route
// whose hostname its ClientHello names (TLS passthrough); none matching
// closes it. A listener has TCP routes, or TLS routes, or HTTP and gRPC
// routes.
type Routes struct {
	HTTP []HTTPRoute `mapstructure:"http"`
	GRPC []GRPCRoute `mapstructure:"grpc"`
	TCP  []TCPRoute  `mapstructure:"tcp"`
	TLS  []TLSRoute  `mapstructure:"tls"`
}

// TCPRoute is a TCPRoute: every connection of its (tcp) listener goes to
// one backend of its rules, picked by weight (the rules' backends
// together). A listener takes at most one.
type TCPRoute struct {
	Name  string    `mapstructure:"name"`
	Rules []TCPRule `mapstructure:"rules"`
}

// TCPRule lists backends of a TCP route.
type TCPRule struct {
	Backends []BackendRef `mapstructure:"backendRefs"`
}

// TLSRoute is a TLSRoute (TLS passthrough): the ClientHello's server
// name is read without terminating TLS, and the connection, the
// ClientHello included, goes to a backend of the route whose hostname
// matches it best (exact, then the longest wildcard "*.example.com",
// then a route without hostnames), picked by weight. No route, or no
// server name, closes the connection.
type TLSRoute struct {
	Name      string    `mapstructure:"name"`
	Hostnames []string  `mapstructure:"hostnames"`
	Rules     []TLSRule `mapstructure:"rules"`
}

// TLSRule lists backends of a TLS route.
type TLSRule struct {
	Backends []BackendRef `mapstructure:"backendRefs"`
}

// HTTPRoute is an HTTPRoute: hostnames (exact or "*.example.com"; none
// means any) and rules. ListenerHostname is the hostname of the Gateway
// listener it is attached to (the gateway controller sets it; "" for
// none): when a listener's routes name several, a request is matched only
// against the routes of the most specific one matching its host (the
// API's listener isolation).
type HTTPRoute struct {
	Name             string     `mapstructure:"name"`
	Hostnames        []string   `mapstructure:"hostnames"`
	ListenerHostname string     `mapstructure:"listenerHostname"`
	Rules            []HTTPRule `mapstructure:"rules"`
}

// HTTPRule applies to a request that satisfies any of its matches (none:
// every request).
type HTTPRule struct {
	Name     string       `mapstructure:"name"`
	Matches  []HTTPMatch  `mapstructure:"matches"`
	Filters  []HTTPFilter `mapstructure:"filters"`
	Backends []BackendRef `mapstructure:"backendRefs"`
}

// HTTPMatch is satisfied when all its conditions are.
type HTTPMatch struct {
	Path        *PathMatch   `mapstructure:"path"`
	Method      string       `mapstructure:"method"`
	Headers     []ValueMatch `mapstructure:"headers"`
	QueryParams []ValueMatch `mapstructure:"queryParams"`
}

// PathMatch: type Exact, PathPrefix (the default) or RegularExpression.
type PathMatch struct {
	Type  string `mapstructure:"type"`
	Value string `mapstructure:"value"`
}

// ValueMatch matches a header or query parameter: type Exact (the
// default) or RegularExpression.
type ValueMatch struct {
	Type  string `mapstructure:"type"`
	Name  string `mapstructure:"name"`
	Value string `mapstructure:"value"`
}

// BackendRef names a backend of the listener; weight defaults to 1, and
// 0 sends it nothing.
type BackendRef struct {
	Name   string `mapstructure:"name"`
	Weight *int   `mapstructure:"weight"`
}

// HTTPFilter is one filter: type names it, and the field of that name
// holds it. RequestMirror may be given several times in a rule, the
// others once.
type HTTPFilter struct {
	Type                   string          `mapstructure:"type"`
	RequestHeaderModifier  *HeaderModifier `mapstructure:"requestHeaderModifier"`
	ResponseHeaderModifier *HeaderModifier `mapstructure:"responseHeaderModifier"`
	RequestRedirect        *Redirect       `mapstructure:"requestRedirect"`
	URLRewrite             *Rewrite        `mapstructure:"urlRewrite"`
	RequestMirror          *Mirror         `mapstructure:"requestMirror"`
}

// Mirror sends a copy of the rule's requests, as its earlier filters
// left them, to a backend of the listener, and ignores its answers (the
// Gateway API's RequestMirror): of every request, or of percent (0 to
// 100) of them, or of a fraction (numerator out of denominator, which
// defaults to 100); percent and fraction exclude each other. A copy
// never delays or fails the request: copies beyond what the listener
// keeps in flight, and those of a body over 1 MiB, are not sent.
// WebSocket upgrades are not copied.
type Mirror struct {
	BackendRef MirrorRef `mapstructure:"backendRef"`
	Percent    *int      `mapstructure:"percent"`
	Fraction   *Fraction `mapstructure:"fraction"`
}

// MirrorRef names the backend of the listener a mirror copies to.
type MirrorRef struct {
	Name string `mapstructure:"name"`
}

// Fraction is numerator out of denominator (default 100).
type Fraction struct {
	Numerator   int  `mapstructure:"numerator"`
	Denominator *int `mapstructure:"denominator"`
}

// HeaderModifier sets, adds and removes headers.
type HeaderModifier struct {
	Set    []Header `mapstructure:"set"`
	Add    []Header `mapstructure:"add"`
	Remove []string `mapstructure:"remove"`
}

// Header is a header name and value.
type Header struct {
	Name  string `mapstructure:"name"`
	Value string `mapstructure:"value"`
}

// Redirect answers with a redirection (statusCode 301, 302 (the
// default), 303, 307 or 308).
type Redirect struct {
	Scheme     string        `mapstructure:"scheme"`
	Hostname   string        `mapstructure:"hostname"`
	Path       *PathModifier `mapstructure:"path"`
	Port       int           `mapstructure:"port"`
	StatusCode int           `mapstructure:"statusCode"`
}

// Rewrite changes the request's host and path before it is forwarded.
type Rewrite struct {
	Hostname string        `mapstructure:"hostname"`
	Path     *PathModifier `mapstructure:"path"`
}

// PathModifier: type ReplaceFullPath with replaceFullPath, or
// ReplacePrefixMatch with replacePrefixMatch.
type PathModifier struct {
	Type               string `mapstructure:"type"`
	ReplaceFullPath    string `mapstructure:"replaceFullPath"`
	ReplacePrefixMatch string `mapstructure:"replacePrefixMatch"`
}

// GRPCRoute is a GRPCRoute: hostnames and rules.
type GRPCRoute struct {
	Name             string     `mapstructure:"name"`
	Hostnames        []string   `mapstructure:"hostnames"`
	ListenerHostname string     `mapstructure:"listenerHostname"` // as for HTTPRoute
	Rules            []GRPCRule `mapstructure:"rules"`
}

// GRPCRule applies to a call that satisfies any of its matches.
type GRPCRule struct {
	Name     string       `mapstructure:"name"`
	Matches  []GRPCMatch  `mapstructure:"matches"`
	Filters  []GRPCFilter `mapstructure:"filters"`
	Backends []BackendRef `mapstructure:"backendRefs"`
}

// GRPCMatch matches a call's service and method, and headers.
type GRPCMatch struct {
	Method  *GRPCMethodMatch `mapstructure:"method"`
	Headers []ValueMatch     `mapstructure:"headers"`
}

// GRPCMethodMatch: type Exact (the default) or RegularExpression; an
// empty service or method matches any.
type GRPCMethodMatch struct {
	Type    string `mapstructure:"type"`
	Service string `mapstructure:"service"`
	Method  string `mapstructure:"method"`
}

// GRPCFilter is a header modifier of a gRPC rule.
type GRPCFilter struct {
	Type                   string          `mapstructure:"type"`
	RequestHeaderModifier  *HeaderModifier `mapstructure:"requestHeaderModifier"`
	ResponseHeaderModifier *HeaderModifier `mapstructure:"responseHeaderModifier"`
}

// RouteSpec returns the listener's routes as proxy/route takes them, each
// backend reference turned into a B by ref (given the backend's name);
// routes are in the file's order (Created ties them). It does not
// validate: route.New does, and Validate reports its errors.
func RouteSpec[B any](l *Listener, ref func(name string) B) route.Spec[B] {
	var s route.Spec[B]
	backends := func(bs []BackendRef) []route.Backend[B] {
		out := make([]route.Backend[B], 0, len(bs))
		for _, b := range bs {
			w := 1
			if b.Weight != nil {
				w = *b.Weight
			}
			out = append(out, route.Backend[B]{Ref: ref(b.Name), Weight: int32(max(min(w, 1<<30), -1))})
		}
		return out
	}
	for i, r := range l.Routes.HTTP {
		hr := route.HTTPRoute[B]{Meta: routeMeta(l, r.Name, i), Hostnames: r.Hostnames, Listener: r.ListenerHostname}
		for _, rule := range r.Rules {
			hrule := route.HTTPRule[B]{Name: rule.Name, Backends: backends(rule.Backends)}
			for _, m := range rule.Matches {
				hm := route.HTTPMatch{Method: m.Method, Headers: headerMatches(m.Headers)}
				if m.Path != nil {
					hm.Path = route.PathMatch{Type: route.PathMatchType(m.Path.Type), Value: m.Path.Value}
				}
				for _, q := range m.QueryParams {
					hm.QueryParams = append(hm.QueryParams, route.QueryParamMatch{Type: route.ValueMatchType(q.Type), Name: q.Name, Value: q.Value})
				}
				hrule.Matches = append(hrule.Matches, hm)
			}
			for _, f := range rule.Filters {
				hrule.Filters = append(hrule.Filters, route.HTTPFilter[B]{
					Type:                   route.FilterType(f.Type),
					RequestHeaderModifier:  f.RequestHeaderModifier.route(),
					ResponseHeaderModifier: f.ResponseHeaderModifier.route(),
					RequestRedirect:        f.RequestRedirect.route(),
					URLRewrite:             f.URLRewrite.route(),
					RequestMirror:          mirrorRoute(f.RequestMirror, ref),
				})
			}
			hr.Rules = append(hr.Rules, hrule)
		}
		s.HTTP = append(s.HTTP, hr)
	}
	for i, r := range l.Routes.GRPC {
		gr := route.GRPCRoute[B]{Meta: routeMeta(l, r.Name, i), Hostnames: r.Hostnames, Listener: r.ListenerHostname}
		for _, rule := range r.Rules {
			grule := route.GRPCRule[B]{Name: rule.Name, Backends: backends(rule.Backends)}
			for _, m := range rule.Matches {
				gm := route.GRPCMatch{Headers: headerMatches(m.Headers)}
				if m.Method != nil {
					gm.Type, gm.Service, gm.Method = route.ValueMatchType(m.Method.Type), m.Method.Service, m.Method.Method
				}
				grule.Matches = append(grule.Matches, gm)
			}
			for _, f := range rule.Filters {
				grule.Filters = append(grule.Filters, route.GRPCFilter[B]{
					Type:                   route.FilterType(f.Type),
					RequestHeaderModifier:  f.RequestHeaderModifier.route(),
					ResponseHeaderModifier: f.ResponseHeaderModifier.route(),
				})
			}
			gr.Rules = append(gr.Rules, grule)
		}
		s.GRPC = append(s.GRPC, gr)
	}
	for i, r := range l.Routes.TCP {
		tr := route.TCPRoute[B]{Meta: routeMeta(l, r.Name, i)}
		for _, rule := range r.Rules {
			tr.Rules = append(tr.Rules, route.TCPRule[B]{Backends: backends(rule.Backends)})
		}
		s.TCP = append(s.TCP, tr)
	}
	for i, r := range l.Routes.TLS {
		tr := route.TLSRoute[B]{Meta: routeMeta(l, r.Name, i), Hostnames: r.Hostnames}
		for _, rule := range r.Rules {
			tr.Rules = append(tr.Rules, route.TLSRule[B]{Backends: backends(rule.Backends)})
		}
		s.TLS = append(s.TLS, tr)
	}
	return s
}

// routeMeta names a route of the file: the listener is its namespace, and
// its place in the file orders ties.
func routeMeta(l *Listener, name string, i int) route.Meta {
	if name == "" {
		name = fmt.Sprintf("route-%d", i)
	}
	return route.Meta{Namespace: l.Name, Name: name}
}

func headerMatches(ms []ValueMatch) []route.HeaderMatch {
	var out []route.HeaderMatch
	for _, h := range ms {
		out = append(out, route.HeaderMatch{Type: route.ValueMatchType(h.Type), Name: h.Name, Value: h.Value})
	}
	return out
}

func (h *HeaderModifier) route() *route.HeaderModifier {
	if h == nil {
		return nil
	}
	out := &route.HeaderModifier{Remove: h.Remove}
	for _, x := range h.Set {
		out.Set = append(out.Set, route.Header{Name: x.Name, Value: x.Value})
	}
	for _, x := range h.Add {
		out.Add = append(out.Add, route.Header{Name: x.Name, Value: x.Value})
	}
	return out
}

func (p *PathModifier) route() *route.PathModifier {
	if p == nil {
		return nil
	}
	v := p.ReplaceFullPath
	if route.PathModifierType(p.Type) == route.ReplacePrefixMatch {
		v = p.ReplacePrefixMatch
	}
	return &route.PathModifier{Type: route.PathModifierType(p.Type), Value: v}
}

func (r *Redirect) route() *route.Redirect {
	if r == nil {
		return nil
	}
	return &route.Redirect{Scheme: r.Scheme, Hostname: r.Hostname, Path: r.Path.route(), Port: r.Port, StatusCode: r.StatusCode}
}

// mirrorRoute turns m into proxy/route's, its backend by ref and the
// fraction's denominator defaulted; numbers out of range stay out of it.
func mirrorRoute[B any](m *Mirror, ref func(name string) B) *route.Mirror[B] {
	if m == nil {
		return nil
	}
	clamp := func(n int) int32 { return int32(max(min(n, 1<<30), -1)) }
	out := &route.Mirror[B]{Backend: ref(m.BackendRef.Name)}
	if m.Percent != nil {
		p := clamp(*m.Percent)
		out.Percent = &p
	}
	if f := m.Fraction; f != nil {
		d := 100
		if f.Denominator != nil {
			d = *f.Denominator
		}
		out.Fraction = &route.Fraction{Numerator: clamp(f.Numerator), Denominator: clamp(d)}
	}
	return out
}

func (r *Rewrite) route() *route.Rewrite {
	if r == nil {
		return nil
	}
	return &route.Rewrite{Hostname: r.Hostname, Path: r.Path.route()}
}

// HasRoutes reports whether the listener routes requests (or, protocol
// tcp, connections) to named backends rather than balancing over
// endpoints of its own.
func (l *Listener) HasRoutes() bool {
	return len(l.Routes.HTTP) > 0 || len(l.Routes.GRPC) > 0 || l.hasStreamRoutes() || len(l.Backends) > 0
}

// hasStreamRoutes reports whether the listener has TCP or TLS routes.
func (l *Listener) hasStreamRoutes() bool {
	return len(l.Routes.TCP) > 0 || len(l.Routes.TLS) > 0
}

// routes validates a listener's backends and routes: every error at once,
// route.New's among them (one Problem each).
func (v *validator) routes(p string, l *Listener) {
	if !l.HasRoutes() {
		return
	}
	requests := len(l.Routes.HTTP)+len(l.Routes.GRPC) > 0
	if requests && l.Protocol != "http" && l.Protocol != "grpc" {
		v.add(p+".routes", nil, "need protocol http or grpc")
	}
	if l.hasStreamRoutes() && l.Protocol != "tcp" {
		v.add(p+".routes", nil, "tcp and tls routes need protocol tcp")
	}
	if len(l.Backends) == 0 {
		v.add(p+".backends", nil, "routes need at least one backend")
	}
	if !requests && !l.hasStreamRoutes() {
		v.add(p+".routes", nil, "backends need at least one route")
	}
	if !l.Endpoints.empty() {
		v.add(p+".endpoints", nil, "must be left out with routes: each backend has its own")
	}
	if l.HTTP.Affinity == "connection" {
		v.add(p+".http.affinity", l.HTTP.Affinity, "is not supported with routes yet (each request is routed on its own)")
	}
	names := map[string]bool{}
	for i := range l.Backends {
		b := &l.Backends[i]
		bp := fmt.Sprintf("%s.backends[%d]", p, i)
		if v.required(bp+".name", b.Name) && !isDNSLabel(b.Name, 63) {
			v.add(bp+".name", b.Name, "must be a DNS label: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit")
		}
		if names[b.Name] {
			v.add(bp+".name", b.Name, "duplicate backend name")
		}
		names[b.Name] = true
		v.endpoints(bp+".endpoints", &b.Endpoints)
		v.balance(bp+".balance", l.Protocol, &b.Balance)
		v.drain(bp+".drain", &Listener{Balance: b.Balance, Drain: b.Drain})
		if v.oneOf(bp+".protocol", b.Protocol, "", "http1", "h2c") && b.Protocol == "http1" && l.upstreamH2() {
			v.add(bp+".protocol", b.Protocol, "is refused on a listener whose upstream is h2c (protocol grpc or http.upstream h2c): "+
				"it relays HTTP/2 clients frame by frame, which needs h2c endpoints; "+
				"mix http1 and h2c backends on an http listener with http1 upstream")
		}
	}
	check := func(kind string, ri, ki int, refs []BackendRef) {
		for j, r := range refs {
			rp := fmt.Sprintf("%s.routes.%s[%d].rules[%d].backendRefs[%d]", p, kind, ri, ki, j)
			if !names[r.Name] {
				v.add(rp+".name", r.Name, "names no backend of the listener")
			}
			if r.Weight != nil && (*r.Weight < 0 || *r.Weight > 1_000_000) {
				v.add(rp+".weight", *r.Weight, "must be from 0 to 1000000")
			}
		}
	}
	// The HTTP/2 relay forwards frames as they are: it cannot apply
	// filters yet, nor copy a stream to a mirror.
	relayed := l.Protocol == "grpc" || l.HTTP.Upstream == "h2c"
	noFilters := func(kind string, ri, ki, n int) {
		if relayed && n > 0 {
			v.add(fmt.Sprintf("%s.routes.%s[%d].rules[%d].filters", p, kind, ri, ki), nil,
				"are not supported yet on a listener that relays HTTP/2 (protocol grpc or http.upstream h2c), "+
					"RequestMirror included: its streams are forwarded frame by frame")
		}
	}
	for i, r := range l.Routes.HTTP {
		for k, rule := range r.Rules {
			check("http", i, k, rule.Backends)
			noFilters("http", i, k, len(rule.Filters))
			for j, f := range rule.Filters {
				if f.RequestMirror != nil {
					v.mirror(fmt.Sprintf("%s.routes.http[%d].rules[%d].filters[%d].requestMirror", p, i, k, j), f.RequestMirror, names)
				}
			}
		}
	}
	for i, r := range l.Routes.GRPC {
		for k, rule := range r.Rules {
			check("grpc", i, k, rule.Backends)
			noFilters("grpc", i, k, len(rule.Filters))
			for j, f := range rule.Filters {
				if f.Type == string(route.RequestMirror) {
					v.add(fmt.Sprintf("%s.routes.grpc[%d].rules[%d].filters[%d].type", p, i, k, j), f.Type, "is not supported on gRPC routes: gRPC calls are not mirrored")
				}
			}
		}
	}
	for i, r := range l.Routes.TCP {
		for k, rule := range r.Rules {
			check("tcp", i, k, rule.Backends)
		}
	}
	for i, r := range l.Routes.TLS {
		for k, rule := range r.Rules {
			check("tls", i, k, rule.Backends)
		}
	}
	listenerHost := func(kind string, i int, h string) {
		if _, err := route.CheckHostnames([]string{h}); h != "" && err != nil {
			v.add(fmt.Sprintf("%s.routes.%s[%d].listenerHostname", p, kind, i), nil, err.Error())
		}
	}
	for i, r := range l.Routes.HTTP {
		listenerHost("http", i, r.ListenerHostname)
	}
	for i, r := range l.Routes.GRPC {
		listenerHost("grpc", i, r.ListenerHostname)
	}
	spec := RouteSpec(l, func(name string) string { return name })
	for _, r := range spec.HTTP {
		for _, rule := range r.Rules {
			for _, f := range rule.Filters {
				if m := f.RequestMirror; m != nil {
					m.Percent, m.Fraction = nil, nil // checked above, with their paths
				}
			}
		}
	}
	if _, err := route.New(spec); err != nil {
		for _, e := range unjoin(err) {
			v.add(p+".routes", nil, e.Error())
		}
	}
}

// mirror validates a RequestMirror filter at p: its backend one of the
// listener's (names), its share a percent or a fraction of 0 to 1.
func (v *validator) mirror(p string, m *Mirror, names map[string]bool) {
	if v.required(p+".backendRef.name", m.BackendRef.Name) && !names[m.BackendRef.Name] {
		v.add(p+".backendRef.name", m.BackendRef.Name, "names no backend of the listener")
	}
	if m.Percent != nil && (*m.Percent < 0 || *m.Percent > 100) {
		v.add(p+".percent", *m.Percent, "must be from 0 to 100")
	}
	f := m.Fraction
	if f == nil {
		return
	}
	if m.Percent != nil {
		v.add(p, nil, "percent and fraction exclude each other: set one")
	}
	d := 100
	if f.Denominator != nil {
		d = *f.Denominator
		if d <= 0 {
			v.add(p+".fraction.denominator", d, "must be above 0")
		}
	}
	if f.Numerator < 0 || (d > 0 && f.Numerator > d) {
		v.add(p+".fraction.numerator", f.Numerator, fmt.Sprintf("must be from 0 to the denominator (%d)", d))
	}
}

// unjoin returns the errors errors.Join joined, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func (e *Endpoints) empty() bool {
	return len(e.Static) == 0 && e.File == "" && e.Kubernetes == nil
}
