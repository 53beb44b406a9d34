package route

import "testing"

// TestListenerIsolation: with routes of several listeners, a request is
// matched only against the routes of the most specific listener whose
// hostname matches its host, never falling through to a less specific
// listener's routes (the fall-through of TestHostnames holds within one
// listener).
func TestListenerIsolation(t *testing.T) {
	on := func(listener string, r HTTPRoute[string]) HTTPRoute[string] { r.Listener = listener; return r }
	all := []HTTPMatch{prefix("/")}
	tb := mustNew(t, Spec[string]{
		HTTP: []HTTPRoute[string]{
			on("", rt("empty", nil, all)),
			on("*.example.com", rt("wildcard", []string{"*.example.com"}, all)),
			on("*.foo.example.com", rt("foo-wildcard", []string{"*.foo.example.com"}, []HTTPMatch{prefix("/only")})),
			on("abc.foo.example.com", rt("abc", []string{"abc.foo.example.com"}, []HTTPMatch{exact("/abc")})),
		},
		GRPC: []GRPCRoute[string]{{Meta: Meta{Namespace: "ns", Name: "g", Created: t0}, Listener: "*.example.com",
			Hostnames: []string{"*.example.com"}, Rules: []GRPCRule[string]{{Backends: to("grpc")}}}},
	})
	checkCases(t, tb, []matchCase{
		{req{host: "bar.com", path: "/"}, "empty"},
		{req{host: "bar.example.com", path: "/x"}, "wildcard"},
		{req{host: "bar.foo.example.com", path: "/only/x"}, "foo-wildcard"},
		// Not the *.example.com listener's "/" route: that listener is less specific.
		{req{host: "bar.foo.example.com", path: "/x"}, "404"},
		{req{host: "abc.foo.example.com", path: "/abc"}, "abc"},
		{req{host: "abc.foo.example.com", path: "/only"}, "404"},
		{req{host: "ABC.foo.example.com:80", path: "/abc"}, "abc"},
	})
	if res := tb.MatchGRPC("a.example.com", "/svc/M", nil, 0); !res.HasBackend || res.Backend != "grpc" {
		t.Errorf("gRPC on the wildcard listener: %+v", res)
	}
	if res := tb.MatchGRPC("a.foo.example.com", "/svc/M", nil, 0); res.Action != nil {
		t.Errorf("gRPC on the more specific listener, which has no gRPC route: %+v, want no match", res.Action.Route)
	}
	// Without an empty listener, a host no listener covers matches nothing.
	tb = mustNew(t, Spec[string]{HTTP: []HTTPRoute[string]{
		on("a.example.com", rt("a", []string{"a.example.com"}, all)),
		on("b.example.com", rt("b", []string{"b.example.com"}, all)),
	}})
	checkCases(t, tb, []matchCase{{req{host: "a.example.com", path: "/"}, "a"}, {req{host: "c.example.com", path: "/"}, "404"}})
	if n := testingAllocs(func() { tb.MatchHTTP("a.example.com", "GET", "/", nil, "", 0) }); n != 0 {
		t.Errorf("matching with isolation allocates %.1f times", n)
	}
}

func testingAllocs(f func()) float64 { return testing.AllocsPerRun(100, f) }
