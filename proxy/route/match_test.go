package route

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// to is a backend list of one backend, ref, of weight 1.
func to(ref string) []Backend[string] { return []Backend[string]{{Ref: ref, Weight: 1}} }

// rt is an HTTP route named name, created at t0, with one rule per match
// list, each to the backend "name" (one rule) or "name/i".
func rt(name string, hosts []string, rules ...[]HTTPMatch) HTTPRoute[string] {
	r := HTTPRoute[string]{Meta: Meta{Namespace: "ns", Name: name, Created: t0}, Hostnames: hosts}
	for i, ms := range rules {
		ref := name
		if len(rules) > 1 {
			ref = fmt.Sprintf("%s/%d", name, i)
		}
		r.Rules = append(r.Rules, HTTPRule[string]{Matches: ms, Backends: to(ref)})
	}
	return r
}

func exact(p string) HTTPMatch  { return HTTPMatch{Path: PathMatch{Type: PathExact, Value: p}} }
func prefix(p string) HTTPMatch { return HTTPMatch{Path: PathMatch{Type: PathPrefix, Value: p}} }
func regex(p string) HTTPMatch {
	return HTTPMatch{Path: PathMatch{Type: PathRegularExpression, Value: p}}
}

func mustNew(t testing.TB, s Spec[string]) *Table[string] {
	t.Helper()
	tb, err := New(s)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return tb
}

// req is a request to match.
type req struct {
	host, method, path string
	header             http.Header
	query              string
}

