package route

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// Table is the route table of one listener, built by New. It is immutable
// and safe for concurrent use; a configuration change builds a new Table.
type Table[B any] struct {
	http hostIndex[*httpBucket[B]]
	grpc hostIndex[*grpcBucket[B]]
	// tcp is the TCPRoute's action, nil without one; tls the TLSRoutes'
	// by hostname (each bucket is the route that wins it), hasTLS whether
	// there are any.
	tcp    *StreamAction[B]
	tls    hostIndex[*StreamAction[B]]
	hasTLS bool
	// listeners, when the HTTP and gRPC routes name more than one
	// listener hostname, holds a table of each listener's routes by that
	// hostname; requests are matched in the most specific one's (see
	// HTTPRoute.Listener). nil otherwise.
	listeners *hostIndex[*Table[B]]
}

// hostIndex holds one bucket per route hostname: exact names, wildcard
// suffixes keyed by ".example.com" for "*.example.com", and the routes
// without hostnames.
type hostIndex[T any] struct {
	exact map[string]T
	wild  map[string]T
	any   T
}

// HTTPAction is what a matched HTTP rule asks for. Filters are in the
// rule's order, the order the API asks them applied in where possible;
// RequestHeaders, ResponseHeaders, Redirect, Rewrite and Mirrors are the
// same filters by kind (at most one of each but mirrors). A Redirect
// answers the request itself (its backends are not used); otherwise the
// request, modified by RequestHeaders and Rewrite and copied to Mirrors,
// goes to the picked backend, and ResponseHeaders modify the response.
type HTTPAction[B any] struct {
	Route     Meta
	RuleIndex int
	RuleName  string

	Filters         []HTTPFilter[B]
	RequestHeaders  *HeaderModifier
	ResponseHeaders *HeaderModifier
	Redirect        *Redirect // StatusCode is set (0 became 302)
	Rewrite         *Rewrite
	Mirrors         []Mirror[B]

	be backends[B]
}

// GRPCAction is what a matched gRPC rule asks for.
type GRPCAction[B any] struct {
	Route     Meta
	RuleIndex int
	RuleName  string

	Filters         []GRPCFilter[B]
	RequestHeaders  *HeaderModifier
	ResponseHeaders *HeaderModifier
	Mirrors         []Mirror[B]

	be backends[B]
}

// backends are a rule's backends, and those of non-zero weight with the
// running sums of their weights: refs[i] takes the picks in
// [cum[i-1], cum[i]).
type backends[B any] struct {
	list []Backend[B]
	refs []B
	cum  []uint64
}

// pick returns the backend that rnd selects: rnd modulo the total weight
// falls in one backend's range, as wide as its weight, so a uniformly
// random rnd picks each with probability weight/total (a bias below
// total/2^64). false when no backend has a weight.
func (b *backends[B]) pick(rnd uint64) (B, bool) {
	n := len(b.cum)
	if n == 0 {
		var zero B
		return zero, false
	}
	x := rnd % b.cum[n-1]
	i, _ := slices.BinarySearch(b.cum, x+1)
	return b.refs[i], true
}

func newBackends[B any](list []Backend[B]) backends[B] {
	b := backends[B]{list: slices.Clone(list)}
	var sum uint64
	for _, be := range list {
		if be.Weight > 0 {
			sum += uint64(be.Weight)
			b.refs = append(b.refs, be.Ref)
			b.cum = append(b.cum, sum)
		}
	}
	return b
}

// Pick returns the backend rnd selects, each with a share of the rnd
// values proportional to its weight; a backend of weight 0 is never
// picked. false when no backend has a weight: the API's answer is then a
// 500.
func (a *HTTPAction[B]) Pick(rnd uint64) (B, bool) { return a.be.pick(rnd) }

// Backends returns the rule's backends as given, weights 0 included. The
// caller must not modify it.
func (a *HTTPAction[B]) Backends() []Backend[B] { return a.be.list }

// Pick is as for HTTPAction; false means UNAVAILABLE.
func (a *GRPCAction[B]) Pick(rnd uint64) (B, bool) { return a.be.pick(rnd) }

// Backends returns the rule's backends as given, weights 0 included. The
// caller must not modify it.
func (a *GRPCAction[B]) Backends() []Backend[B] { return a.be.list }

