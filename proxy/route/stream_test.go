package route

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func tlsRoute(name string, created time.Time, hosts []string, backends ...Backend[string]) TLSRoute[string] {
	if len(backends) == 0 {
		backends = to(name)
	}
	return TLSRoute[string]{Meta: Meta{Namespace: "ns", Name: name, Created: created}, Hostnames: hosts,
		Rules: []TLSRule[string]{{Backends: backends}}}
}

// gotTLS is the backend MatchTLS picks for sni, "closed" for no route and
// "none" for a route without a backend of weight.
func gotTLS(tb *Table[string], sni string) string {
	res := tb.MatchTLS(sni, 0)
	switch {
	case res.Action == nil:
		return "closed"
	case !res.HasBackend:
		return "none"
	}
	return res.Backend
}

// TestMatchTLSPrecedence: exact beats every wildcard, a longer wildcard
// suffix beats a shorter one, a route without hostnames takes what is
// left; a ClientHello without SNI gets no route; between routes claiming
// one hostname the older wins, then the first by name.
func TestMatchTLSPrecedence(t *testing.T) {
	tb := mustNew(t, Spec[string]{TLS: []TLSRoute[string]{
		tlsRoute("any", t0, nil),
		tlsRoute("wild", t0, []string{"*.example.com"}),
		tlsRoute("deep", t0, []string{"*.b.example.com"}),
		tlsRoute("exact", t0, []string{"a.b.example.com", "www.example.com"}),
		tlsRoute("newer", t0.Add(time.Hour), []string{"www.example.com", "new.example.com"}),
		tlsRoute("b-second", t0, []string{"tie.example.com"}),
		tlsRoute("a-first", t0, []string{"tie.example.com"}),
	}})
	if k := tb.Streams(); k != StreamTLS {
		t.Fatalf("Streams() = %d, want StreamTLS", k)
	}
	for sni, want := range map[string]string{
		"a.b.example.com":   "exact",
		"A.B.Example.COM.":  "exact",
		"x.a.b.example.com": "deep",
		"c.b.example.com":   "deep",
		"b.example.com":     "wild", // "*.b.example.com" needs a label before
		"x.y.example.com":   "wild",
		"www.example.com":   "exact", // the older of two exact claims
		"new.example.com":   "newer",
		"tie.example.com":   "a-first",
		"example.com":       "any",
		"other.org":         "any",
		"":                  "closed",
	} {
		if g := gotTLS(tb, sni); g != want {
			t.Errorf("MatchTLS(%q) = %s, want %s", sni, g, want)
		}
	}
	// Without a catch-all, an unmatched name is closed.
	tb = mustNew(t, Spec[string]{TLS: []TLSRoute[string]{tlsRoute("wild", t0, []string{"*.example.com"}),
		tlsRoute("zero", t0, []string{"zero.example.org"}, Backend[string]{Ref: "z", Weight: 0})}})
	for sni, want := range map[string]string{"a.example.com": "wild", "example.com": "closed", "other.org": "closed", "zero.example.org": "none"} {
		if g := gotTLS(tb, sni); g != want {
			t.Errorf("no catch-all: MatchTLS(%q) = %s, want %s", sni, g, want)
		}
	}
	if r := tb.MatchTCP(0); r.Action != nil {
		t.Errorf("MatchTCP on a table of TLS routes: %+v", r)
	}
}

// TestMatchTCPWeights: over every rnd value of one round of the total
// weight, each backend is picked exactly its weight's times (rules'
// backends together); weight 0 never.
func TestMatchTCPWeights(t *testing.T) {
	tb := mustNew(t, Spec[string]{TCP: []TCPRoute[string]{{Meta: Meta{Namespace: "ns", Name: "db"}, Rules: []TCPRule[string]{
		{Backends: []Backend[string]{{Ref: "a", Weight: 3}, {Ref: "off", Weight: 0}}},
		{Backends: []Backend[string]{{Ref: "b", Weight: 1}}},
	}}}})
	if k := tb.Streams(); k != StreamTCP {
		t.Fatalf("Streams() = %d, want StreamTCP", k)
	}
	n := map[string]int{}
	for rnd := range uint64(4 * 100) {
		r := tb.MatchTCP(rnd)
		if !r.HasBackend || r.Action.Route.Name != "db" {
			t.Fatalf("MatchTCP(%d) = %+v", rnd, r)
		}
		n[r.Backend]++
	}
	if n["a"] != 300 || n["b"] != 100 || n["off"] != 0 {
		t.Errorf("picks %v, want a 300, b 100, off 0", n)
	}
	if len(tb.MatchTCP(0).Action.Backends()) != 3 {
		t.Errorf("Backends() = %v, want the 3 given", tb.MatchTCP(0).Action.Backends())
	}
	if r := tb.MatchTLS("a.example.com", 0); r.Action != nil {
		t.Errorf("MatchTLS on a table of a TCP route: %+v", r)
	}
	if k := mustNew(t, hostsSpec()).Streams(); k != NoStreams {
		t.Errorf("an HTTP table's Streams() = %d", k)
	}
}