// got is the backend MatchHTTP picks for r, or "404" or "500".
func got(tb *Table[string], r req) string {
	res := tb.MatchHTTP(r.host, cmpOr(r.method, "GET"), r.path, r.header, r.query, 0)
	if s := res.Status(); s != 0 {
		return fmt.Sprint(s)
	}
	return res.Backend
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

type matchCase struct {
	r    req
	want string
}

func checkCases(t *testing.T, tb *Table[string], cases []matchCase) {
	t.Helper()
	for _, c := range cases {
		if g := got(tb, c.r); g != c.want {
			t.Errorf("%+v: got %s, want %s", c.r, g, c.want)
		}
	}
}

func TestPathMatch(t *testing.T) {
	tb := mustNew(t, Spec[string]{HTTP: []HTTPRoute[string]{
		rt("exact", nil, []HTTPMatch{exact("/abc")}),
		rt("prefix", nil, []HTTPMatch{prefix("/foo")}),
		rt("slash", nil, []HTTPMatch{prefix("/bar/")}),
		rt("regex", nil, []HTTPMatch{regex(`/img/[0-9]+\.png`)}),
	}})
	checkCases(t, tb, []matchCase{
		// Exact: case-sensitive, no trailing slash, no longer path.
		{req{path: "/abc"}, "exact"},
		{req{path: "/abc/"}, "404"},
		{req{path: "/Abc"}, "404"},
		{req{path: "/abcd"}, "404"},
		// PathPrefix: element by element.
		{req{path: "/foo"}, "prefix"},
		{req{path: "/foo/"}, "prefix"},
		{req{path: "/foo/bar"}, "prefix"},
		{req{path: "/foo//bar"}, "prefix"},
		{req{path: "/foobar"}, "404"},
		{req{path: "/fo"}, "404"},
		{req{path: "/Foo"}, "404"},
		// A prefix's trailing slash is ignored.
		{req{path: "/bar"}, "slash"},
		{req{path: "/bar/x/y"}, "slash"},
		{req{path: "/barx"}, "404"},
		// Regular expressions match the whole path.
		{req{path: "/img/12.png"}, "regex"},
		{req{path: "/img/12.png/x"}, "404"},
		{req{path: "/x/img/12.png"}, "404"},
		// Not a path: only regular expressions could match.
		{req{path: "*"}, "404"},
		{req{path: ""}, "404"},
	})
}

func TestDefaultMatchIsPrefixRoot(t *testing.T) {
	tb := mustNew(t, Spec[string]{HTTP: []HTTPRoute[string]{
		{Meta: Meta{Name: "all"}, Rules: []HTTPRule[string]{{Backends: to("all")}}},
	}})
	checkCases(t, tb, []matchCase{
		{req{path: "/"}, "all"},
		{req{path: "/anything/at/all", method: "DELETE"}, "all"},
		{req{host: "any.host:8080", path: "/x"}, "all"},
	})
}

func TestHostnames(t *testing.T) {
	all := []HTTPMatch{prefix("/")}
	tb := mustNew(t, Spec[string]{HTTP: []HTTPRoute[string]{
		rt("exact", []string{"foo.example.com"}, all),
		rt("wild", []string{"*.example.com"}, all),
		rt("wild-b", []string{"*.b.example.com"}, all),
		rt("other", []string{"example.com", "www.example.org"}, all),
		rt("none", nil, []HTTPMatch{prefix("/none")}),
	}})
	checkCases(t, tb, []matchCase{
		{req{host: "foo.example.com", path: "/"}, "exact"},
		// A port, a trailing dot and upper case are ignored.
		{req{host: "foo.example.com:8443", path: "/"}, "exact"},
		{req{host: "FOO.Example.COM", path: "/"}, "exact"},
		{req{host: "foo.example.com.", path: "/"}, "exact"},
		// The wildcard stands for one or more labels, never none.
		{req{host: "bar.example.com", path: "/"}, "wild"},
		{req{host: "a.bar.example.com", path: "/"}, "wild"},
		{req{host: "example.com", path: "/"}, "other"},
		{req{host: "www.example.org", path: "/"}, "other"},
		// The longest matching wildcard first.
		{req{host: "x.b.example.com", path: "/"}, "wild-b"},
		{req{host: "y.x.b.example.com:80", path: "/"}, "wild-b"},
		{req{host: "b.example.com", path: "/"}, "wild"},
		// Routes without hostnames take the rest.
		{req{host: "example.net", path: "/none/x"}, "none"},
		{req{host: "example.net", path: "/"}, "404"},
		{req{host: "10.0.0.1:80", path: "/none"}, "none"},
		{req{host: "[::1]:80", path: "/none"}, "none"},
		{req{host: "", path: "/none"}, "none"},
		{req{host: ".example.com", path: "/"}, "404"},
		// A more specific hostname without a matching rule falls through
		// to the less specific ones.
		{req{host: "foo.example.com", path: "/none"}, "exact"},
	})

	// Fall-through when the exact hostname's rules do not match.
	tb = mustNew(t, Spec[string]{HTTP: []HTTPRoute[string]{
		rt("exact", []string{"foo.example.com"}, []HTTPMatch{prefix("/a")}),
		rt("wild", []string{"*.example.com"}, []HTTPMatch{prefix("/b")}),
		rt("none", nil, []HTTPMatch{prefix("/")}),
	}})
	checkCases(t, tb, []matchCase{
		{req{host: "foo.example.com", path: "/a"}, "exact"},
		{req{host: "foo.example.com", path: "/b"}, "wild"},
		{req{host: "foo.example.com", path: "/c"}, "none"},
		// The hostname goes before the path: the exact host's "/" beats
		// the wildcard's longer prefix.
	})
	tb = mustNew(t, Spec[string]{HTTP: []HTTPRoute[string]{
		rt("exact", []string{"foo.example.com"}, []HTTPMatch{prefix("/")}),
		rt("wild", []string{"*.example.com"}, []HTTPMatch{exact("/a/b/c")}),
	}})
	checkCases(t, tb, []matchCase{{req{host: "foo.example.com", path: "/a/b/c"}, "exact"}})
}

// TestPrecedence takes its cases from the API's text: across the rules of
// the routes of a hostname, an Exact path, then the longest PathPrefix,
// then a method match, the most header matches, the most query matches;
// then the oldest route, then "{namespace}/{name}"; then the first rule.
func TestPrecedence(t *testing.T) {
	hv := func(m HTTPMatch, kv ...string) HTTPMatch {
		for i := 0; i < len(kv); i += 2 {
			m.Headers = append(m.Headers, HeaderMatch{Name: kv[i], Value: kv[i+1]})
		}
		return m
	}
	qv := func(m HTTPMatch, kv ...string) HTTPMatch {
		for i := 0; i < len(kv); i += 2 {
			m.QueryParams = append(m.QueryParams, QueryParamMatch{Name: kv[i], Value: kv[i+1]})
		}
		return m
	}
	meth := func(m HTTPMatch, method string) HTTPMatch { m.Method = method; return m }
	h := http.Header{"Version": {"v2"}, "Env": {"canary"}}

	t.Run("path", func(t *testing.T) {
		tb := mustNew(t, Spec[string]{HTTP: []HTTPRoute[string]{
			// Listed in the opposite of precedence order.
			rt("regex", nil, []HTTPMatch{regex(`/.*`)}),
			rt("root", nil, []HTTPMatch{prefix("/")}),
			rt("short", nil, []HTTPMatch{prefix("/foo")}),
			rt("long", nil, []HTTPMatch{prefix("/foo/bar")}),
			// A method and headers do not beat a longer prefix.
			rt("shortH", nil, []HTTPMatch{meth(hv(prefix("/foo"), "version", "v2"), "GET")}),
			rt("exact", nil, []HTTPMatch{exact("/foo/bar")}),
		}})
		checkCases(t, tb, []matchCase{
			{req{path: "/foo/bar", header: h}, "exact"},
			{req{path: "/foo/bar/", header: h}, "long"},
			{req{path: "/foo/bar/baz", header: h}, "long"},
			{req{path: "/foo/baz", header: h}, "shortH"},
			{req{path: "/foo/baz"}, "short"},
			{req{path: "/elsewhere"}, "root"},
		})
		// The prefix goes before a regular expression, however long.
		tb = mustNew(t, Spec[string]{HTTP: []HTTPRoute[string]{
			rt("regex", nil, []HTTPMatch{regex(`/foo/bar/baz`)}),
			rt("root", nil, []HTTPMatch{prefix("/")}),
		}})
		checkCases(t, tb, []matchCase{{req{path: "/foo/bar/baz"}, "root"}})
		tb = mustNew(t, Spec[string]{HTTP: []HTTPRoute[string]{
			rt("regex-short", nil, []HTTPMatch{regex(`/.*`)}),
			rt("regex-long", nil, []HTTPMatch{regex(`/foo/.*`)}),
		}})
		checkCases(t, tb, []matchCase{{req{path: "/foo/x"}, "regex-long"}, {req{path: "/bar"}, "regex-short"}})
	})

	t.Run("method headers query", func(t *testing.T) {
		tb := mustNew(t, Spec[string]{HTTP: []HTTPRoute[string]{
			rt("plain", nil, []HTTPMatch{prefix("/")}),
			rt("query2", nil, []HTTPMatch{qv(prefix("/"), "a", "1", "b", "2")}),
			rt("query1", nil, []HTTPMatch{qv(prefix("/"), "a", "1")}),
			rt("header1", nil, []HTTPMatch{hv(prefix("/"), "version", "v2")}),
			rt("header2", nil, []HTTPMatch{hv(prefix("/"), "version", "v2", "env", "canary")}),
			// More headers beat more query parameters, and a method
			// beats both.
			rt("header1query2", nil, []HTTPMatch{qv(hv(prefix("/"), "env", "canary"), "a", "1", "b", "2")}),
			rt("method", nil, []HTTPMatch{meth(prefix("/"), "POST")}),
		}})
		checkCases(t, tb, []matchCase{
			{req{path: "/", method: "POST", header: h, query: "a=1&b=2"}, "method"},
			{req{path: "/", header: h, query: "a=1&b=2"}, "header2"},
			{req{path: "/", header: http.Header{"Env": {"canary"}}, query: "a=1&b=2"}, "header1query2"},
			{req{path: "/", header: http.Header{"Version": {"v2"}}, query: "a=1&b=2"}, "header1"},
			{req{path: "/", query: "b=2&a=1"}, "query2"},
			{req{path: "/", query: "a=1"}, "query1"},
			{req{path: "/", query: "a=2"}, "plain"},
		})
	})

	t.Run("ties", func(t *testing.T) {
		older := rt("zzz", nil, []HTTPMatch{prefix("/")})
		older.Created = t0.Add(-time.Hour)
		other := rt("aaa", nil, []HTTPMatch{prefix("/")})
		other.Namespace = "other"
		tb := mustNew(t, Spec[string]{HTTP: []HTTPRoute[string]{rt("bbb", nil, []HTTPMatch{prefix("/")}), rt("aaa", nil, []HTTPMatch{prefix("/")}), other, older}})
		checkCases(t, tb, []matchCase{{req{path: "/"}, "zzz"}})
		tb = mustNew(t, Spec[string]{HTTP: []HTTPRoute[string]{other, rt("bbb", nil, []HTTPMatch{prefix("/")}), rt("aaa", nil, []HTTPMatch{prefix("/")})}})
		// "ns/aaa" < "ns/bbb" < "other/aaa".
		checkCases(t, tb, []matchCase{{req{path: "/"}, "aaa"}})
		// Within a route the first rule wins.
		tb = mustNew(t, Spec[string]{HTTP: []HTTPRoute[string]{rt("r", nil, []HTTPMatch{prefix("/a")}, []HTTPMatch{prefix("/a")}, []HTTPMatch{prefix("/a/b")})}})
		checkCases(t, tb, []matchCase{{req{path: "/a"}, "r/0"}, {req{path: "/a/b"}, "r/2"}})
	})

	t.Run("matches are ORed", func(t *testing.T) {
		// The API's example: path prefix /foo AND version: v2, OR path
		// prefix /v2/foo.
		tb := mustNew(t, Spec[string]{HTTP: []HTTPRoute[string]{
			rt("r", nil, []HTTPMatch{hv(prefix("/foo"), "version", "v2"), prefix("/v2/foo")}),
		}})
		checkCases(t, tb, []matchCase{
			{req{path: "/foo/x", header: h}, "r"},
			{req{path: "/foo/x"}, "404"},
			{req{path: "/v2/foo"}, "r"},
			{req{path: "/v2"}, "404"},
		})
		// Each match of a rule takes its own place in the order: the
		// rule's exact match beats another route's prefix, its "/" match
		// does not beat the other's "/a".
		tb = mustNew(t, Spec[string]{HTTP: []HTTPRoute[string]{
			rt("a", nil, []HTTPMatch{prefix("/a")}),
			rt("r", nil, []HTTPMatch{exact("/a/x"), prefix("/")}),
		}})
		checkCases(t, tb, []matchCase{{req{path: "/a/x"}, "r"}, {req{path: "/a/y"}, "a"}, {req{path: "/b"}, "r"}})
	})
}

func TestHeaderAndQueryMatch(t *testing.T) {
	m := HTTPMatch{
		Method: "GET",
		Headers: []HeaderMatch{
			{Name: "x-Version", Value: "v2"},
			{Name: "X-VERSION", Value: "ignored: only the first entry of a name counts"},
			{Name: "x-user", Type: MatchRegularExpression, Value: `user-[0-9]+`},
		},
		QueryParams: []QueryParamMatch{
			{Name: "tier", Value: "gold"},
			{Name: "tier", Value: "ignored"},
			{Name: "id", Type: MatchRegularExpression, Value: `[a-f]+`},
		},
	}
	tb := mustNew(t, Spec[string]{HTTP: []HTTPRoute[string]{rt("r", nil, []HTTPMatch{m})}})
	ok := http.Header{"X-Version": {"v2"}, "X-User": {"user-42"}}
	checkCases(t, tb, []matchCase{
		{req{path: "/", header: ok, query: "tier=gold&id=abc"}, "r"},
		{req{path: "/", header: ok, query: "id=abc&tier=gold&tier=silver"}, "r"},
		// The first value of a parameter counts.
		{req{path: "/", header: ok, query: "tier=silver&tier=gold&id=abc"}, "404"},
		// Escapes are decoded; names are case-sensitive.
		{req{path: "/", header: ok, query: "ti%65r=g%6Fld&id=abc"}, "r"},
		{req{path: "/", header: ok, query: "Tier=gold&id=abc"}, "404"},
		{req{path: "/", header: ok, query: "tier=gold&id=abcx"}, "404"},
		{req{path: "/", header: ok, query: "tier=gold"}, "404"},
		{req{path: "/", method: "POST", header: ok, query: "tier=gold&id=abc"}, "404"},
		// Regular expressions match whole values.
		{req{path: "/", header: http.Header{"X-Version": {"v2"}, "X-User": {"user-42x"}}, query: "tier=gold&id=abc"}, "404"},
		{req{path: "/", header: http.Header{"X-Version": {"V2"}, "X-User": {"user-1"}}, query: "tier=gold&id=abc"}, "404"},
		{req{path: "/", header: http.Header{"X-User": {"user-1"}}, query: "tier=gold&id=abc"}, "404"},
		// A header sent twice is matched on its values joined by ",".
		{req{path: "/", header: http.Header{"X-Version": {"v2", "v3"}, "X-User": {"user-1"}}, query: "tier=gold&id=abc"}, "404"},
		{req{path: "/", header: http.Header{"X-Version": {"v2"}, "X-User": {"user-1", "2"}}, query: "tier=gold&id=abc"}, "404"},
	})
	m2 := HTTPMatch{Headers: []HeaderMatch{{Name: "accept", Value: "a,b"}}}
	tb = mustNew(t, Spec[string]{HTTP: []HTTPRoute[string]{rt("r", nil, []HTTPMatch{m2})}})
	checkCases(t, tb, []matchCase{
		{req{path: "/", header: http.Header{"Accept": {"a", "b"}}}, "r"},
		{req{path: "/", header: http.Header{"Accept": {"a,b"}}}, "r"},
		{req{path: "/", header: nil}, "404"},
	})
}

func TestBackendPick(t *testing.T) {
	r := rt("r", nil, nil)
	r.Rules = []HTTPRule[string]{{Backends: []Backend[string]{{Ref: "a", Weight: 3}, {Ref: "off", Weight: 0}, {Ref: "b", Weight: 1}}}}
	tb := mustNew(t, Spec[string]{HTTP: []HTTPRoute[string]{r}})
	counts := map[string]int{}
	for rnd := uint64(0); rnd < 400; rnd++ {
		res := tb.MatchHTTP("h", "GET", "/", nil, "", rnd*7919)
		if !res.HasBackend || res.Status() != 0 {
			t.Fatalf("rnd %d: no backend (status %d)", rnd, res.Status())
		}
		counts[res.Backend]++
	}
	if counts["a"] != 300 || counts["b"] != 100 || counts["off"] != 0 {
		t.Errorf("picks over 400 consecutive residues: %v, want a 300, b 100, off 0", counts)
	}
	res := tb.MatchHTTP("h", "GET", "/", nil, "", ^uint64(0))
	if res.Backend == "off" {
		t.Errorf("the largest rnd picked the backend of weight 0")
	}
	if bs := res.Action.Backends(); len(bs) != 3 || bs[1].Ref != "off" {
		t.Errorf("Backends() = %v, want the three given", bs)
	}

	// All weights 0, or no backends: matched, but 500.
	for _, bs := range [][]Backend[string]{{{Ref: "x"}, {Ref: "y"}}, nil} {
		r.Rules = []HTTPRule[string]{{Backends: bs}}
		tb = mustNew(t, Spec[string]{HTTP: []HTTPRoute[string]{r}})
		res := tb.MatchHTTP("h", "GET", "/", nil, "", 5)
		if res.Action == nil || res.HasBackend || res.Status() != http.StatusInternalServerError {
			t.Errorf("backends %v: action %v, has backend %v, status %d; want the rule, none, 500", bs, res.Action != nil, res.HasBackend, res.Status())
		}
	}
	// No rule: 404.
	tb = mustNew(t, Spec[string]{})
	if res := tb.MatchHTTP("h", "GET", "/", nil, "", 0); res.Action != nil || res.Status() != http.StatusNotFound {
		t.Errorf("empty table: status %d, want 404", res.Status())
	}
}

func TestResultAction(t *testing.T) {
	rd := &Redirect{Scheme: "https"}
	r := HTTPRoute[string]{Meta: Meta{Namespace: "ns", Name: "r"}, Rules: []HTTPRule[string]{
		{Name: "plain", Matches: []HTTPMatch{prefix("/api/")}, Backends: to("api"), Filters: []HTTPFilter[string]{
			{Type: RequestHeaderModifier, RequestHeaderModifier: &HeaderModifier{Set: []Header{{Name: "x-a", Value: "1"}}}},
			{Type: RequestMirror, RequestMirror: &Mirror[string]{Backend: "m1"}},
			{Type: RequestMirror, RequestMirror: &Mirror[string]{Backend: "m2"}},
		}},
		{Name: "moved", Matches: []HTTPMatch{prefix("/old")}, Filters: []HTTPFilter[string]{{Type: RequestRedirect, RequestRedirect: rd}}},
	}}
	tb := mustNew(t, Spec[string]{HTTP: []HTTPRoute[string]{r}})
	res := tb.MatchHTTP("h", "GET", "/api/v1", nil, "", 0)
	a := res.Action
	if a == nil || a.RuleName != "plain" || a.RuleIndex != 0 || a.Route.String() != "ns/r" {
		t.Fatalf("action %+v: want rule 0 \"plain\" of ns/r", a)
	}
	if res.MatchedPrefix != "/api" || a.RequestHeaders == nil || len(a.Mirrors) != 2 || a.Mirrors[1].Backend != "m2" || len(a.Filters) != 3 {
		t.Errorf("matched prefix %q, request headers %v, mirrors %v, filters %d", res.MatchedPrefix, a.RequestHeaders, a.Mirrors, len(a.Filters))
	}
	res = tb.MatchHTTP("h", "GET", "/old/x", nil, "", 0)
	if res.Status() != http.StatusFound || res.Action.Redirect.Scheme != "https" {
		t.Errorf("redirect: status %d, want the default 302", res.Status())
	}
	if rd.StatusCode != 0 {
		t.Errorf("New changed the spec's redirect")
	}
	// The table does not share the spec's filters.
	r.Rules[0].Filters[0].RequestHeaderModifier.Set[0].Value = "changed"
	rd.Scheme = "http"
	if v := a.RequestHeaders.Set[0].Value; v != "1" || res.Action.Redirect.Scheme != "https" || a.Filters[0].RequestHeaderModifier != a.RequestHeaders {
		t.Errorf("after the spec changed: header value %q, redirect scheme %q; filters and their kinds agree: %v", v, res.Action.Redirect.Scheme, a.Filters[0].RequestHeaderModifier == a.RequestHeaders)
	}
	if loc := res.Action.Redirect.Location("http", "h:8080", 8080, "/old/x", "", res.MatchedPrefix); loc != "https://h/old/x" {
		t.Errorf("location %q", loc)
	}
}

func TestErrors(t *testing.T) {
	rule := func(ms []HTTPMatch, fs ...HTTPFilter[string]) HTTPRoute[string] {
		return HTTPRoute[string]{Meta: Meta{Namespace: "ns", Name: "r"}, Rules: []HTTPRule[string]{{Name: "rule-a", Matches: ms, Filters: fs, Backends: to("b")}}}
	}
	pm := func(t PathModifierType, v string) *PathModifier { return &PathModifier{Type: t, Value: v} }
	pct := int32(101)
	cases := []struct {
		route HTTPRoute[string]
		want  string
	}{
		{HTTPRoute[string]{Rules: []HTTPRule[string]{{}}}, "httproute 0: no name"},
		{HTTPRoute[string]{Meta: Meta{Name: "r"}, Hostnames: []string{"Foo.com"}}, `hostname "Foo.com": not a lower-case`},
		{HTTPRoute[string]{Meta: Meta{Name: "r"}, Hostnames: []string{"a.*.com"}}, `hostname "a.*.com"`},
		{HTTPRoute[string]{Meta: Meta{Name: "r"}, Hostnames: []string{"10.0.0.1"}}, "IP addresses are not allowed"},
		{rule([]HTTPMatch{exact("foo")}), `rule 0 ("rule-a"): match 0: path "foo": does not begin with "/"`},
		{rule([]HTTPMatch{prefix("/a//b")}), `path "/a//b": contains "//"`},
		{rule([]HTTPMatch{regex("(")}), `match 0: path: regular expression "("`},
		{rule([]HTTPMatch{{Path: PathMatch{Type: "Glob", Value: "/"}}}), `unknown type "Glob"`},
		{rule([]HTTPMatch{{Method: "get"}}), `method "get": not one of`},
		{rule([]HTTPMatch{{Headers: []HeaderMatch{{Name: "bad name", Value: "x"}}}}), `"bad name" is not a valid header name`},
		{rule([]HTTPMatch{{Headers: []HeaderMatch{{Name: "x", Type: MatchRegularExpression, Value: "["}}}}), `header "x": regular expression`},
		{rule([]HTTPMatch{{QueryParams: []QueryParamMatch{{Name: "", Value: "x"}}}}), "query parameter 0: no name"},
		{rule([]HTTPMatch{{QueryParams: []QueryParamMatch{{Name: "q", Type: "Fuzzy"}}}}), `query parameter "q": unknown type "Fuzzy"`},
		{rule(nil, HTTPFilter[string]{Type: RequestRedirect, RequestRedirect: &Redirect{StatusCode: 305}}), "filter 0 (RequestRedirect): status code 305"},
		{rule(nil, HTTPFilter[string]{Type: RequestRedirect, RequestRedirect: &Redirect{Scheme: "ftp"}}), `scheme "ftp"`},
		{rule(nil, HTTPFilter[string]{Type: RequestRedirect, RequestRedirect: &Redirect{Port: 70000}}), "port 70000"},
		{rule(nil, HTTPFilter[string]{Type: RequestRedirect, RequestRedirect: &Redirect{Hostname: "*.a.com"}}), `hostname "*.a.com"`},
		{rule(nil, HTTPFilter[string]{Type: RequestRedirect}), "its configuration field is not set"},
		{rule(nil, HTTPFilter[string]{Type: URLRewrite, URLRewrite: &Rewrite{}, RequestRedirect: &Redirect{}}), "fields of other filter types are set too"},
		{rule(nil, HTTPFilter[string]{Type: "ExtensionRef"}), `unsupported type "ExtensionRef"`},
		{rule(nil, HTTPFilter[string]{Type: URLRewrite, URLRewrite: &Rewrite{}}, HTTPFilter[string]{Type: RequestRedirect, RequestRedirect: &Redirect{}}), "RequestRedirect and URLRewrite cannot be combined"},
		{rule(nil, HTTPFilter[string]{Type: URLRewrite, URLRewrite: &Rewrite{}}, HTTPFilter[string]{Type: URLRewrite, URLRewrite: &Rewrite{}}), "filter URLRewrite given 2 times"},
		{rule([]HTTPMatch{exact("/a")}, HTTPFilter[string]{Type: URLRewrite, URLRewrite: &Rewrite{Path: pm(ReplacePrefixMatch, "/b")}}), "ReplacePrefixMatch needs every match of the rule to be a PathPrefix match"},
		{rule(nil, HTTPFilter[string]{Type: URLRewrite, URLRewrite: &Rewrite{Path: pm(ReplaceFullPath, "")}}), `path "": does not begin`},
		{rule(nil, HTTPFilter[string]{Type: URLRewrite, URLRewrite: &Rewrite{Path: pm("Regex", "/")}}), `path modifier: unknown type "Regex"`},
		{rule(nil, HTTPFilter[string]{Type: RequestHeaderModifier, RequestHeaderModifier: &HeaderModifier{Set: []Header{{Name: "X-A", Value: "1"}}, Remove: []string{"x-a"}}}), `remove: header "x-a" has another action (set)`},
		{rule(nil, HTTPFilter[string]{Type: ResponseHeaderModifier, ResponseHeaderModifier: &HeaderModifier{Add: []Header{{Name: "X-A", Value: "a\nb"}}}}), "is not a valid header value"},
		{rule(nil, HTTPFilter[string]{Type: RequestMirror, RequestMirror: &Mirror[string]{Percent: &pct}}), "percent 101"},
		{rule(nil, HTTPFilter[string]{Type: RequestMirror, RequestMirror: &Mirror[string]{Fraction: &Fraction{1, 0}}}), "fraction denominator 0: must be above 0"},
		{rule(nil, HTTPFilter[string]{Type: RequestMirror, RequestMirror: &Mirror[string]{Fraction: &Fraction{3, 2}}}), "fraction numerator 3: not within 0 to the denominator 2"},
		{rule(nil, HTTPFilter[string]{Type: RequestMirror, RequestMirror: &Mirror[string]{Percent: new(int32), Fraction: &Fraction{1, 2}}}), "percent and fraction both set"},
		{HTTPRoute[string]{Meta: Meta{Name: "r"}, Rules: []HTTPRule[string]{{Backends: []Backend[string]{{Weight: -1}, {Weight: 1_000_001}}}}}, "backend 1: weight 1000001"},
	}
	for _, c := range cases {
		_, err := New(Spec[string]{HTTP: []HTTPRoute[string]{c.route}})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one containing %q", c.route, err, c.want)
		}
	}

	// Every error at once, each naming its route and rule.
	bad := rule([]HTTPMatch{exact("x"), {Method: "FETCH"}})
	bad.Rules = append(bad.Rules, HTTPRule[string]{Matches: []HTTPMatch{regex("(")}})
	_, err := New(Spec[string]{
		HTTP: []HTTPRoute[string]{bad, rt("r", nil)},
		GRPC: []GRPCRoute[string]{{Meta: Meta{Name: "g"}, Rules: []GRPCRule[string]{{Matches: []GRPCMatch{{Service: "a/b"}}}}}},
	})
	want := []string{
		`httproute "ns/r" rule 0 ("rule-a"): match 0: path "x"`,
		`httproute "ns/r" rule 0 ("rule-a"): match 1: method "FETCH"`,
		`httproute "ns/r" rule 1: match 0: path: regular expression "("`,
		`httproute "ns/r": name used by another route`,
		`grpcroute "/g" rule 0: match 0: exact value "a/b" contains "/"`,
	}
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
}

// TestRegexLiteralPrefix: the literal-prefix shortcut of path regular
// expressions skips no path they match.
func TestRegexLiteralPrefix(t *testing.T) {
	for _, c := range []struct {
		re, path string
		want     bool
	}{
		{`(?i)/FOO/.*`, "/foo/x", true},
		{`/a|/b/c`, "/b/c", true},
		{`/a|/b/c`, "/a", true},
		{`/a|/b/c`, "/b", false},
		{`/img/[0-9]+`, "/img/7", true},
		{`/img/[0-9]+`, "/im/7", false},
		{`.*\.png`, "/x/y.png", true},
		{`^/anchored$`, "/anchored", true},
	} {
		tb := mustNew(t, Spec[string]{HTTP: []HTTPRoute[string]{rt("r", nil, []HTTPMatch{regex(c.re)})}})
		if g := got(tb, req{path: c.path}) == "r"; g != c.want {
			t.Errorf("regex %q on %q: matched %v, want %v", c.re, c.path, g, c.want)
		}
	}
}
