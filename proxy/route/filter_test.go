package route

import (
	"net/http"
	"net/url"
	"reflect"
	"testing"
)

// TestReplacePrefix is the API's table of ReplacePrefixMatch, plus the
// root prefix.
func TestReplacePrefix(t *testing.T) {
	for _, c := range []struct{ path, prefix, repl, want string }{
		{"/foo/bar", "/foo", "/xyz", "/xyz/bar"},
		{"/foo/bar", "/foo", "/xyz/", "/xyz/bar"},
		{"/foo/bar", "/foo/", "/xyz", "/xyz/bar"},
		{"/foo/bar", "/foo/", "/xyz/", "/xyz/bar"},
		{"/foo", "/foo", "/xyz", "/xyz"},
		{"/foo/", "/foo", "/xyz", "/xyz/"},
		{"/foo/bar", "/foo", "", "/bar"},
		{"/foo/", "/foo", "", "/"},
		{"/foo", "/foo", "", "/"},
		{"/foo/", "/foo", "/", "/"},
		{"/foo", "/foo", "/", "/"},
		{"/foo/x", "/foo", "/bar", "/bar/x"},
		{"/foo/x", "/", "/bar", "/bar/foo/x"},
		{"/", "/", "/bar", "/bar/"},
		{"/foo/x", "/", "/", "/foo/x"},
		// A prefix that does not match leaves the path.
		{"/foobar", "/foo", "/x", "/foobar"},
		{"/other", "/foo", "/x", "/other"},
	} {
		if g := ReplacePrefix(c.path, c.prefix, c.repl); g != c.want {
			t.Errorf("ReplacePrefix(%q, %q, %q) = %q, want %q", c.path, c.prefix, c.repl, g, c.want)
		}
	}
}

func TestRedirectLocation(t *testing.T) {
	full := &PathModifier{Type: ReplaceFullPath, Value: "/new"}
	pre := &PathModifier{Type: ReplacePrefixMatch, Value: "/v2"}
	for _, c := range []struct {
		rd                     Redirect
		scheme, host           string
		port                   int
		path, query, matchedAt string
		want                   string
	}{
		// Nothing set: the request's scheme, host and path, the
		// listener's port unless well known.
		{Redirect{}, "http", "a.com", 80, "/p", "", "/", "http://a.com/p"},
		{Redirect{}, "http", "a.com:8080", 8080, "/p", "x=1", "/", "http://a.com:8080/p?x=1"},
		{Redirect{}, "https", "a.com", 443, "/p", "", "/", "https://a.com/p"},
		// A scheme brings its well-known port, left out.
		{Redirect{Scheme: "https"}, "http", "a.com:8080", 8080, "/p", "", "/", "https://a.com/p"},
		{Redirect{Scheme: "http"}, "https", "a.com:8443", 8443, "/p", "", "/", "http://a.com/p"},
		// A port given is kept unless well known for the scheme.
		{Redirect{Scheme: "https", Port: 8443}, "http", "a.com", 80, "/p", "", "/", "https://a.com:8443/p"},
		{Redirect{Port: 443}, "https", "a.com:8443", 8443, "/p", "", "/", "https://a.com/p"},
		{Redirect{Port: 80}, "https", "a.com", 443, "/p", "", "/", "https://a.com:80/p"},
		{Redirect{Hostname: "b.org"}, "http", "a.com:8080", 8080, "/p", "", "/", "http://b.org:8080/p"},
		{Redirect{Hostname: "b.org", Port: 9000}, "http", "a.com", 80, "/p", "", "/", "http://b.org:9000/p"},
		// Paths, escaped in the result; the query kept.
		{Redirect{Path: full}, "http", "a.com", 80, "/old/x", "q=1", "/old", "http://a.com/new?q=1"},
		{Redirect{Path: pre}, "http", "a.com", 80, "/v1/users", "", "/v1", "http://a.com/v2/users"},
		{Redirect{Path: pre}, "http", "a.com", 80, "/v1", "", "/v1", "http://a.com/v2"},
		{Redirect{}, "http", "a.com", 80, "/a b", "", "/", "http://a.com/a%20b"},
		// IPv6 hosts stay bracketed.
		{Redirect{}, "http", "[::1]:8080", 8080, "/", "", "/", "http://[::1]:8080/"},
		{Redirect{}, "http", "[::1]", 80, "/", "", "/", "http://[::1]/"},
		// Unknown listener port: none.
		{Redirect{}, "http", "a.com", 0, "/", "", "/", "http://a.com/"},
	} {
		if g := c.rd.Location(c.scheme, c.host, c.port, c.path, c.query, c.matchedAt); g != c.want {
			t.Errorf("%+v.Location(%q, %q, %d, %q, %q, %q) = %q, want %q", c.rd, c.scheme, c.host, c.port, c.path, c.query, c.matchedAt, g, c.want)
		}
	}
}