// New validates spec and builds its table. Every error is reported, joined
// by errors.Join, each naming its route, rule and match or filter; a spec
// with errors gives no table.
func New[B any](spec Spec[B]) (*Table[B], error) {
	var errs []error
	t := &Table[B]{}

	hes := compileRoutes(&errs, "httproute", spec.HTTP, func(r *HTTPRoute[B]) routeParts {
		return routeParts{r.Meta, r.Hostnames, len(r.Rules), func(i int) string { return r.Rules[i].Name }}
	}, compileHTTPRule[B])
	ges := compileRoutes(&errs, "grpcroute", spec.GRPC, func(r *GRPCRoute[B]) routeParts {
		return routeParts{r.Meta, r.Hostnames, len(r.Rules), func(i int) string { return r.Rules[i].Name }}
	}, compileGRPCRule[B])
	tcp, tls := compileStreams(&errs, spec)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	t.http = buildIndex(hes, compareHTTP[B], newHTTPBucket[B])
	t.grpc = buildIndex(ges, compareGRPC[B], newGRPCBucket[B])
	if len(tcp) > 0 {
		t.tcp = tcp[0].entries[0]
	}
	t.hasTLS = len(tls) > 0
	t.tls = buildIndex(tls, compareStreams[B], firstStream[B])
	if err := t.isolate(spec); err != nil {
		return nil, err
	}
	return t, nil
}

// isolate builds t.listeners when spec's routes name several listeners.
func (t *Table[B]) isolate(spec Spec[B]) error {
	groups := map[string]*Spec[B]{}
	group := func(l string) *Spec[B] {
		if groups[l] == nil {
			groups[l] = &Spec[B]{}
		}
		return groups[l]
	}
	for _, r := range spec.HTTP {
		g := group(r.Listener)
		g.HTTP = append(g.HTTP, r)
	}
	for _, r := range spec.GRPC {
		g := group(r.Listener)
		g.GRPC = append(g.GRPC, r)
	}
	if len(groups) < 2 {
		return nil
	}
	ix := &hostIndex[*Table[B]]{exact: map[string]*Table[B]{}, wild: map[string]*Table[B]{}}
	for l, g := range groups {
		sub, err := New(*g) // validated above, as part of spec
		if err != nil {
			return err
		}
		switch suffix, wild := strings.CutPrefix(l, "*"); {
		case l == "":
			ix.any = sub
		case wild:
			ix.wild[suffix] = sub
		default:
			ix.exact[l] = sub
		}
	}
	t.listeners = ix
	return nil
}

// forHost returns the table host (normalised) is matched in: t, or with
// listeners the most specific listener's; nil when no listener's hostname
// matches it.
func (t *Table[B]) forHost(host string) *Table[B] {
	ix := t.listeners
	if ix == nil {
		return t
	}
	if sub, ok := ix.exact[host]; ok {
		return sub
	}
	for i := 1; i < len(host); i++ {
		if host[i] == '.' {
			if sub, ok := ix.wild[host[i:]]; ok {
				return sub
			}
		}
	}
	return ix.any
}

func ruleName(i int, name string) string {
	if name == "" {
		return fmt.Sprintf("rule %d", i)
	}
	return fmt.Sprintf("rule %d (%q)", i, name)
}

// hostEntries are one route's hostnames and match entries.
type hostEntries[E any] struct {
	hosts   []string
	entries []E
}

// buildIndex files every route's entries under each of its hostnames
// (under "any" without hostnames), sorts each bucket's entries by cmp
// and makes the buckets.
func buildIndex[E any, T any](routes []hostEntries[E], cmp func(a, b E) int, mk func([]E) T) hostIndex[T] {
	exact := map[string][]E{}
	wild := map[string][]E{}
	var anyHost []E
	for _, r := range routes {
		if len(r.hosts) == 0 {
			anyHost = append(anyHost, r.entries...)
		}
		for _, h := range r.hosts {
			if suffix, ok := strings.CutPrefix(h, "*"); ok {
				wild[suffix] = append(wild[suffix], r.entries...)
			} else {
				exact[h] = append(exact[h], r.entries...)
			}
		}
	}
	ix := hostIndex[T]{exact: make(map[string]T, len(exact)), wild: make(map[string]T, len(wild))}
	for h, es := range exact {
		slices.SortStableFunc(es, cmp)
		ix.exact[h] = mk(es)
	}
	for h, es := range wild {
		slices.SortStableFunc(es, cmp)
		ix.wild[h] = mk(es)
	}
	slices.SortStableFunc(anyHost, cmp)
	ix.any = mk(anyHost)
	return ix
}

