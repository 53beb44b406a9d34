package balancer

import (
	"testing"

	"github.com/longhaul-proxy/longhaul/discovery"
)

// rollout returns four ready endpoints, the first three of revision "old"
// and the fourth of "new", with the first one terminating when leaving.
// Without revisions set it is the same set with none.
func rollout(leaving, revisions bool) []discovery.Endpoint {
	eps := readyEndpoints(4)
	for i := range eps {
		if revisions {
			eps[i].Revision = "old"
			if i == 3 {
				eps[i].Revision = "new"
			}
		}
	}
	if leaving {
		eps[0].Ready, eps[0].Terminating = false, true
	}
	return eps
}

// TestLeastConnectionsPrefersNewRevision: while an old pod is leaving, new
// sessions go to the new revision while it is untried, and to the old
// ones only after; the old ones stay targets (pins still reach them).
func TestLeastConnectionsPrefersNewRevision(t *testing.T) {
	p := mustBuild(t, rollout(true, true), Policy{Kind: LeastConnections}, nil)
	if n := len(p.Targets()); n != 3 {
		t.Fatalf("%d targets, want the 3 eligible", n)
	}
	fresh := addrOf(3)
	for i := range 1000 {
		tg := p.Pick(uint64(i), nil)
		if tg.Endpoint.Address != fresh {
			t.Fatalf("pick %d went to %s (outgoing %v), want the new revision %s", i, nameOf(tg), tg.Outgoing(), fresh)
		}
		tg.Acquire() // however loaded, it stays preferred
	}
	var tried []*Target
	for _, tg := range p.Targets() {
		if tg.Endpoint.Address == fresh {
			tried = append(tried, tg)
		}
	}
	seen := map[string]int{}
	for range 200 {
		seen[nameOf(p.Pick(0, tried))]++
	}
	if seen[addrOf(1)] == 0 || seen[addrOf(2)] == 0 || len(seen) != 2 {
		t.Errorf("with the new revision tried, picks went to %v, want both old ones", seen)
	}

	// Without revisions, the same snapshot balances over all three.
	q := mustBuild(t, rollout(true, false), Policy{Kind: LeastConnections}, nil)
	seen = map[string]int{}
	for range 300 {
		seen[nameOf(q.Pick(0, nil))]++
	}
	if len(seen) != 3 {
		t.Errorf("without revisions, picks went to %v, want all three", seen)
	}
	if p.Fingerprint() == q.Fingerprint() {
		t.Error("the same fingerprint with and without outgoing targets")
	}
	if f := mustBuild(t, rollout(true, true), Policy{Kind: LeastConnections}, nil).Fingerprint(); f != p.Fingerprint() {
		t.Errorf("two builds of one snapshot: fingerprints %x and %x", f, p.Fingerprint())
	}
}

// TestMaglevRolloutMovesOnlyLeavingKeys: when the first old pod turns
// terminating, its keys, and only its keys, go to the new revision; the
// other old pods keep every key. Without revisions its keys spread over
// all three (so the test can fail).
func TestMaglevRolloutMovesOnlyLeavingKeys(t *testing.T) {
	keys := keyPool(20000)
	for _, bounded := range []float64{0, 1.25} {
		pol := Policy{Kind: Maglev, TableSize: 65537, BoundedLoad: bounded}
		before := addresses(mustBuild(t, rollout(false, true), pol, nil), keys)
		during := addresses(mustBuild(t, rollout(true, true), pol, nil), keys)
		plain := addresses(mustBuild(t, rollout(true, false), pol, nil), keys)
		var leavingKeys, toNew, others, othersMoved int
		plainTo := map[string]int{}
		for i := range keys {
			if before[i] == addrOf(0) {
				leavingKeys++
				if during[i] == addrOf(3) {
					toNew++
				}
				plainTo[plain[i]]++
				continue
			}
			others++
			if during[i] != before[i] {
				othersMoved++
			}
		}
		t.Logf("bounded %v: %d keys of the leaving pod, %d to the new revision; %d other keys, %d moved; without revisions they went %v",
			bounded, leavingKeys, toNew, others, othersMoved, plainTo)
		if leavingKeys == 0 || toNew != leavingKeys || othersMoved != 0 {
			t.Errorf("bounded %v: %d of %d leaving keys to the new revision, %d of %d other keys moved; want all and none",
				bounded, toNew, leavingKeys, othersMoved, others)
		}
		if len(plainTo) != 3 {
			t.Errorf("bounded %v: without revisions the leaving keys went to %v, want all three", bounded, plainTo)
		}
	}
}

// TestMaglevRolloutWithinBound: with bounded loads, a leaving pod's keys
// go to the new revision while it is below its cap, and to an old one
// below its cap once it is not: moved sessions land within the bound.
func TestMaglevRolloutWithinBound(t *testing.T) {
	loads := NewLoads()
	pol := Policy{Kind: Maglev, TableSize: 65537, BoundedLoad: 1.25, LoadFloor: NoLoadFloor}
	p := mustBuild(t, rollout(true, true), pol, loads)
	keys := keyPool(20000)
	before := addresses(mustBuild(t, rollout(false, true), pol, nil), keys)
	got := map[string]int{}
	for i, k := range keys {
		if before[i] != addrOf(0) {
			continue
		}
		tg := p.Pick(k, nil)
		tg.Acquire()
		got[tg.Endpoint.Address]++
		total := loads.Total()
		for _, x := range p.Targets() {
			// After the session a target carries at most ceil(c × total / 3).
			if limit := (5*total + 11) / 12; x.Active() > limit {
				t.Fatalf("after %d sessions %s carries %d, above its cap %d", total, x.Endpoint.Address, x.Active(), limit)
			}
		}
	}
	t.Logf("the leaving pod's sessions went to %v", got)
	if got[addrOf(3)] == 0 || got[addrOf(1)]+got[addrOf(2)] == 0 {
		t.Errorf("sessions went to %v, want the new revision first, then old ones within the bound", got)
	}
	if got[addrOf(3)] < got[addrOf(1)] || got[addrOf(3)] < got[addrOf(2)] {
		t.Errorf("sessions went to %v, want the new revision to take the most", got)
	}
}
