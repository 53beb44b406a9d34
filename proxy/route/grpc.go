package route

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// GRPCResult is the outcome of MatchGRPC.
type GRPCResult[B any] struct {
	// Action is the matched rule's; nil when no rule matched (the API's
	// 404, which a gRPC client sees as UNIMPLEMENTED).
	Action *GRPCAction[B]
	// Backend is the picked backend, valid when HasBackend; a matched rule
	// without one is answered UNAVAILABLE.
	Backend    B
	HasBackend bool
}

// valueKind orders gRPC service and method matches: Exact, then
// RegularExpression, then none.
type valueKind uint8

const (
	valueExact valueKind = iota
	valueRegex
	valueAny
)

// grpcEntry is one match of one gRPC rule, compiled.
type grpcEntry[B any] struct {
	action            *GRPCAction[B]
	svcKind, methKind valueKind
	service, method   string // the Exact values or the regexps' sources
	svcRE, methRE     *regexp.Regexp
	headers           []headerCond
	key               string
	match             int
}

// compareGRPC orders gRPC entries of one hostname by the API's
// precedence, "the largest number of characters in a matching service,
// then method, then header matches": an Exact service, longest first,
// then a RegularExpression service (longest pattern first, an
// implementation choice) then none; the same for the method; more header
// matches; the older route; "{namespace}/{name}"; rule; match.
func compareGRPC[B any](a, b *grpcEntry[B]) int {
	return cmp.Or(
		cmp.Compare(a.svcKind, b.svcKind),
		cmp.Compare(len(b.service), len(a.service)),
		cmp.Compare(a.methKind, b.methKind),
		cmp.Compare(len(b.method), len(a.method)),
		cmp.Compare(len(b.headers), len(a.headers)),
		a.action.Route.Created.Compare(b.action.Route.Created),
		strings.Compare(a.key, b.key),
		cmp.Compare(a.action.RuleIndex, b.action.RuleIndex),
		cmp.Compare(a.match, b.match),
	)
}

func compileGRPCRule[B any](r *GRPCRoute[B], i int) ([]*grpcEntry[B], error) {
	rule := &r.Rules[i]
	var errs []error
	a := &GRPCAction[B]{Route: r.Meta, RuleIndex: i, RuleName: rule.Name, Filters: slices.Clone(rule.Filters)}
	if err := checkBackends(rule.Backends); err != nil {
		errs = append(errs, err)
	}
	a.be = newBackends(rule.Backends)

	matches := rule.Matches
	if len(matches) == 0 {
		matches = []GRPCMatch{{}}
	}
	var entries []*grpcEntry[B]
	for mi, m := range matches {
		e := &grpcEntry[B]{action: a, svcKind: valueAny, methKind: valueAny, service: m.Service, method: m.Method, key: r.Meta.String(), match: mi}
		var merrs []error
		switch m.Type {
		case "", MatchExact:
			for _, v := range []string{m.Service, m.Method} {
				if strings.Contains(v, "/") {
					merrs = append(merrs, fmt.Errorf("exact value %q contains \"/\"", v))
				}
			}
			if m.Service != "" {
				e.svcKind = valueExact
			}
			if m.Method != "" {
				e.methKind = valueExact
			}
		case MatchRegularExpression:
			var err error
			if m.Service != "" {
				e.svcKind = valueRegex
				if e.svcRE, err = compileRE(m.Service); err != nil {
					merrs = append(merrs, fmt.Errorf("service: %w", err))
				}
			}
			if m.Method != "" {
				e.methKind = valueRegex
				if e.methRE, err = compileRE(m.Method); err != nil {
					merrs = append(merrs, fmt.Errorf("method: %w", err))
				}
			}
		default:
			merrs = append(merrs, fmt.Errorf("unknown type %q", m.Type))
		}
		if m.Type != "" && m.Service == "" && m.Method == "" {
			merrs = append(merrs, errors.New("a method match needs a service or a method"))
		}
		hs, err := compileHeaderMatches(m.Headers)
		if err != nil {
			merrs = append(merrs, err)
		}
		e.headers = hs
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
		f.RequestMirror = f.RequestMirror.clone()
		counts[f.Type]++
		set := 0
		for _, p := range []bool{f.RequestHeaderModifier != nil, f.ResponseHeaderModifier != nil, f.RequestMirror != nil} {
			if p {
				set++
			}
		}
		var err error
		switch f.Type {
		case RequestHeaderModifier:
			if err = present(f.RequestHeaderModifier != nil, set); err == nil {
				err = f.RequestHeaderModifier.check()
				a.RequestHeaders = f.RequestHeaderModifier
			}
		case ResponseHeaderModifier:
			if err = present(f.ResponseHeaderModifier != nil, set); err == nil {
				err = f.ResponseHeaderModifier.check()
				a.ResponseHeaders = f.ResponseHeaderModifier
			}
		case RequestMirror:
			if err = present(f.RequestMirror != nil, set); err == nil {
				err = f.RequestMirror.check()
				a.Mirrors = append(a.Mirrors, *f.RequestMirror)
			}
		default:
			err = fmt.Errorf("unsupported type %q for a gRPC route", f.Type)
		}
		if err != nil {
			errs = append(errs, wrap(fmt.Sprintf("filter %d (%s)", fi, f.Type), err))
		}
	}
	for _, t := range []FilterType{RequestHeaderModifier, ResponseHeaderModifier} {
		if counts[t] > 1 {
			errs = append(errs, fmt.Errorf("filter %s given %d times: at most once", t, counts[t]))
		}
	}
	return entries, errors.Join(errs...)
}