// hostnameRE is the API's Hostname pattern.
var hostnameRE = regexp.MustCompile(`^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// preciseHostnameRE is the API's PreciseHostname pattern (no wildcard).
var preciseHostnameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// checkHostnames validates route hostnames and returns them without
// duplicates.
func checkHostnames(hosts []string) ([]string, error) {
	var errs []error
	var out []string
	for _, h := range hosts {
		switch {
		case len(h) > 253 || !hostnameRE.MatchString(h):
			errs = append(errs, fmt.Errorf("hostname %q: not a lower-case RFC 1123 name, optionally prefixed by a \"*.\" label", h))
		case isIPv4(h):
			errs = append(errs, fmt.Errorf("hostname %q: IP addresses are not allowed", h))
		case !slices.Contains(out, h):
			out = append(out, h)
		}
	}
	return out, errors.Join(errs...)
}

// isIPv4 reports whether h is four dot-separated decimal numbers (the only
// IP form the hostname pattern lets through).
func isIPv4(h string) bool {
	parts := strings.Split(h, ".")
	if len(parts) != 4 {
		return false
	}
	for _, p := range parts {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}

// pathKind orders path matches: Exact, then PathPrefix, then
// RegularExpression.
type pathKind uint8

const (
	kindExact pathKind = iota
	kindPrefix
	kindRegex
)

// httpEntry is one match of one HTTP rule, compiled.
type httpEntry[B any] struct {
	action *HTTPAction[B]
	kind   pathKind
	// path is the Exact value, the PathPrefix value without its trailing
	// "/" ("/" for the root), or the regexp's source.
	path string
	re   *regexp.Regexp
	// lit is a literal prefix every path re matches begins with.
	lit     string
	method  string
	headers []headerCond
	query   []queryCond
	// key is the route's "{namespace}/{name}"; match the index of this
	// match in its rule.
	key   string
	match int
}

type headerCond struct {
	name  string // canonical
	value string
	re    *regexp.Regexp
}

type queryCond struct {
	name  string
	value string
	re    *regexp.Regexp
}

// compareHTTP orders HTTP entries of one hostname by the API's
// precedence: Exact path, then PathPrefix by length (longest first), then
// RegularExpression (longest pattern first, an implementation choice);
// then a method before none; more headers; more query parameters; the
// older route; the route first by "{namespace}/{name}"; the rule first in
// its route; the match first in its rule.
func compareHTTP[B any](a, b *httpEntry[B]) int {
	return cmp.Or(
		cmp.Compare(a.kind, b.kind),
		cmp.Compare(len(b.path), len(a.path)),
		trueFirst(a.method != "", b.method != ""),
		cmp.Compare(len(b.headers), len(a.headers)),
		cmp.Compare(len(b.query), len(a.query)),
		a.action.Route.Created.Compare(b.action.Route.Created),
		strings.Compare(a.key, b.key),
		cmp.Compare(a.action.RuleIndex, b.action.RuleIndex),
		cmp.Compare(a.match, b.match),
	)
}

// routeParts are what New checks of a route of either kind.
type routeParts struct {
	meta      Meta
	hostnames []string
	rules     int
	ruleName  func(i int) string
}

// compileRoutes checks and compiles routes of one kind (named kind in
// errors, appended to errs): unique names, valid hostnames, and each rule
// by compile.
func compileRoutes[R, E any](errs *[]error, kind string, routes []R, parts func(*R) routeParts, compile func(*R, int) ([]E, error)) []hostEntries[E] {
	seen := map[string]bool{}
	var out []hostEntries[E]
	for ri := range routes {
		r := &routes[ri]
		p := parts(r)
		where := fmt.Sprintf("%s %q", kind, p.meta.String())
		if p.meta.Name == "" {
			where = fmt.Sprintf("%s %d", kind, ri)
			*errs = append(*errs, fmt.Errorf("%s: no name", where))
		} else if seen[p.meta.String()] {
			*errs = append(*errs, fmt.Errorf("%s: name used by another route", where))
		}
		seen[p.meta.String()] = true
		hosts, err := checkHostnames(p.hostnames)
		if err != nil {
			*errs = append(*errs, wrap(where, err))
		}
		var entries []E
		for i := range p.rules {
			es, err := compile(r, i)
			if err != nil {
				*errs = append(*errs, wrap(where+" "+ruleName(i, p.ruleName(i)), err))
			}
			entries = append(entries, es...)
		}
		out = append(out, hostEntries[E]{hosts, entries})
	}
	return out
}

// methods are the methods the API allows in a match.
var methods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

func compileHTTPRule[B any](r *HTTPRoute[B], i int) ([]*httpEntry[B], error) {
	rule := &r.Rules[i]
	var errs []error
	a := &HTTPAction[B]{Route: r.Meta, RuleIndex: i, RuleName: rule.Name, Filters: slices.Clone(rule.Filters)}
	if err := checkBackends(rule.Backends); err != nil {
		errs = append(errs, err)
	}
	a.be = newBackends(rule.Backends)

	matches := rule.Matches
	if len(matches) == 0 {
		matches = []HTTPMatch{{}}
	}
	allPrefix := true
	var entries []*httpEntry[B]
	for mi, m := range matches {
		e := &httpEntry[B]{action: a, method: m.Method, key: r.Meta.String(), match: mi}
		var merrs []error
		switch m.Path.Type {
		case "", PathPrefix:
			v := cmp.Or(m.Path.Value, "/")
			if err := checkPath(v); err != nil {
				merrs = append(merrs, err)
			}
			e.kind, e.path = kindPrefix, cmp.Or(strings.TrimSuffix(v, "/"), "/")
		case PathExact:
			allPrefix = false
			if err := checkPath(m.Path.Value); err != nil {
				merrs = append(merrs, err)
			}
			e.kind, e.path = kindExact, m.Path.Value
		case PathRegularExpression:
			allPrefix = false
			re, err := compileRE(m.Path.Value)
			if err != nil {
				merrs = append(merrs, fmt.Errorf("path: %w", err))
			} else {
				// A whole-path match is a match of the pattern
				// unanchored, which begins with its literal prefix.
				e.lit, _ = regexp.MustCompile(m.Path.Value).LiteralPrefix()
			}
			e.kind, e.path, e.re = kindRegex, m.Path.Value, re
		default:
			merrs = append(merrs, fmt.Errorf("path: unknown type %q", m.Path.Type))
		}
		if m.Method != "" && !slices.Contains(methods, m.Method) {
			merrs = append(merrs, fmt.Errorf("method %q: not one of %s", m.Method, strings.Join(methods, ", ")))
		}
		hs, err := compileHeaderMatches(m.Headers)
		if err != nil {
			merrs = append(merrs, err)
		}
		e.headers = hs
		for qi, q := range m.QueryParams {
			if q.Name == "" {
				merrs = append(merrs, fmt.Errorf("query parameter %d: no name", qi))
				continue
			}
			if slices.ContainsFunc(e.query, func(c queryCond) bool { return c.name == q.Name }) {
				continue // the first entry of a name is the one considered
			}
			re, err := compileValue(q.Type, q.Value)
			if err != nil {
				merrs = append(merrs, fmt.Errorf("query parameter %q: %w", q.Name, err))
			}
			e.query = append(e.query, queryCond{name: q.Name, value: q.Value, re: re})
		}
		if err := errors.Join(merrs...); err != nil {
			errs = append(errs, wrap(fmt.Sprintf("match %d", mi), err))
		}
		entries = append(entries, e)
	}

	counts := map[FilterType]int{}
	for fi := range a.Filters {
		f := &a.Filters[fi]
		f.RequestHeaderModifier = f.RequestHeaderModifier.clone()
		f.ResponseHeaderModifier = f.ResponseHeaderModifier.clone()
		f.RequestRedirect = f.RequestRedirect.clone()
		f.URLRewrite = f.URLRewrite.clone()
		f.RequestMirror = f.RequestMirror.clone()
		counts[f.Type]++
		var err error
		set := 0
		for _, p := range []bool{f.RequestHeaderModifier != nil, f.ResponseHeaderModifier != nil, f.RequestRedirect != nil, f.URLRewrite != nil, f.RequestMirror != nil} {
			if p {
				set++
			}
		}
		switch f.Type {
		case RequestHeaderModifier:
			err = present(f.RequestHeaderModifier != nil, set)
			if err == nil {
				err = f.RequestHeaderModifier.check()
				a.RequestHeaders = f.RequestHeaderModifier
			}
		case ResponseHeaderModifier:
			err = present(f.ResponseHeaderModifier != nil, set)
			if err == nil {
				err = f.ResponseHeaderModifier.check()
				a.ResponseHeaders = f.ResponseHeaderModifier
			}
		case RequestRedirect:
			err = present(f.RequestRedirect != nil, set)
			if err == nil {
				rd := f.RequestRedirect
				rd.StatusCode = cmp.Or(rd.StatusCode, http.StatusFound)
				err = rd.check(allPrefix)
				a.Redirect = rd
			}
		case URLRewrite:
			err = present(f.URLRewrite != nil, set)
			if err == nil {
				err = f.URLRewrite.check(allPrefix)
				a.Rewrite = f.URLRewrite
			}
		case RequestMirror:
			err = present(f.RequestMirror != nil, set)
			if err == nil {
				err = f.RequestMirror.check()
				a.Mirrors = append(a.Mirrors, *f.RequestMirror)
			}
		default:
			err = fmt.Errorf("unsupported type %q", f.Type)
		}
		if err != nil {
			errs = append(errs, wrap(fmt.Sprintf("filter %d (%s)", fi, f.Type), err))
		}
	}
	for _, t := range []FilterType{RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect, URLRewrite} {
		if counts[t] > 1 {
			errs = append(errs, fmt.Errorf("filter %s given %d times: at most once", t, counts[t]))
		}
	}
	if counts[RequestRedirect] > 0 && counts[URLRewrite] > 0 {
		errs = append(errs, errors.New("filters RequestRedirect and URLRewrite cannot be combined"))
	}
	return entries, errors.Join(errs...)
}

// present checks that a filter's field of its type is set (ok) and no
// other (set counts the fields set).
func present(ok bool, set int) error {
	if !ok {
		return errors.New("its configuration field is not set")
	}
	if set > 1 {
		return errors.New("fields of other filter types are set too")
	}
	return nil
}

// checkPath checks an Exact or PathPrefix value.
func checkPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("path %q: does not begin with \"/\"", p)
	}
	if strings.Contains(p, "//") {
		return fmt.Errorf("path %q: contains \"//\"", p)
	}
	return nil
}

// compileRE compiles a regular expression that must match a whole value.
func compileRE(s string) (*regexp.Regexp, error) {
	if _, err := regexp.Compile(s); err != nil {
		return nil, fmt.Errorf("regular expression %q: %w", s, err)
	}
	return regexp.Compile(`^(?:` + s + `)$`)
}

// compileValue returns the regexp of a RegularExpression value match, nil
// for Exact.
func compileValue(t ValueMatchType, v string) (*regexp.Regexp, error) {
	switch t {
	case "", MatchExact:
		return nil, nil
	case MatchRegularExpression:
		return compileRE(v)
	}
	return nil, fmt.Errorf("unknown type %q", t)
}

func compileHeaderMatches(ms []HeaderMatch) ([]headerCond, error) {
	var errs []error
	var out []headerCond
	for hi, h := range ms {
		if !httpguts.ValidHeaderFieldName(h.Name) {
			errs = append(errs, fmt.Errorf("header %d: name %q is not a valid header name", hi, h.Name))
			continue
		}
		name := textproto.CanonicalMIMEHeaderKey(h.Name)
		if slices.ContainsFunc(out, func(c headerCond) bool { return c.name == name }) {
			continue // the first entry of a name is the one considered
		}
		re, err := compileValue(h.Type, h.Value)
		if err != nil {
			errs = append(errs, fmt.Errorf("header %q: %w", h.Name, err))
		}
		out = append(out, headerCond{name: name, value: h.Value, re: re})
	}
	return out, errors.Join(errs...)
}

func checkBackends[B any](bs []Backend[B]) error {
	var errs []error
	for i, b := range bs {
		if b.Weight < 0 || b.Weight > 1_000_000 {
			errs = append(errs, fmt.Errorf("backend %d: weight %d not within 0 to 1000000", i, b.Weight))
		}
	}
	return errors.Join(errs...)
}

func (m *HeaderModifier) check() error {
	var errs []error
	actions := map[string]string{}
	name := func(action, n string) {
		if !httpguts.ValidHeaderFieldName(n) {
			errs = append(errs, fmt.Errorf("%s: %q is not a valid header name", action, n))
			return
		}
		c := textproto.CanonicalMIMEHeaderKey(n)
		if prev, ok := actions[c]; ok {
			errs = append(errs, fmt.Errorf("%s: header %q has another action (%s): one action per header", action, n, prev))
		}
		actions[c] = action
	}
	for _, h := range m.Set {
		name("set", h.Name)
		if !httpguts.ValidHeaderFieldValue(h.Value) {
			errs = append(errs, fmt.Errorf("set: header %q: value %q is not a valid header value", h.Name, h.Value))
		}
	}
	for _, h := range m.Add {
		name("add", h.Name)
		if !httpguts.ValidHeaderFieldValue(h.Value) {
			errs = append(errs, fmt.Errorf("add: header %q: value %q is not a valid header value", h.Name, h.Value))
		}
	}
	for _, n := range m.Remove {
		name("remove", n)
	}
	return errors.Join(errs...)
}

func (p *PathModifier) check(allPrefix bool) error {
	switch p.Type {
	case ReplaceFullPath:
		return checkPath(p.Value)
	case ReplacePrefixMatch:
		if !allPrefix {
			return errors.New("ReplacePrefixMatch needs every match of the rule to be a PathPrefix match")
		}
		if p.Value == "" {
			return nil
		}
		return checkPath(p.Value)
	}
	return fmt.Errorf("path modifier: unknown type %q", p.Type)
}

func (r *Redirect) check(allPrefix bool) error {
	var errs []error
	if r.Scheme != "" && r.Scheme != "http" && r.Scheme != "https" {
		errs = append(errs, fmt.Errorf("scheme %q: not http or https", r.Scheme))
	}
	if r.Hostname != "" && (len(r.Hostname) > 253 || !preciseHostnameRE.MatchString(r.Hostname)) {
		errs = append(errs, fmt.Errorf("hostname %q: not a lower-case RFC 1123 name", r.Hostname))
	}
	if r.Port < 0 || r.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d: not within 1 to 65535", r.Port))
	}
	switch r.StatusCode {
	case 301, 302, 303, 307, 308:
	default:
		errs = append(errs, fmt.Errorf("status code %d: not one of 301, 302, 303, 307, 308", r.StatusCode))
	}
	if r.Path != nil {
		if err := r.Path.check(allPrefix); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (r *Rewrite) check(allPrefix bool) error {
	var errs []error
	if r.Hostname != "" && (len(r.Hostname) > 253 || !preciseHostnameRE.MatchString(r.Hostname)) {
		errs = append(errs, fmt.Errorf("hostname %q: not a lower-case RFC 1123 name", r.Hostname))
	}
	if r.Path != nil {
		if err := r.Path.check(allPrefix); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// trueFirst orders true before false.
func trueFirst(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return -1
	}
	return 1
}

// wrap prefixes each of err's joined errors (flattened) with prefix, so
// that every line of a joined error names its route, rule and match.
func wrap(prefix string, err error) error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, wrap(prefix, e))
		}
		return errors.Join(out...)
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// The clones make a Table independent of the Spec it was built from.

func (m *HeaderModifier) clone() *HeaderModifier {
	if m == nil {
		return nil
	}
	return &HeaderModifier{Set: slices.Clone(m.Set), Add: slices.Clone(m.Add), Remove: slices.Clone(m.Remove)}
}

func (p *PathModifier) clone() *PathModifier {
	if p == nil {
		return nil
	}
	c := *p
	return &c
}

func (r *Redirect) clone() *Redirect {
	if r == nil {
		return nil
	}
	c := *r
	c.Path = r.Path.clone()
	return &c
}

func (rw *Rewrite) clone() *Rewrite {
	if rw == nil {
		return nil
	}
	c := *rw
	c.Path = rw.Path.clone()
	return &c
}

func (m *Mirror[B]) clone() *Mirror[B] {
	if m == nil {
		return nil
	}
	c := *m
	if m.Percent != nil {
		p := *m.Percent
		c.Percent = &p
	}
	if m.Fraction != nil {
		f := *m.Fraction
		c.Fraction = &f
	}
	return &c
}