func TestHeaderModifierApply(t *testing.T) {
	m := &HeaderModifier{
		Set:    []Header{{Name: "my-header", Value: "bar"}},
		Add:    []Header{{Name: "x-add", Value: "bar,baz"}},
		Remove: []string{"my-header1", "MY-HEADER3"},
	}
	h := http.Header{"My-Header": {"foo", "foo2"}, "X-Add": {"foo"}, "My-Header1": {"a"}, "My-Header2": {"b"}, "My-Header3": {"c"}}
	m.Apply(h)
	want := http.Header{"My-Header": {"bar"}, "X-Add": {"foo", "bar,baz"}, "My-Header2": {"b"}}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("got %v, want %v", h, want)
	}
	(*HeaderModifier)(nil).Apply(h)
	if !reflect.DeepEqual(h, want) {
		t.Errorf("a nil modifier changed the header: %v", h)
	}
}

func TestRewriteApply(t *testing.T) {
	tb := mustNew(t, Spec[string]{HTTP: []HTTPRoute[string]{{Meta: Meta{Name: "r"}, Rules: []HTTPRule[string]{{
		Matches:  []HTTPMatch{prefix("/foo/"), prefix("/bar")},
		Backends: to("b"),
		Filters:  []HTTPFilter[string]{{Type: URLRewrite, URLRewrite: &Rewrite{Hostname: "internal.svc", Path: &PathModifier{Type: ReplacePrefixMatch, Value: "/"}}}},
	}}}}})
	for _, c := range []struct{ url, wantURL string }{
		{"http://a.com/foo/x?q=1", "http://a.com/x?q=1"},
		{"http://a.com/foo", "http://a.com/"},
		{"http://a.com/bar/baz/", "http://a.com/baz/"},
		{"http://a.com/bar/a%2Fb", "http://a.com/a%2Fb"},
	} {
		r, err := http.NewRequest("GET", c.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		res := tb.MatchHTTP(r.Host, r.Method, r.URL.Path, r.Header, r.URL.RawQuery, 0)
		if res.Action == nil || res.Action.Rewrite == nil {
			t.Fatalf("%s: no rewrite", c.url)
		}
		res.Action.Rewrite.Apply(r, res.MatchedPrefix)
		if r.Host != "internal.svc" || r.URL.String() != c.wantURL {
			t.Errorf("%s: rewritten to host %q, url %q; want internal.svc, %q", c.url, r.Host, r.URL, c.wantURL)
		}
	}
	// A full path replacement keeps the query.
	u, _ := url.Parse("http://a.com/x/y?k=v")
	r := &http.Request{URL: u, Host: "a.com"}
	(&Rewrite{Path: &PathModifier{Type: ReplaceFullPath, Value: "/z"}}).Apply(r, "")
	if r.URL.String() != "http://a.com/z?k=v" || r.Host != "a.com" {
		t.Errorf("full replace: %q host %q", r.URL, r.Host)
	}
}

// TestMirrorTake: the share of requests copied is the percent or the
// fraction asked for, over rnd's uniform values; none set copies all.
func TestMirrorTake(t *testing.T) {
	pct := func(p int32) *int32 { return &p }
	cases := []struct {
		m    Mirror[string]
		want int // of 10000
	}{
		{Mirror[string]{}, 10000},
		{Mirror[string]{Percent: pct(0)}, 0},
		{Mirror[string]{Percent: pct(100)}, 10000},
		{Mirror[string]{Percent: pct(37)}, 3700},
		{Mirror[string]{Fraction: &Fraction{1, 4}}, 2500},
		{Mirror[string]{Fraction: &Fraction{0, 7}}, 0},
		{Mirror[string]{Fraction: &Fraction{7, 7}}, 10000},
	}
	for _, c := range cases {
		n := 0
		for i := range uint64(10000) {
			// A stride coprime with 100 and 4 covers the residues evenly.
			if c.m.Take(i * 7919) {
				n++
			}
		}
		if n != c.want {
			t.Errorf("%+v: took %d of 10000, want %d", c.m, n, c.want)
		}
	}
}
