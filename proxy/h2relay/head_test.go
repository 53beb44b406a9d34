package h2relay

import (
	"testing"

	"golang.org/x/net/http2/hpack"
)

func TestRequestHeadLookups(t *testing.T) {
	h := &RequestHead{Path: "/a/b?x=1&user%20id=j%C3%B6rg&empty=", fields: []hpack.HeaderField{
		{Name: "x-user", Value: "u1"},
		{Name: "cookie", Value: "a=1; sid=abc"},
		{Name: "cookie", Value: `other="q"`},
		{Name: "x-user", Value: "u2"},
	}}
	if v, ok := h.Header("x-user"); !ok || v != "u1" {
		t.Errorf("Header: %q %v", v, ok)
	}
	if _, ok := h.Header("x-none"); ok {
		t.Error("Header found a missing field")
	}
	for name, want := range map[string]string{"sid": "abc", "other": "q", "a": "1"} {
		if v, ok := h.Cookie(name); !ok || v != want {
			t.Errorf("Cookie(%s): %q %v", name, v, ok)
		}
	}
	if _, ok := h.Cookie("nope"); ok {
		t.Error("Cookie found a missing cookie")
	}
	for name, want := range map[string]string{"x": "1", "user id": "jörg", "empty": "", "missing": ""} {
		if v := h.Query(name); v != want {
			t.Errorf("Query(%s): %q, want %q", name, v, want)
		}
	}
	if h.URLPath() != "/a/b" {
		t.Errorf("URLPath %q", h.URLPath())
	}
	if n := testing.AllocsPerRun(100, func() { h.Header("x-user"); h.Cookie("sid"); h.URLPath() }); n != 0 {
		t.Errorf("lookups allocate %v times", n)
	}
}
