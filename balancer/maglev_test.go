package balancer

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/longhaul-proxy/longhaul/discovery"
)

// TestPopulateGolden checks populate on small tables verified by hand: the
// paper's example (NSDI 2016, Table 1: offsets 3, 0, 3 and skips 4, 2, 1 at
// M = 7, before and after B1 is removed: B0 claims 3 0 1 2, B2 claims 4 5 6)
// and a weighted fill.
func TestPopulateGolden(t *testing.T) {
	tests := []struct {
		name string
		fs   []filler
		m    uint64
		want []uint32
	}{
		{"paper B0 B1 B2", []filler{{next: 3, skip: 4, weight: 1, id: 0}, {next: 0, skip: 2, weight: 1, id: 1}, {next: 3, skip: 1, weight: 1, id: 2}}, 7,
			[]uint32{1, 0, 1, 0, 2, 2, 0}},
		{"paper B1 removed", []filler{{next: 3, skip: 4, weight: 1, id: 0}, {next: 3, skip: 1, weight: 1, id: 2}}, 7,
			[]uint32{0, 0, 0, 0, 2, 2, 2}},
		// A (weight 2) claims in every round, B (weight 1) in rounds 1 and 3:
		// A 0, B 3, A 1, A 2, B 6, A 4 (3 taken), A 5.
		{"weights 2 and 1", []filler{{next: 0, skip: 1, weight: 2, id: 0}, {next: 0, skip: 3, weight: 1, id: 1}}, 7,
			[]uint32{0, 0, 0, 1, 0, 0, 1}},
		{"single endpoint", []filler{{next: 4, skip: 2, weight: 9, id: 0}}, 5,
			[]uint32{0, 0, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := populate(tt.fs, tt.m); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestTableShare checks that each endpoint's share of the table is within
// 1 % of its weight share, relative to that weight share:
// |slots_i - M·w_i/W| <= 0.01 · M·w_i/W. The tolerance is relative because
// an absolute one (say 0.01 of the table) would pass an endpoint of a 0.5 %
// weight share that got no slot at all. It holds when M > 100 N: populate
// gives each endpoint its weight share within two slots (one with equal
// weights), and every case here expects more than 100 (200) slots each.
func TestTableShare(t *testing.T) {
	cycle := func(n int, ws ...uint32) []uint32 {
		out := make([]uint32, n)
		for i := range out {
			out[i] = ws[i%len(ws)]
		}
		return out
	}
	tests := []struct {
		name    string
		m       uint64
		weights []uint32
	}{
		{"N=1", 65537, cycle(1, 1)},
		{"N=10", 65537, cycle(10, 1)},
		{"N=100", 65537, cycle(100, 1)},
		{"N=655 (M just over 100 N)", 65537, cycle(655, 1)},
		{"N=10 M=1009", 1009, cycle(10, 1)},
		{"N=10 weights 1..10", 65537, []uint32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{"N=50 weights 1,2,3,5", 65537, cycle(50, 1, 2, 3, 5)},
		{"N=100 weights 100,150", 65537, cycle(100, 100, 150)},
		{"N=3 weights 1,1,8", 65537, []uint32{1, 1, 8}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eps := readyEndpoints(len(tt.weights))
			var wsum float64
			for i, w := range tt.weights {
				eps[i].Weight = w
				wsum += float64(w)
			}
			p := mustBuild(t, eps, Policy{TableSize: tt.m}, nil).(*maglevPicker)
			if got := uint64(len(p.table)); got != tt.m {
				t.Fatalf("table size: got %v, want %v", got, tt.m)
			}
			counts := make([]int, len(p.targets))
			for _, e := range p.table {
				counts[e]++ // panics on an unfilled entry
			}
			for i, tg := range p.targets {
				want := float64(tt.m) * float64(tg.Endpoint.Weight) / wsum
				if d := float64(counts[i]) - want; d > 0.01*want || d < -0.01*want {
					t.Errorf("%s (weight %d): got %v slots, want %.1f ± 1 %%", tg.Endpoint.Address, tg.Endpoint.Weight, counts[i], want)
				}
			}
		})
	}
}

// TestDisruption checks that removing or adding one of N endpoints moves
// that endpoint's keys and less than 1 % of the other keys.
func TestDisruption(t *testing.T) {
	keys := keyPool(1 << 17)
	for _, n := range []int{10, 50, 100} {
		eps := readyEndpoints(n)
		before := addresses(mustBuild(t, eps, Policy{}, nil), keys)
		for _, removed := range []int{0, n / 2, n - 1} {
			t.Run(fmt.Sprintf("N=%d remove %d", n, removed), func(t *testing.T) {
				rest := slices.Delete(slices.Clone(eps), removed, removed+1)
				after := addresses(mustBuild(t, rest, Policy{}, nil), keys)
				var others, moved int
				for i := range keys {
					switch {
					case before[i] == addrOf(removed):
						if after[i] == addrOf(removed) {
							t.Fatalf("key %d still maps to the removed endpoint", i)
						}
					default:
						others++
						moved += b2i(after[i] != before[i])
					}
				}
				if frac := float64(moved) / float64(others); frac >= 0.01 {
					t.Errorf("other keys moved: got %.4f, want < 0.01", frac)
				}
			})
		}
		t.Run(fmt.Sprintf("N=%d add one", n), func(t *testing.T) {
			after := addresses(mustBuild(t, append(slices.Clone(eps), readyEndpoints(n + 1)[n]), Policy{}, nil), keys)
			var gained, moved int
			for i := range keys {
				switch {
				case after[i] == addrOf(n):
					gained++
				default:
					moved += b2i(after[i] != before[i])
				}
			}
			if want := float64(len(keys)) / float64(n+1); float64(gained) < 0.9*want || float64(gained) > 1.1*want {
				t.Errorf("keys to the new endpoint: got %v, want %.0f ± 10 %%", gained, want)
			}
			if frac := float64(moved) / float64(len(keys)-gained); frac >= 0.01 {
				t.Errorf("other keys moved: got %.4f, want < 0.01", frac)
			}
		})
	}
}

// TestDeterminism checks that pickers built independently, from endpoints
// listed in different orders, map keys identically.
func TestDeterminism(t *testing.T) {
	eps := readyEndpoints(50)
	for i := range eps {
		eps[i].Weight = uint32(1 + i%4)
	}
	keys := keyPool(100_000)
	shuffled := func(seed uint64) []discovery.Endpoint {
		out := slices.Clone(eps)
		r := rand.New(rand.NewPCG(seed, 0))
		r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		return out
	}
	want := addresses(mustBuild(t, shuffled(1), Policy{}, NewLoads()), keys)
	tests := []struct {
		name string
		snap *discovery.Snapshot
	}{
		{"other shuffle", mustSnapshot(t, shuffled(2))},
		// A Snapshot out of its sorted invariant still gives the same
		// table: endpoints claim slots in address order.
		{"unsorted snapshot", &discovery.Snapshot{Service: "test", Endpoints: shuffled(3)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Build(tt.snap, Policy{}, NewLoads())
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			got := addresses(p, keys)
			for i := range keys {
				if got[i] != want[i] {
					t.Fatalf("key %d: got %v, want %v", i, got[i], want[i])
				}
			}
		})
	}
}

// TestGoldenKeys freezes a few key-to-endpoint mappings: it fails when the
// key hashes, the permutation seeds or the table construction change, each
// of which would remap keys between replicas running different versions.
func TestGoldenKeys(t *testing.T) {
	eps := readyEndpoints(5)
	eps[4].Weight = 3
	tests := []struct {
		policy Policy
		key    string
		want   string
	}{
		{Policy{}, "client-1", "10.0.0.1:8080"},
		{Policy{}, "client-2", "10.0.0.1:8080"},
		{Policy{}, "client-3", "10.0.0.4:8080"},
		{Policy{}, "client-4", "10.0.0.5:8080"},
		{Policy{}, "session=8f14e45f", "10.0.0.2:8080"},
		{Policy{TableSize: 1009}, "client-1", "10.0.0.1:8080"},
		{Policy{TableSize: 1009}, "client-2", "10.0.0.1:8080"},
		// At zero load, bounded loads do not change the mapping.
		{Policy{BoundedLoad: 1.25}, "client-1", "10.0.0.1:8080"},
	}
	for _, tt := range tests {
		p := mustBuild(t, eps, tt.policy, nil)
		if got := p.Pick(HashString(tt.key), nil).Endpoint.Address; got != tt.want {
			t.Errorf("%+v %q: got %v, want %v", tt.policy, tt.key, got, tt.want)
		}
	}
	// The whole table, M = 1009, as XXH64 of its little-endian entries.
	p := mustBuild(t, eps, Policy{TableSize: 1009}, nil).(*maglevPicker)
	b := make([]byte, 0, 4*len(p.table))
	for _, e := range p.table {
		b = binary.LittleEndian.AppendUint32(b, e)
	}
	if got, want := HashString(string(b)), uint64(0x924d87787b48ecaf); got != want {
		t.Errorf("table fingerprint: got %#x, want %#x", got, want)
	}
}

// TestMaglevTried checks that Pick walks the table forward past tried
// targets, and returns nil once every target is tried.
func TestMaglevTried(t *testing.T) {
	p := mustBuild(t, readyEndpoints(5), Policy{TableSize: 101}, nil).(*maglevPicker)
	for _, key := range keyPool(1000) {
		first := p.Pick(key, nil)
		slot, _ := bits.Mul64(key, p.size)
		var want *Target // the next entry of the table that is another target
		for i := slot + 1; want == nil; i++ {
			if tg := &p.targets[p.table[i%p.size]]; tg != first {
				want = tg
			}
		}
		if got := p.Pick(key, []*Target{first}); got != want {
			t.Fatalf("key %x, %s tried: got %v, want %v", key, first.Endpoint.Address, nameOf(got), nameOf(want))
		}
		if got := p.Pick(key, p.Targets()); got != nil {
			t.Fatalf("key %x, all tried: got %v, want nil", key, nameOf(got))
		}
	}
}
