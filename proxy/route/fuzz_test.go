package route

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// fuzzSpec is a table with every kind of hostname, path, method, header
// and query match, overlapping.
func fuzzSpec() Spec[string] {
	hv := func(m HTTPMatch, t ValueMatchType, v string) HTTPMatch {
		m.Headers = append(m.Headers, HeaderMatch{Type: t, Name: "x-a", Value: v})
		return m
	}
	paths := []HTTPMatch{
		exact("/"), exact("/a"), exact("/a/b"), exact("/a/"),
		prefix("/"), prefix("/a"), prefix("/a/b"), prefix("/a/b/"), prefix("/ab"), prefix("/a/b/c"),
		regex(`/a.*`), regex(`/[ab]+`), regex(`(?i)/A/.*`),
		{Path: PathMatch{Value: "/a"}, Method: "POST"},
		hv(prefix("/a"), MatchExact, "1"),
		hv(prefix("/a"), MatchRegularExpression, "[0-9]+"),
		{Path: PathMatch{Value: "/a"}, QueryParams: []QueryParamMatch{{Name: "q", Value: "1"}}},
	}
	var s Spec[string]
	for hi, hosts := range [][]string{{"a.example.com"}, {"*.example.com"}, {"*.b.example.com", "b.example.com"}, nil} {
		for pi, m := range paths {
			name := string(rune('a'+hi)) + string(rune('a'+pi))
			s.HTTP = append(s.HTTP, rt(name, hosts, []HTTPMatch{m}))
		}
	}
	return s
}

// refPrefix is PathPrefix matching by elements: v's elements (a trailing
// "/" ignored) are the first elements of p's.
func refPrefix(v, p string) bool {
	if !strings.HasPrefix(p, "/") {
		return false
	}
	if v == "/" {
		return true
	}
	ve := strings.Split(strings.Trim(v, "/"), "/")
	pe := strings.Split(p[1:], "/")
	return len(pe) >= len(ve) && slices.Equal(pe[:len(ve)], ve)
}

// refMatch is MatchHTTP without the indexes: every bucket of a matching
// hostname, most specific first, all its entries sorted by precedence,
// the first whose path (matched by refPrefix) and conditions match.
func refMatch(tb *Table[string], host string, r *reqView) *httpEntry[string] {
	host = normalHost(host)
	var buckets []*httpBucket[string]
	if b, ok := tb.http.exact[host]; ok {
		buckets = append(buckets, b)
	}
	var wild []string
	for k := range tb.http.wild {
		if strings.HasSuffix(host, k) && len(host) > len(k) {
			wild = append(wild, k)
		}
	}
	slices.SortFunc(wild, func(a, b string) int { return len(b) - len(a) })
	for _, k := range wild {
		buckets = append(buckets, tb.http.wild[k])
	}
	buckets = append(buckets, tb.http.any)
	for _, b := range buckets {
		var all []*httpEntry[string]
		for _, es := range b.exact {
			all = append(all, es...)
		}
		for _, es := range b.prefix {
			all = append(all, es...)
		}
		all = append(all, b.regex...)
		slices.SortFunc(all, compareHTTP[string])
		for _, e := range all {
			var pathOK bool
			switch e.kind {
			case kindExact:
				pathOK = e.path == r.path
			case kindPrefix:
				pathOK = refPrefix(e.path, r.path)
			case kindRegex:
				pathOK = e.re.MatchString(r.path)
			}
			if pathOK && e.ok(r) {
				return e
			}
		}
	}
	return nil
}

// FuzzMatch: matching never panics, agrees with the unindexed reference,
// an Exact route for a path always beats a PathPrefix and a regular
// expression route for it, and a prefix replacement keeps what follows
// the prefix.
func FuzzMatch(f *testing.F) {
	for _, s := range [][5]string{
		{"a.example.com", "GET", "/a/b/c", "1", "q=1"},
		{"x.b.example.com:80", "POST", "/a/", "", ""},
		{"B.Example.COM.", "GET", "/ab", "12", "q=%31"},
		{"[::1]:8080", "GET", "//a//b", "", "a&q=1&q=2"},
		{"", "", "", "", ""},
		{"x..example.com", "GET", "/A/x", "x", ";q=1"},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4])
	}
	fixed, err := New(fuzzSpec())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, host, method, path, hval, query string) {
		h := http.Header{"X-A": {hval}}
		res := fixed.MatchHTTP(host, method, path, h, query, uint64(len(path)))
		want := refMatch(fixed, host, &reqView{method: method, path: path, header: h, query: query})
		switch {
		case (want == nil) != (res.Action == nil):
			t.Fatalf("host %q %s %q: matched %v, reference %v", host, method, path, res.Action != nil, want != nil)
		case want != nil && (want.action != res.Action || (want.kind == kindPrefix) != (res.MatchedPrefix != "")):
			t.Fatalf("host %q %s %q: matched %s rule %d prefix %q, reference %s (%v %q)", host, method, path,
				res.Action.Route, res.Action.RuleIndex, res.MatchedPrefix, want.action.Route, want.kind, want.path)
		}
		if res.MatchedPrefix != "" && !refPrefix(res.MatchedPrefix, path) {
			t.Fatalf("%q: matched prefix %q does not match it", path, res.MatchedPrefix)
		}
		fixed.MatchGRPC(host, path, h, 0)

		if checkPath(path) != nil {
			return
		}
		// A path's Exact route beats its PathPrefix routes and regular
		// expressions, whatever the prefix or the order of the routes.
		cut := len(path)
		if n := len(hval) % 4; n > 0 {
			for i := len(path) - 1; i > 0 && n > 0; i-- {
				if path[i] == '/' {
					cut, n = i, n-1
				}
			}
		}
		pre := cmpOr(path[:cut], "/")
		tb, err := New(Spec[string]{HTTP: []HTTPRoute[string]{
			rt("regex", nil, []HTTPMatch{regex(`.*`)}),
			rt("prefix", nil, []HTTPMatch{prefix(pre)}),
			rt("root", nil, []HTTPMatch{prefix("/")}),
			rt("exact", nil, []HTTPMatch{exact(path)}),
		}})
		if err != nil {
			t.Fatalf("exact %q, prefix %q: %v", path, pre, err)
		}
		if g := got(tb, req{host: host, method: method, path: path}); g != "exact" {
			t.Fatalf("exact %q, prefix %q: got %s", path, pre, g)
		}
		if !strings.HasSuffix(path, "/") {
			res := tb.MatchHTTP(host, method, path+"/", nil, "", 0)
			if res.Backend != "prefix" && !(pre == "/" && res.Backend == "root") {
				t.Fatalf("%q after exact %q, prefix %q: got %s", path+"/", path, pre, res.Backend)
			}
			// The prefix replaced, the rest kept.
			out := ReplacePrefix(path+"/", res.MatchedPrefix, "/new")
			rest := (path + "/")[len(strings.TrimSuffix(res.MatchedPrefix, "/")):]
			if out != "/new"+rest {
				t.Fatalf("ReplacePrefix(%q, %q, /new) = %q, want /new%s", path+"/", res.MatchedPrefix, out, rest)
			}
		}
	})
}
