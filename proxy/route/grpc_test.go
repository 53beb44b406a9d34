package route

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func grt(name string, hosts []string, ms ...GRPCMatch) GRPCRoute[string] {
	return GRPCRoute[string]{Meta: Meta{Namespace: "ns", Name: name, Created: t0}, Hostnames: hosts,
		Rules: []GRPCRule[string]{{Matches: ms, Backends: to(name)}}}
}

func gotGRPC(tb *Table[string], host, path string, h http.Header) string {
	res := tb.MatchGRPC(host, path, h, 0)
	switch {
	case res.Action == nil:
		return "404"
	case !res.HasBackend:
		return "unavailable"
	}
	return res.Backend
}

// TestGRPCPrecedence: hostname, then the most characters in a matching
// service, then method (Exact before RegularExpression before none), then
// header matches, then route age and name.
func TestGRPCPrecedence(t *testing.T) {
	re := MatchRegularExpression
	tb := mustNew(t, Spec[string]{GRPC: []GRPCRoute[string]{
		grt("any", nil),
		grt("method-only", nil, GRPCMatch{Method: "Get"}),
		grt("svc", nil, GRPCMatch{Service: "pkg.Users"}),
		grt("svc-long", nil, GRPCMatch{Service: "pkg.v2.Users"}),
		grt("svc-method", nil, GRPCMatch{Service: "pkg.Users", Method: "Get"}),
		grt("svc-method-hdr", nil, GRPCMatch{Service: "pkg.Users", Method: "Get", Headers: []HeaderMatch{{Name: "x-canary", Value: "1"}}}),
		grt("svc-method-re", nil, GRPCMatch{Type: re, Service: `pkg\..*`, Method: "List.*"}),
		grt("svc-re", nil, GRPCMatch{Type: re, Service: `pkg\..*`}),
		grt("host", []string{"api.example.com"}, GRPCMatch{Service: "pkg.Other"}),
	}})
	canary := http.Header{"X-Canary": {"1"}}
	for _, c := range []struct {
		host, path string
		h          http.Header
		want       string
	}{
		{"", "/pkg.Users/Get", canary, "svc-method-hdr"},
		{"", "/pkg.Users/Get", nil, "svc-method"},
		// An Exact service beats a RegularExpression one; with the same
		// service pattern, a method match beats none.
		{"", "/pkg.Users/ListAll", nil, "svc"},
		{"", "/pkg.Orders/ListAll", nil, "svc-method-re"},
		{"", "/pkg.Users/Delete", nil, "svc"},
		{"", "/pkg.v2.Users/Get", nil, "svc-long"},
		{"", "/pkg.Orders/Get", nil, "svc-re"},
		{"", "/other.Svc/Get", nil, "method-only"},
		{"", "/other.Svc/Put", nil, "any"},
		{"api.example.com:443", "/pkg.Other/X", nil, "host"},
		// The host's routes first, then the others.
		{"api.example.com", "/pkg.Users/Get", nil, "svc-method"},
		{"", "/pkg.Other/X", nil, "svc-re"},
		// Not a gRPC path: only the rule without service or method.
		{"", "/pkg.Users", nil, "any"},
		{"", "/pkg.Users/Get/x", nil, "any"},
		{"", "", nil, "any"},
	} {
		if g := gotGRPC(tb, c.host, c.path, c.h); g != c.want {
			t.Errorf("%s %s %v: got %s, want %s", c.host, c.path, c.h, g, c.want)
		}
	}

	// Ties: the older route, then the name.
	a, b := grt("a", nil, GRPCMatch{Service: "s"}), grt("b", nil, GRPCMatch{Service: "s"})
	b.Created = t0.Add(-time.Minute)
	tb = mustNew(t, Spec[string]{GRPC: []GRPCRoute[string]{a, b}})
	if g := gotGRPC(tb, "", "/s/m", nil); g != "b" {
		t.Errorf("older route: got %s, want b", g)
	}
	b.Created = t0
	tb = mustNew(t, Spec[string]{GRPC: []GRPCRoute[string]{b, a}})
	if g := gotGRPC(tb, "", "/s/m", nil); g != "a" {
		t.Errorf("same age: got %s, want a (ns/a < ns/b)", g)
	}
}

