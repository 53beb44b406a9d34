package balancer

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/longhaul-proxy/longhaul/discovery"
)

var kinds = []Kind{Maglev, LeastConnections}

func TestParseKind(t *testing.T) {
	tests := []struct {
		in      string
		want    Kind
		wantErr bool
	}{
		{"maglev", Maglev, false},
		{"least-connections", LeastConnections, false},
		{"", 0, true},
		{"Maglev", 0, true},
		{"round-robin", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseKind(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseKind(%q): got %v, %v, want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err == nil && got.String() != tt.in {
			t.Errorf("String: got %v, want %v", got.String(), tt.in)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name    string
		policy  Policy
		n       int
		wantErr bool
	}{
		{"defaults", Policy{}, 10, false},
		{"table not prime", Policy{TableSize: 65536}, 10, true},
		{"table 1", Policy{TableSize: 1}, 1, true},
		{"table below the minimum", Policy{TableSize: 97}, 3, true},
		{"table smaller than targets", Policy{TableSize: 101}, 102, true},
		{"table equal to targets", Policy{TableSize: 101}, 101, false},
		{"table over the maximum", Policy{TableSize: 10000079}, 3, true}, // the next prime
		{"bounded 0.5", Policy{BoundedLoad: 0.5}, 3, true},
		{"bounded negative", Policy{BoundedLoad: -1}, 3, true},
		{"bounded NaN", Policy{BoundedLoad: math.NaN()}, 3, true},
		{"bounded +Inf", Policy{BoundedLoad: math.Inf(1)}, 3, true},
		{"bounded 1", Policy{BoundedLoad: 1}, 3, false},
		{"unknown kind", Policy{Kind: 7}, 3, true},
		{"load floor none", Policy{BoundedLoad: 1.25, LoadFloor: NoLoadFloor}, 3, false},
		{"load floor 1", Policy{BoundedLoad: 1.25, LoadFloor: 1}, 3, false},
		{"load floor at the maximum", Policy{BoundedLoad: 1.25, LoadFloor: MaxLoadFloor}, 3, false},
		{"load floor over the maximum", Policy{BoundedLoad: 1.25, LoadFloor: MaxLoadFloor + 1}, 3, true},
		{"load floor -2", Policy{BoundedLoad: 1.25, LoadFloor: -2}, 3, true},
		{"least-connections ignores table size", Policy{Kind: LeastConnections, TableSize: 4}, 10, false},
		{"least-connections bounded 0.5", Policy{Kind: LeastConnections, BoundedLoad: 0.5}, 3, true},
		{"table smaller than all, not than ready", Policy{TableSize: 101}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eps := readyEndpoints(tt.n)
			if tt.n == 0 { // 3 ready and 147 not eligible: only the ready count
				eps = readyEndpoints(150)
				for i := 3; i < len(eps); i++ {
					eps[i].Ready, eps[i].Serving = false, false
				}
			}
			p, err := Build(mustSnapshot(t, eps), tt.policy, nil)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrPolicy) {
				t.Errorf("got %v, want an error wrapping ErrPolicy", err)
			}
			if err != nil && p != nil {
				t.Errorf("got picker %v with error, want nil", p)
			}
		})
	}
}

// TestEligibility checks which endpoints become targets: ready ones; only
// when none is ready, serving and terminating ones; else none, and Pick
// returns nil.
func TestEligibility(t *testing.T) {
	ep := func(addr string, ready, serving, terminating bool) discovery.Endpoint {
		return discovery.Endpoint{Address: addr, Ready: ready, Serving: serving, Terminating: terminating, Weight: 1}
	}
	tests := []struct {
		name string
		eps  []discovery.Endpoint
		want []string
	}{
		{"all ready", []discovery.Endpoint{ep("10.0.0.1:80", true, true, false), ep("10.0.0.2:80", true, true, false)},
			[]string{"10.0.0.1:80", "10.0.0.2:80"}},
		{"ready and terminating: terminating never", []discovery.Endpoint{
			ep("10.0.0.1:80", true, true, false), ep("10.0.0.2:80", false, true, true), ep("10.0.0.3:80", true, true, true), ep("10.0.0.4:80", false, false, false)},
			[]string{"10.0.0.1:80"}},
		{"none ready: serving and terminating", []discovery.Endpoint{
			ep("10.0.0.1:80", false, true, true), ep("10.0.0.2:80", false, false, true), ep("10.0.0.3:80", false, true, true), ep("10.0.0.4:80", false, false, false)},
			[]string{"10.0.0.1:80", "10.0.0.3:80"}},
		{"none eligible", []discovery.Endpoint{ep("10.0.0.1:80", false, false, true), ep("10.0.0.2:80", false, true, false)}, nil},
		{"no endpoints", nil, nil},
	}
	keys := keyPool(10_000)
	for _, tt := range tests {
		for _, kind := range kinds {
			for _, c := range []float64{0, 1.25} {
				t.Run(fmt.Sprintf("%s %v c=%v", tt.name, kind, c), func(t *testing.T) {
					p := mustBuild(t, tt.eps, Policy{Kind: kind, BoundedLoad: c}, nil)
					var got []string
					for _, x := range p.Targets() {
						got = append(got, x.Endpoint.Address)
					}
					if !slices.Equal(got, tt.want) {
						t.Fatalf("Targets: got %v, want %v", got, tt.want)
					}
					for _, k := range keys {
						x := p.Pick(k, nil)
						if x == nil && len(tt.want) > 0 || x != nil && !slices.Contains(tt.want, x.Endpoint.Address) {
							t.Fatalf("Pick: got %v, want one of %v", nameOf(x), tt.want)
						}
					}
				})
			}
		}
	}
	if p, err := Build(nil, Policy{}, nil); err != nil || p.Pick(1, nil) != nil || len(p.Targets()) != 0 {
		t.Errorf("nil snapshot: got %v, %v, want a picker that picks nothing", p, err)
	}
}

// TestLoadsOutliveRebuilds checks that a counter follows its address from
// one picker to the next, and that idle counters of vanished addresses go.
func TestLoadsOutliveRebuilds(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind.String(), func(t *testing.T) {
			loads := NewLoads()
			eps := readyEndpoints(4) // addrOf(0..3)
			a := mustBuild(t, eps, Policy{Kind: kind}, loads)
			find := func(p Picker, addr string) *Target {
				for _, x := range p.Targets() {
					if x.Endpoint.Address == addr {
						return x
					}
				}
				t.Fatalf("%s not a target", addr)
				return nil
			}
			for range 3 {
				find(a, addrOf(0)).Acquire()
			}
			find(a, addrOf(1)).Acquire()
			// Next snapshot: 0 reweighted, 1 gone with a session, 2 gone idle, 4 new.
			next := []discovery.Endpoint{eps[0], eps[3], readyEndpoints(5)[4]}
			next[0].Weight = 5
			b := mustBuild(t, next, Policy{Kind: kind}, loads)
			tests := []struct {
				name string
				got  int64
				want int64
			}{
				{"B's target 0 active", find(b, addrOf(0)).Active(), 3},
				{"B's new target active", find(b, addrOf(4)).Active(), 0},
				{"Total", loads.Total(), 4},
				{"counters kept", int64(len(loads.m)), 4}, // 0, 1 (busy), 3, 4; 2 dropped
			}
			for _, tt := range tests {
				if tt.got != tt.want {
					t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
				}
			}
			find(a, addrOf(0)).Release() // a session started on A ends under B
			if got := find(b, addrOf(0)).Active(); got != 2 {
				t.Errorf("after a release through A: got %v, want %v", got, 2)
			}
			c := mustBuild(t, eps, Policy{Kind: kind}, loads) // 1 comes back
			if got := find(c, addrOf(1)).Active(); got != 1 {
				t.Errorf("returning endpoint: got %v, want %v", got, 1)
			}
		})
	}
}

