package balancer

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/longhaul-proxy/longhaul/discovery"
)

// addrOf returns a distinct endpoint address for i >= 0.
func addrOf(i int) string {
	return fmt.Sprintf("10.%d.%d.%d:8080", i/62500%250, i/250%250, i%250+1)
}

// readyEndpoints returns n ready endpoints of weight 1, addresses addrOf(0..n-1).
func readyEndpoints(n int) []discovery.Endpoint {
	eps := make([]discovery.Endpoint, n)
	for i := range eps {
		eps[i] = discovery.Endpoint{Address: addrOf(i), Ready: true, Serving: true, Weight: 1}
	}
	return eps
}

func mustSnapshot(t testing.TB, eps []discovery.Endpoint) *discovery.Snapshot {
	t.Helper()
	s, err := discovery.NewSnapshot("test", eps)
	if err != nil {
		t.Fatalf("NewSnapshot: %v", err)
	}
	return s
}

func mustBuild(t testing.TB, eps []discovery.Endpoint, p Policy, loads *Loads) Picker {
	t.Helper()
	pk, err := Build(mustSnapshot(t, eps), p, loads)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return pk
}

// keyPool returns n well-mixed keys, the same on every run.
func keyPool(n int) []uint64 {
	keys := make([]uint64, n)
	var b [8]byte
	for i := range keys {
		binary.LittleEndian.PutUint64(b[:], uint64(i))
		keys[i] = HashString(string(b[:]))
	}
	return keys
}

// addresses returns the address each key maps to under p.
func addresses(p Picker, keys []uint64) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		if t := p.Pick(k, nil); t != nil {
			out[i] = t.Endpoint.Address
		}
	}
	return out
}

// nameOf returns t's address, or "nil".
func nameOf(t *Target) string {
	if t == nil {
		return "nil"
	}
	return t.Endpoint.Address
}
