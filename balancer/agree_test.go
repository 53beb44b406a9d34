package balancer

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// replica is one longhaul replica in the agreement harness: its own picker
// and Loads, and the requests it has in flight, oldest first.
type replica struct {
	p        Picker
	inFlight []*Target
}

// agreement runs two replicas, each with inFlight requests in flight on
// keys drawn from a Zipf distribution (s = 1.1) over keys, and returns the
// share of keys both map to the same endpoint when a request arrives,
// averaged over samples. In a step both replicas end their oldest request,
// so that each has inFlight-1 in flight, where a new request finds it; at
// a sample every key is looked up on both; then each starts a request on a
// new key. Everything is seeded: the figure is the same on every run of a
// seed.
func agreement(t *testing.T, pol Policy, endpoints, inFlight int, keys []uint64, seed uint64) float64 {
	t.Helper()
	s := mustSnapshot(t, readyEndpoints(endpoints))
	rs := make([]*replica, 2)
	for i := range rs {
		p, err := Build(s, pol, NewLoads())
		if err != nil {
			t.Fatalf("Build: %v", err)
		}
		rs[i] = &replica{p: p}
	}
	rng := rand.New(rand.NewPCG(seed, uint64(inFlight)))
	zipf := rand.NewZipf(rng, 1.1, 1, uint64(len(keys)-1))
	start := func(r *replica) {
		x := r.p.Pick(keys[zipf.Uint64()], nil)
		x.Acquire()
		r.inFlight = append(r.inFlight, x)
	}
	for range inFlight {
		for _, r := range rs {
			start(r)
		}
	}
	const (
		samples = 100
		between = 20 // steps between samples
	)
	agreed := 0
	for i := range samples * between {
		for _, r := range rs {
			r.inFlight[0].Release()
			r.inFlight = r.inFlight[1:]
		}
		if i%between == between-1 {
			for _, k := range keys {
				if rs[0].p.Pick(k, nil).Endpoint.Address == rs[1].p.Pick(k, nil).Endpoint.Address {
					agreed++
				}
			}
		}
		for _, r := range rs {
			start(r)
		}
	}
	for _, r := range rs {
		for _, x := range r.inFlight {
			x.Release()
		}
	}
	return float64(agreed) / float64(samples*len(keys))
}

// userKeys returns the hashes of n header values "user-0" ... as
// HashString hashes an X-User header.
func userKeys(n int) []uint64 {
	keys := make([]uint64, n)
	for i := range keys {
		keys[i] = HashString(fmt.Sprintf("user-%d", i))
	}
	return keys
}

// TestReplicaAgreement: two replicas fed the same snapshot, bounded loads
// at c = 1.25 over 10 endpoints, agree on at least 99 % of 2,000 keys with
// 1 to 32 requests in flight each under the default load floor, for every
// one of 5 seeds. Without a floor (the cap of the paper) they must
// disagree on more at 2 in flight and above: that shows the harness sees
// what the floor fixes. 64 in flight is logged, not checked: there the hot
// key alone (17 % of requests) overloads its endpoint.
func TestReplicaAgreement(t *testing.T) {
	keys := userKeys(2000)
	const seeds = 5
	for _, n := range []int{1, 2, 4, 8, 32, 64} {
		var lo, mean [2]float64
		for i, pol := range []Policy{{BoundedLoad: 1.25, LoadFloor: NoLoadFloor}, {BoundedLoad: 1.25}} {
			lo[i] = 1
			for seed := range uint64(seeds) {
				a := agreement(t, pol, 10, n, keys, seed+1)
				lo[i] = min(lo[i], a)
				mean[i] += a / seeds
			}
		}
		t.Logf("in flight %2d: agreed %6.2f %% (min %6.2f) without a floor, %6.2f %% (min %6.2f) with the default floor %d",
			n, 100*mean[0], 100*lo[0], 100*mean[1], 100*lo[1], DefaultLoadFloor)
		if n > 32 {
			continue
		}
		if lo[1] < 0.99 {
			t.Errorf("in flight %d, default floor: replicas agree on %.2f %% of keys at worst, want at least 99 %%", n, 100*lo[1])
		}
		if n >= 2 && lo[0] >= 0.99 {
			t.Errorf("in flight %d, no floor: replicas agree on at least %.2f %% of keys, want the harness to show disagreement", n, 100*lo[0])
		}
	}
}

// TestLoadFloorCap: a hot key set whose keys all map to one endpoint
// overloads it; under the default floor its load stays within
// ceil(c × Total × w / W) + LoadFloor after every arrival, and it does
// reach the cap (keys move off it), so the bound is what holds it.
func TestLoadFloorCap(t *testing.T) {
	const c, num, den, n = 1.25, 5, 4, 10
	loads := NewLoads()
	p := mustBuild(t, readyEndpoints(n), Policy{BoundedLoad: c}, loads)
	hotT := p.Pick(keyPool(1)[0], nil)
	var hot []uint64
	for _, k := range keyPool(5000) {
		if p.Pick(k, nil) == hotT && len(hot) < 5 {
			hot = append(hot, k)
		}
	}
	rng := rand.New(rand.NewPCG(5, 5))
	var sessions []*Target
	moved := false
	for i := range 6000 {
		if i >= 3000 && rng.IntN(3) == 0 { // then departures too
			j := rng.IntN(len(sessions))
			sessions[j].Release()
			sessions[j] = sessions[len(sessions)-1]
			sessions = sessions[:len(sessions)-1]
			continue
		}
		k := rng.Uint64()
		isHot := rng.IntN(10) < 8
		if isHot {
			k = hot[rng.IntN(len(hot))]
		}
		x := p.Pick(k, nil)
		moved = moved || (isHot && x != hotT)
		x.Acquire()
		sessions = append(sessions, x)
		// active <= ceil(num·Total/(den·n)) + F, i.e.
		// (active - F - 1)·den·n < num·Total. Departures shrink the cap,
		// so once they begin the bound is checked when the hot endpoint
		// takes a session.
		if a := hotT.Active(); (i < 3000 || x == hotT) && (a-DefaultLoadFloor-1)*den*n >= num*loads.Total() {
			t.Fatalf("after %d steps the hot endpoint carries %d of %d sessions, want at most ceil(%v × %d / %d) + %d",
				i+1, a, loads.Total(), c, loads.Total(), n, DefaultLoadFloor)
		}
	}
	if !moved {
		t.Fatal("no hot key moved off its endpoint: the cap never engaged")
	}
	for _, x := range sessions {
		x.Release()
	}
}
