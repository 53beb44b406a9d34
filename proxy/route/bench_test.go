package route

import (
	"fmt"
	"net/http"
	"testing"
)

const benchRoutes = 1000

// hostsSpec is benchRoutes routes, each of its own hostname, with an
// exact health path, a header-matched canary prefix and a root prefix.
func hostsSpec() Spec[string] {
	var s Spec[string]
	for i := range benchRoutes {
		name := fmt.Sprintf("svc-%d", i)
		s.HTTP = append(s.HTTP, HTTPRoute[string]{
			Meta:      Meta{Namespace: "ns", Name: name, Created: t0},
			Hostnames: []string{name + ".example.com"},
			Rules: []HTTPRule[string]{
				{Matches: []HTTPMatch{exact("/healthz")}, Backends: to(name + "/health")},
				{Matches: []HTTPMatch{{Path: PathMatch{Value: "/api/v1"}, Headers: []HeaderMatch{{Name: "x-canary", Value: "1"}}, QueryParams: []QueryParamMatch{{Name: "beta", Value: "yes"}}}},
					Backends: []Backend[string]{{Ref: name + "/canary", Weight: 1}, {Ref: name + "/stable", Weight: 9}}},
				{Matches: []HTTPMatch{prefix("/api/v1")}, Backends: to(name + "/api")},
				{Backends: to(name + "/root")},
			},
		})
	}
	return s
}

// pathsSpec is benchRoutes routes on one hostname, each owning a path
// prefix (one exact path inside it), and a wildcard and a catch-all.
func pathsSpec() Spec[string] {
	var s Spec[string]
	for i := range benchRoutes {
		name := fmt.Sprintf("svc-%d", i)
		s.HTTP = append(s.HTTP, HTTPRoute[string]{
			Meta:      Meta{Namespace: "ns", Name: name, Created: t0},
			Hostnames: []string{"api.example.com"},
			Rules: []HTTPRule[string]{
				{Matches: []HTTPMatch{exact("/" + name + "/status")}, Backends: to(name + "/status")},
				{Matches: []HTTPMatch{{Path: PathMatch{Value: "/" + name}, Method: "POST"}, prefix("/" + name)}, Backends: to(name)},
			},
		})
	}
	s.HTTP = append(s.HTTP,
		rt("wild", []string{"*.example.com"}, []HTTPMatch{prefix("/")}),
		rt("catchall", nil, []HTTPMatch{prefix("/")}))
	return s
}

// wildSpec is benchRoutes routes of wildcard hostnames.
func wildSpec() Spec[string] {
	var s Spec[string]
	for i := range benchRoutes {
		name := fmt.Sprintf("tenant-%d", i)
		s.HTTP = append(s.HTTP, rt(name, []string{"*." + name + ".example.com"}, []HTTPMatch{prefix("/")}))
	}
	return s
}

// regexSpec is benchRoutes routes of regular expressions on one host (the
// slow case: a linear scan).
func regexSpec() Spec[string] {
	var s Spec[string]
	for i := range benchRoutes {
		name := fmt.Sprintf("svc-%d", i)
		s.HTTP = append(s.HTTP, rt(name, []string{"api.example.com"}, []HTTPMatch{regex(fmt.Sprintf(`/%s/[0-9]+`, name))}))
	}
	return s
}

func grpcSpec() Spec[string] {
	var s Spec[string]
	for i := range benchRoutes {
		name := fmt.Sprintf("svc-%d", i)
		s.GRPC = append(s.GRPC,
			grt(name+"-get", []string{"grpc.example.com"}, GRPCMatch{Service: "pkg.Svc" + fmt.Sprint(i), Method: "Get"}),
			grt(name, []string{"grpc.example.com"}, GRPCMatch{Service: "pkg.Svc" + fmt.Sprint(i)}))
	}
	return s
}

type benchCase struct {
	name  string
	spec  func() Spec[string]
	r     req
	want  string
	alloc bool // allocation-free (the common path)
}