func TestGRPCRouteSeparateFromHTTP(t *testing.T) {
	tb := mustNew(t, Spec[string]{
		HTTP: []HTTPRoute[string]{rt("http", nil, []HTTPMatch{prefix("/")})},
		GRPC: []GRPCRoute[string]{grt("grpc", nil, GRPCMatch{Service: "s"})},
	})
	if g := got(tb, req{path: "/s/m"}); g != "http" {
		t.Errorf("MatchHTTP: %s", g)
	}
	if g := gotGRPC(tb, "", "/t/m", nil); g != "404" {
		t.Errorf("MatchGRPC of no gRPC rule: %s", g)
	}
	r := grt("none", nil)
	r.Rules[0].Backends = []Backend[string]{{Ref: "x", Weight: 0}}
	tb = mustNew(t, Spec[string]{GRPC: []GRPCRoute[string]{r}})
	if g := gotGRPC(tb, "", "/t/m", nil); g != "unavailable" {
		t.Errorf("weights all 0: %s, want unavailable", g)
	}
}

func TestGRPCFiltersAndErrors(t *testing.T) {
	r := grt("r", nil)
	r.Rules[0].Filters = []GRPCFilter[string]{
		{Type: RequestHeaderModifier, RequestHeaderModifier: &HeaderModifier{Add: []Header{{Name: "x-a", Value: "1"}}}},
		{Type: ResponseHeaderModifier, ResponseHeaderModifier: &HeaderModifier{Remove: []string{"x-b"}}},
		{Type: RequestMirror, RequestMirror: &Mirror[string]{Backend: "m"}},
	}
	tb := mustNew(t, Spec[string]{GRPC: []GRPCRoute[string]{r}})
	res := tb.MatchGRPC("h", "/a/b", nil, 0)
	if a := res.Action; a == nil || a.RequestHeaders == nil || a.ResponseHeaders == nil || len(a.Mirrors) != 1 || len(a.Backends()) != 1 {
		t.Fatalf("action %+v", a)
	}

	for _, c := range []struct {
		m    GRPCMatch
		f    []GRPCFilter[string]
		want string
	}{
		{GRPCMatch{Type: MatchRegularExpression}, nil, "needs a service or a method"},
		{GRPCMatch{Method: "a/b"}, nil, `exact value "a/b"`},
		{GRPCMatch{Type: MatchRegularExpression, Method: "("}, nil, `method: regular expression "("`},
		{GRPCMatch{Type: "Prefix", Service: "s"}, nil, `unknown type "Prefix"`},
		{GRPCMatch{Headers: []HeaderMatch{{Name: ":path", Value: "x"}}}, nil, `":path" is not a valid header name`},
		{GRPCMatch{}, []GRPCFilter[string]{{Type: URLRewrite}}, `unsupported type "URLRewrite" for a gRPC route`},
		{GRPCMatch{}, []GRPCFilter[string]{{Type: RequestMirror}}, "filter 0 (RequestMirror): its configuration field is not set"},
	} {
		r := grt("r", nil, c.m)
		r.Rules[0].Filters = c.f
		_, err := New(Spec[string]{GRPC: []GRPCRoute[string]{r}})
		if err == nil || !strings.Contains(err.Error(), `grpcroute "ns/r" rule 0: `) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v %v: error %v, want one naming the route and rule, with %q", c.m, c.f, err, c.want)
		}
	}
	_, err := New(Spec[string]{GRPC: []GRPCRoute[string]{grt("r", nil), grt("r", nil)}})
	if err == nil || !strings.Contains(err.Error(), "name used by another route") {
		t.Errorf("duplicate name: %v", err)
	}
}
