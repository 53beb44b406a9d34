package route

import (
	"slices"
	"testing"
)

// TestListenerHostnames takes its cases from the API's text on
// hostnames of a listener and a route.
func TestListenerHostnames(t *testing.T) {
	for _, c := range []struct {
		listener string
		route    []string
		want     []string
		ok       bool
	}{
		{"", []string{"a.com"}, []string{"a.com"}, true},
		{"", nil, nil, true},
		{"test.example.com", nil, []string{"test.example.com"}, true},
		{"test.example.com", []string{"test.example.com"}, []string{"test.example.com"}, true},
		{"test.example.com", []string{"*.example.com"}, []string{"test.example.com"}, true},
		{"test.example.com", []string{"example.com", "*.test.example.com"}, nil, false},
		{"*.example.com", []string{"*.example.com", "test.example.com", "foo.test.example.com"}, []string{"*.example.com", "test.example.com", "foo.test.example.com"}, true},
		{"*.example.com", []string{"example.com", "test.example.net"}, nil, false},
		// "test.example.net" is ignored, the other kept.
		{"*.example.com", []string{"test.example.com", "test.example.net"}, []string{"test.example.com"}, true},
		{"*.example.com", []string{"*.b.example.com"}, []string{"*.b.example.com"}, true},
		{"*.b.example.com", []string{"*.example.com", "*.com"}, []string{"*.b.example.com"}, true},
	} {
		got, ok := ListenerHostnames(c.listener, c.route)
		if ok != c.ok || !slices.Equal(got, c.want) {
			t.Errorf("ListenerHostnames(%q, %q) = %q, %v; want %q, %v", c.listener, c.route, got, ok, c.want, c.ok)
		}
	}
}