var benchCases = []benchCase{
	{"hosts/prefix", hostsSpec, req{host: "svc-500.example.com:8080", path: "/api/v1/users/42"}, "svc-500/api", true},
	{"hosts/exact", hostsSpec, req{host: "svc-999.example.com", path: "/healthz"}, "svc-999/health", true},
	{"hosts/header+query", hostsSpec, req{host: "svc-7.example.com", path: "/api/v1/x", header: http.Header{"X-Canary": {"1"}, "Accept": {"*/*"}}, query: "a=b&beta=yes"}, "svc-7/canary", true},
	{"hosts/root", hostsSpec, req{host: "svc-1.example.com", path: "/static/css/site.css"}, "svc-1/root", true},
	{"paths/prefix", pathsSpec, req{host: "api.example.com", path: "/svc-777/items/3"}, "svc-777", true},
	{"paths/exact", pathsSpec, req{host: "api.example.com", path: "/svc-3/status"}, "svc-3/status", true},
	{"paths/fallthrough-wildcard", pathsSpec, req{host: "api.example.com", path: "/nothing/here"}, "wild", true},
	{"paths/catchall", pathsSpec, req{host: "other.org", path: "/x"}, "catchall", true},
	{"wildcard", wildSpec, req{host: "a.b.tenant-500.example.com", path: "/x"}, "tenant-500", true},
	{"miss", hostsSpec, req{host: "unknown.example.org", path: "/x"}, "404", true},
	{"regex", regexSpec, req{host: "api.example.com", path: "/svc-999/12"}, "svc-999", false},
}

// TestMatchAllocs: the common path (exact host or wildcard, Exact or
// PathPrefix path, exact header and query matches) allocates nothing.
func TestMatchAllocs(t *testing.T) {
	for _, c := range benchCases {
		if !c.alloc {
			continue
		}
		tb := mustNew(t, c.spec())
		if g := got(tb, c.r); g != c.want {
			t.Fatalf("%s: got %s, want %s", c.name, g, c.want)
		}
		var rnd uint64
		n := testing.AllocsPerRun(200, func() {
			rnd++
			tb.MatchHTTP(c.r.host, "GET", c.r.path, c.r.header, c.r.query, rnd)
		})
		if n != 0 {
			t.Errorf("%s: %v allocations per match, want 0", c.name, n)
		}
	}
	tb := mustNew(t, grpcSpec())
	h := http.Header{"Content-Type": {"application/grpc"}}
	for _, p := range []string{"/pkg.Svc500/Get", "/pkg.Svc500/List", "/no.Such/Thing"} {
		if n := testing.AllocsPerRun(200, func() { tb.MatchGRPC("grpc.example.com", p, h, 1) }); n != 0 {
			t.Errorf("MatchGRPC %s: %v allocations per match, want 0", p, n)
		}
	}
}

func BenchmarkMatchHTTP(b *testing.B) {
	for _, c := range benchCases {
		b.Run(c.name, func(b *testing.B) {
			tb := mustNew(b, c.spec())
			if g := got(tb, c.r); g != c.want {
				b.Fatalf("got %s, want %s", g, c.want)
			}
			b.ReportAllocs()
			var rnd uint64
			for b.Loop() {
				rnd++
				tb.MatchHTTP(c.r.host, "GET", c.r.path, c.r.header, c.r.query, rnd)
			}
		})
	}
}

func BenchmarkMatchGRPC(b *testing.B) {
	tb := mustNew(b, grpcSpec())
	h := http.Header{"Content-Type": {"application/grpc"}}
	for _, p := range []string{"/pkg.Svc500/Get", "/pkg.Svc500/List"} {
		b.Run(p, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tb.MatchGRPC("grpc.example.com", p, h, 1)
			}
		})
	}
}

func BenchmarkNew(b *testing.B) {
	s := hostsSpec()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := New(s); err != nil {
			b.Fatal(err)
		}
	}
}