func TestStreamRoutesInvalid(t *testing.T) {
	tcp := func(name string, w int32) TCPRoute[string] {
		return TCPRoute[string]{Meta: Meta{Namespace: "ns", Name: name}, Rules: []TCPRule[string]{{Backends: []Backend[string]{{Ref: "x", Weight: w}}}}}
	}
	for name, c := range map[string]struct {
		spec Spec[string]
		want []string
	}{
		"two tcp": {Spec[string]{TCP: []TCPRoute[string]{tcp("a", 1), tcp("b", 1)}},
			[]string{`tcproute "ns/b": a listener takes one TCPRoute, and "ns/a" is attached to it already`}},
		"tcp and tls": {Spec[string]{TCP: []TCPRoute[string]{tcp("a", 1)}, TLS: []TLSRoute[string]{tlsRoute("t", t0, nil)}},
			[]string{`tcproute "ns/a" and tlsroute "ns/t": a listener takes TCPRoutes or TLSRoutes, not both`}},
		"tls and http": {Spec[string]{TLS: []TLSRoute[string]{tlsRoute("t", t0, nil)}, HTTP: []HTTPRoute[string]{rt("h", nil, nil)}},
			[]string{"takes no HTTPRoute or GRPCRoute"}},
		"weights and names": {Spec[string]{
			TCP: []TCPRoute[string]{tcp("a", -1)},
			TLS: []TLSRoute[string]{tlsRoute("t", t0, []string{"Bad_Host", "*.ok.com", "10.0.0.1"}, Backend[string]{Ref: "x", Weight: 2_000_000}), tlsRoute("t", t0, nil), tlsRoute("", t0, nil)},
		}, []string{
			`tcproute "ns/a" rule 0: backend 0: weight -1 not within 0 to 1000000`,
			`tlsroute "ns/t" rule 0: backend 0: weight 2000000 not within 0 to 1000000`,
			`tlsroute "ns/t": hostname "Bad_Host"`,
			`tlsroute "ns/t": hostname "10.0.0.1": IP addresses are not allowed`,
			`tlsroute "ns/t": name used by another route`,
			`tlsroute 2: no name`,
		}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := New(c.spec)
			if err == nil {
				t.Fatal("New accepted it")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
}

// tlsSpec is benchRoutes TLS routes, half exact, half wildcards, each
// with two weighted backends, and a catch-all.
func tlsSpec() Spec[string] {
	var s Spec[string]
	for i := range benchRoutes {
		name := fmt.Sprintf("svc-%d", i)
		host := name + ".example.com"
		if i%2 == 1 {
			host = "*." + name + ".example.com"
		}
		s.TLS = append(s.TLS, tlsRoute(name, t0, []string{host}, Backend[string]{Ref: name + "/a", Weight: 3}, Backend[string]{Ref: name + "/b", Weight: 1}))
	}
	s.TLS = append(s.TLS, tlsRoute("catchall", t0, nil))
	return s
}

var tlsBenchCases = []struct{ name, sni, want string }{
	{"exact", "svc-500.example.com", "svc-500/"},
	{"wildcard", "a.b.svc-501.example.com", "svc-501/"},
	{"catchall", "other.org", "catchall"},
}

// TestMatchStreamAllocs: matching a connection and picking its backend
// allocates nothing.
func TestMatchStreamAllocs(t *testing.T) {
	tb := mustNew(t, tlsSpec())
	for _, c := range tlsBenchCases {
		if g := gotTLS(tb, c.sni); !strings.HasPrefix(g, c.want) {
			t.Fatalf("%s: got %s, want %s", c.name, g, c.want)
		}
		var rnd uint64
		if n := testing.AllocsPerRun(200, func() { rnd++; tb.MatchTLS(c.sni, rnd) }); n != 0 {
			t.Errorf("MatchTLS %s: %v allocations, want 0", c.name, n)
		}
	}
	tcp := mustNew(t, Spec[string]{TCP: []TCPRoute[string]{{Meta: Meta{Namespace: "ns", Name: "db"}, Rules: []TCPRule[string]{{Backends: []Backend[string]{{Ref: "a", Weight: 3}, {Ref: "b", Weight: 1}}}}}}})
	var rnd uint64
	if n := testing.AllocsPerRun(200, func() { rnd++; tcp.MatchTCP(rnd) }); n != 0 {
		t.Errorf("MatchTCP: %v allocations, want 0", n)
	}
}

// BenchmarkMatchTLS: route and pick a connection's backend by its server
// name among benchRoutes TLS routes.
func BenchmarkMatchTLS(b *testing.B) {
	tb := mustNew(b, tlsSpec())
	for _, c := range tlsBenchCases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			var rnd uint64
			for b.Loop() {
				rnd++
				tb.MatchTLS(c.sni, rnd)
			}
		})
	}
}
