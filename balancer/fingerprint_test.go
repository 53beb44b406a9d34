package balancer

import (
	"testing"

	"github.com/longhaul-proxy/longhaul/discovery"
)

// TestFingerprintSame: pickers built from the same snapshot and policy,
// with their own Loads carrying different sessions, report the same
// fingerprint; so do pickers built from equal snapshots listed in another
// order. The value is pinned: it must be the same in every process and
// release, or replicas of two versions would disagree on it.
func TestFingerprintSame(t *testing.T) {
	for _, pol := range []Policy{{}, {BoundedLoad: 1.25}, {Kind: LeastConnections}, {TableSize: 1009, BoundedLoad: 2, LoadFloor: 3}} {
		eps := readyEndpoints(20)
		a := mustBuild(t, eps, pol, nil)
		loads := NewLoads()
		b := mustBuild(t, eps, pol, loads)
		b.Pick(1, nil).Acquire()
		reversed := make([]discovery.Endpoint, len(eps))
		for i, e := range eps {
			reversed[len(eps)-1-i] = e
		}
		c := mustBuild(t, reversed, pol, nil)
		if a.Fingerprint() == 0 {
			t.Errorf("%+v: fingerprint 0, want a hash", pol)
		}
		if a.Fingerprint() != b.Fingerprint() || a.Fingerprint() != c.Fingerprint() {
			t.Errorf("%+v: fingerprints %#x, %#x (other Loads), %#x (reversed), want equal",
				pol, a.Fingerprint(), b.Fingerprint(), c.Fingerprint())
		}
	}
	golden := map[Kind]uint64{Maglev: 0x6b37185c9ab309bb, LeastConnections: 0x444285736713cb1d}
	for k, want := range golden {
		if got := mustBuild(t, readyEndpoints(3), Policy{Kind: k}, nil).Fingerprint(); got != want {
			t.Errorf("%v over 3 endpoints: fingerprint %#x, want %#x", k, got, want)
		}
	}
	if got := mustBuild(t, nil, Policy{}, nil).Fingerprint(); got != 0 {
		t.Errorf("no target: fingerprint %#x, want 0", got)
	}
}

// TestFingerprintDiffers: a change of the endpoints (one more, one fewer,
// another address, another weight) or of the policy changes the
// fingerprint.
func TestFingerprintDiffers(t *testing.T) {
	base := readyEndpoints(10)
	weighted := readyEndpoints(10)
	weighted[3].Weight = 2
	moved := readyEndpoints(10)
	moved[9].Address = addrOf(10)
	notReady := readyEndpoints(10)
	notReady[4].Ready = false
	tests := []struct {
		name string
		eps  []discovery.Endpoint
		pol  Policy
	}{
		{"one more", readyEndpoints(11), Policy{}},
		{"one fewer", readyEndpoints(9), Policy{}},
		{"another address", moved, Policy{}},
		{"another weight", weighted, Policy{}},
		{"one not ready", notReady, Policy{}},
		{"table size", base, Policy{TableSize: 1009}},
		{"bounded loads", base, Policy{BoundedLoad: 1.25}},
		{"least-connections", base, Policy{Kind: LeastConnections}},
	}
	ref := mustBuild(t, base, Policy{}, nil).Fingerprint()
	for _, tt := range tests {
		if got := mustBuild(t, tt.eps, tt.pol, nil).Fingerprint(); got == ref {
			t.Errorf("%s: fingerprint %#x, want one other than the base's", tt.name, got)
		}
	}
	// Among bounded-load policies: c and the floor count.
	bounded := mustBuild(t, base, Policy{BoundedLoad: 1.25}, nil).Fingerprint()
	for _, pol := range []Policy{{BoundedLoad: 1.5}, {BoundedLoad: 1.25, LoadFloor: 4}, {BoundedLoad: 1.25, LoadFloor: NoLoadFloor}} {
		if got := mustBuild(t, base, pol, nil).Fingerprint(); got == bounded {
			t.Errorf("%+v: fingerprint %#x, the same as c = 1.25 with the default floor", pol, got)
		}
	}
	// Least-connections: the weights count.
	lc := mustBuild(t, base, Policy{Kind: LeastConnections}, nil).Fingerprint()
	if got := mustBuild(t, weighted, Policy{Kind: LeastConnections}, nil).Fingerprint(); got == lc {
		t.Errorf("least-connections, another weight: fingerprint %#x, want one other than the base's", got)
	}
}