// TestConcurrentPickRebuild picks, acquires and releases from several
// goroutines while another rebuilds the picker; run it with -race.
func TestConcurrentPickRebuild(t *testing.T) {
	policies := []Policy{
		{Kind: Maglev, TableSize: 1009},
		{Kind: Maglev, TableSize: 1009, BoundedLoad: 1.25},
		{Kind: LeastConnections},
	}
	for _, pol := range policies {
		loads := NewLoads()
		var cur atomic.Pointer[Picker]
		snaps := [][]discovery.Endpoint{readyEndpoints(8), readyEndpoints(12)[4:], readyEndpoints(3)}
		build := func(i int) {
			p := mustBuild(t, snaps[i%len(snaps)], pol, loads)
			cur.Store(&p)
		}
		build(0)
		var wg sync.WaitGroup
		var stop atomic.Bool
		var picks atomic.Int64
		for g := range 4 {
			wg.Go(func() {
				keys := keyPool(64)
				var held []*Target
				for i := 0; !stop.Load(); i++ {
					p := *cur.Load()
					x := p.Pick(keys[(i+g)%len(keys)], held[:min(len(held), 2)])
					if x == nil {
						continue
					}
					x.Acquire()
					_ = x.Active()
					if picks.Add(1)%64 == 0 {
						runtime.Gosched() // let the builder in: 4 busy goroutines, maybe 2 Ps
					}
					held = append(held, x)
					if len(held) > 16 {
						held[0].Release()
						held = held[1:]
					}
				}
				for _, x := range held {
					x.Release()
				}
			})
		}
		for i := range 60 {
			build(i)
			_ = loads.Total()
			for want := picks.Load() + 200; picks.Load() < want; {
				runtime.Gosched() // let the pickers use this picker
			}
		}
		stop.Store(true)
		wg.Wait()
		if got := loads.Total(); got != 0 {
			t.Errorf("%+v: Total after all released: got %v, want 0", pol, got)
		}
		build(0)
		for _, x := range (*cur.Load()).Targets() {
			if got := x.Active(); got != 0 {
				t.Errorf("%+v: %s active after all released: got %v, want 0", pol, x.Endpoint.Address, got)
			}
		}
	}
}

