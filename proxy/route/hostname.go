package route

import (
	"slices"
	"strings"
)

// ListenerHostnames are the hostnames a route serves on a listener of
// hostname listener ("" for any), as the API intersects them: a route
// hostname the listener's covers is kept ("foo.example.com" or
// "*.b.example.com" on "*.example.com"); a route wildcard covering the
// listener's gives the listener's ("*.example.com" on "foo.example.com"
// gives "foo.example.com"); others are ignored. A route without hostnames
// gets the listener's. ok is false when the route has hostnames and none
// intersect: the route is then not accepted on that listener. The
// translator applies it to every route before New.
func ListenerHostnames(listener string, route []string) (hosts []string, ok bool) {
	if listener == "" {
		return route, true
	}
	if len(route) == 0 {
		return []string{listener}, true
	}
	for _, h := range route {
		var in string
		switch {
		case covers(listener, h):
			in = h
		case covers(h, listener):
			in = listener
		default:
			continue
		}
		if !slices.Contains(hosts, in) {
			hosts = append(hosts, in)
		}
	}
	return hosts, len(hosts) > 0
}

// covers reports whether every host h matches also matches pattern (both
// exact or "*." wildcards).
func covers(pattern, h string) bool {
	suffix, wild := strings.CutPrefix(pattern, "*")
	if !wild {
		return h == pattern
	}
	return strings.HasSuffix(h, suffix) && len(h) > len(suffix)
}

// CheckHostnames validates hostnames as the API's Hostname type has them
// (lower-case RFC 1123 names, optionally "*." wildcards, no IP addresses)
// and returns them without duplicates.
func CheckHostnames(hosts []string) ([]string, error) { return checkHostnames(hosts) }
