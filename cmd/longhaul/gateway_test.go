package main

import (
	"net/netip"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// TestBindAddress: a fixed address is every Gateway's; within a prefix each
// Gateway gets an address of its own, the same on every call, never the
// prefix's first or last.
func TestBindAddress(t *testing.T) {
	gw := func(ns, name string) *gwv1.Gateway {
		return &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	}
	fixed, err := bindAddress("127.0.0.9")
	if err != nil || fixed(gw("a", "b")) != "127.0.0.9" {
		t.Fatalf("fixed: %v", err)
	}
	for _, s := range []string{"127.1.0.0/16", "127.1.2.0/30", "fd00::/64"} {
		f, err := bindAddress(s)
		if err != nil {
			t.Fatal(err)
		}
		pfx := netip.MustParsePrefix(s)
		seen := map[string]bool{}
		for _, name := range []string{"same-namespace", "all-namespaces", "backend-namespaces", "web", "web-2"} {
			a := f(gw("gateway-conformance-infra", name))
			ip := netip.MustParseAddr(a)
			if !pfx.Contains(ip) || ip == pfx.Addr() || a != f(gw("gateway-conformance-infra", name)) {
				t.Errorf("%s, %s: %s, want a stable host address in the prefix", s, name, a)
			}
			if ip.Is4() && ip == netip.MustParseAddr("127.1.2.3") {
				t.Errorf("%s: the prefix's last address %s", s, a)
			}
			seen[a] = true
		}
		if s != "127.1.2.0/30" && len(seen) != 5 {
			t.Errorf("%s: 5 Gateways on %d addresses", s, len(seen))
		}
	}
	if _, err := bindAddress("nowhere"); err == nil {
		t.Error("a bad address accepted")
	}
}