// grpcBucket holds the sorted entries of one hostname: those with an
// exact service and method by "/{service}/{method}", the others with an
// exact service by service, the rest in a list. Each keeps the
// precedence order, and the three are tried in that order, which is the
// precedence order for any one call.
type grpcBucket[B any] struct {
	full    map[string][]*grpcEntry[B]
	service map[string][]*grpcEntry[B]
	rest    []*grpcEntry[B]
}

func newGRPCBucket[B any](es []*grpcEntry[B]) *grpcBucket[B] {
	b := &grpcBucket[B]{full: map[string][]*grpcEntry[B]{}, service: map[string][]*grpcEntry[B]{}}
	for _, e := range es {
		switch {
		case e.svcKind == valueExact && e.methKind == valueExact:
			k := "/" + e.service + "/" + e.method
			b.full[k] = append(b.full[k], e)
		case e.svcKind == valueExact:
			b.service[e.service] = append(b.service[e.service], e)
		default:
			b.rest = append(b.rest, e)
		}
	}
	return b
}

// MatchGRPC finds the rule for a gRPC call and picks its backend with
// rnd. host is the :authority; path the call's "/{service}/{method}";
// header may be nil. A path of another form matches only rules without
// service and method matches.
//
// Precedence, first match wins: hostnames as for MatchHTTP; then an
// Exact service (longest first), a RegularExpression service, none; the
// same for the method; more header matches; the older route, then
// "{namespace}/{name}", then rule and match order.
//
// It allocates nothing unless a header is sent several times, the host
// has upper case, or a regular expression is evaluated.
func (t *Table[B]) MatchGRPC(host, path string, header Headers, rnd uint64) GRPCResult[B] {
	host = normalHost(host)
	c := &callView{path: path, header: header}
	if rest, ok := strings.CutPrefix(path, "/"); ok {
		if svc, meth, ok := strings.Cut(rest, "/"); ok && svc != "" && meth != "" && !strings.Contains(meth, "/") {
			c.service, c.method, c.valid = svc, meth, true
		}
	}
	if t = t.forHost(host); t == nil {
		return GRPCResult[B]{}
	}
	e := t.matchGRPC(host, c)
	if e == nil {
		return GRPCResult[B]{}
	}
	res := GRPCResult[B]{Action: e.action}
	res.Backend, res.HasBackend = e.action.Pick(rnd)
	return res
}

type callView struct {
	path, service, method string
	valid                 bool
	header                Headers
}

func (t *Table[B]) matchGRPC(host string, c *callView) *grpcEntry[B] {
	if b, ok := t.grpc.exact[host]; ok {
		if e := b.match(c); e != nil {
			return e
		}
	}
	if len(t.grpc.wild) > 0 {
		for i := 1; i < len(host); i++ {
			if host[i] != '.' {
				continue
			}
			if b, ok := t.grpc.wild[host[i:]]; ok {
				if e := b.match(c); e != nil {
					return e
				}
			}
		}
	}
	return t.grpc.any.match(c)
}

func (b *grpcBucket[B]) match(c *callView) *grpcEntry[B] {
	if c.valid {
		for _, e := range b.full[c.path] {
			if e.ok(c) {
				return e
			}
		}
		for _, e := range b.service[c.service] {
			if e.ok(c) {
				return e
			}
		}
	}
	for _, e := range b.rest {
		if e.ok(c) {
			return e
		}
	}
	return nil
}

func (e *grpcEntry[B]) ok(c *callView) bool {
	if e.svcKind != valueAny || e.methKind != valueAny {
		if !c.valid {
			return false
		}
		if !kindOK(e.svcKind, e.service, e.svcRE, c.service) || !kindOK(e.methKind, e.method, e.methRE, c.method) {
			return false
		}
	}
	for i := range e.headers {
		h := &e.headers[i]
		v, found := headerValue(c.header, h.name)
		if !found || !valueOK(h.value, h.re, v) {
			return false
		}
	}
	return true
}

func kindOK(k valueKind, want string, re *regexp.Regexp, v string) bool {
	switch k {
	case valueExact:
		return v == want
	case valueRegex:
		return re.MatchString(v)
	}
	return true
}