// TestPickAllocs checks that no Pick variant allocates.
func TestPickAllocs(t *testing.T) {
	weighted := readyEndpoints(20)
	for i := range weighted {
		weighted[i].Weight = uint32(1 + i%3)
	}
	tests := []struct {
		name   string
		eps    []discovery.Endpoint
		policy Policy
	}{
		{"maglev", readyEndpoints(20), Policy{}},
		{"maglev bounded", weighted, Policy{BoundedLoad: 1.25}},
		{"least-connections", readyEndpoints(20), Policy{Kind: LeastConnections}},
		{"least-connections weighted", weighted, Policy{Kind: LeastConnections}},
		{"empty", nil, Policy{}},
	}
	keys := keyPool(256)
	for _, tt := range tests {
		p := mustBuild(t, tt.eps, tt.policy, nil)
		var tried []*Target
		if ts := p.Targets(); len(ts) > 2 {
			tried = ts[:2]
			for _, x := range ts {
				x.Acquire() // some load for the bounded walk
			}
		}
		var sink *Target
		i := 0
		for _, tr := range [][]*Target{nil, tried} {
			got := testing.AllocsPerRun(1000, func() {
				sink = p.Pick(keys[i%len(keys)], tr)
				i++
			})
			if got != 0 {
				t.Errorf("%s, %d tried: got %v allocs, want 0", tt.name, len(tr), got)
			}
		}
		_ = sink
	}
}

// TestValidTableSize checks the one range of table sizes at its edges and
// that the error names the value and the range.
func TestValidTableSize(t *testing.T) {
	for n, want := range map[uint64]bool{0: false, 97: false, 100: false, 101: true, 65536: false, 65537: true,
		10000019: true, 10000079: false, 1 << 63: false} {
		err := ValidTableSize(n)
		if got := err == nil; got != want {
			t.Errorf("ValidTableSize(%d): %v, want valid %v", n, err, want)
		}
		if err == nil {
			continue
		}
		if !errors.Is(err, ErrPolicy) {
			t.Errorf("ValidTableSize(%d): %v does not wrap ErrPolicy", n, err)
		}
		if wantText := fmt.Sprintf("tableSize %d: want a prime from 101 to 10000019", n); !strings.Contains(err.Error(), wantText) {
			t.Errorf("ValidTableSize(%d): %q, want it to say %q", n, err, wantText)
		}
	}
}

func TestIsPrime(t *testing.T) {
	for n, want := range map[uint64]bool{0: false, 1: false, 2: true, 3: true, 4: false, 9: false, 25: false,
		97: true, 101: true, 65536: false, 65537: true, 10000019: true, 10000079: true, 10000021: false} {
		if got := isPrime(n); got != want {
			t.Errorf("isPrime(%d): got %v, want %v", n, got, want)
		}
	}
}
