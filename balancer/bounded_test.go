package balancer

import (
	"math/rand/v2"
	"testing"
)

// TestBoundedLoad acquires sessions under skewed keys (90 % from 3 keys) and
// checks, after every acquire, that no endpoint carries more than
// ceil(c × Total × w_i / W) + F sessions, F the load floor (none, or the
// default). c is given as num/den too, so that the check is exact integer
// arithmetic. With c = 0 the same check, at c = 5/4 and no floor, must
// fail: it shows that the hot keys do overload their endpoints.
func TestBoundedLoad(t *testing.T) {
	equal := []uint32{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}
	tests := []struct {
		name       string
		c          float64
		num, den   int64
		floor      int // Policy.LoadFloor
		weights    []uint32
		wantCapped bool
	}{
		{"c=1.25", 1.25, 5, 4, NoLoadFloor, equal, true},
		{"c=1", 1, 1, 1, NoLoadFloor, equal, true},
		{"c=1.5 weights 1..5", 1.5, 3, 2, NoLoadFloor, []uint32{1, 2, 3, 4, 5, 1, 2, 3, 4, 5}, true},
		{"c=2 weights 1,8", 2, 2, 1, NoLoadFloor, []uint32{1, 8, 1, 8}, true},
		{"c=1.25 default floor", 1.25, 5, 4, 0, equal, true},
		{"c=1 floor 3 weights 1..5", 1, 1, 1, 3, []uint32{1, 2, 3, 4, 5, 1, 2, 3, 4, 5}, true},
		{"c=0 concentrates", 0, 5, 4, NoLoadFloor, equal, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eps := readyEndpoints(len(tt.weights))
			var wsum int64
			for i, w := range tt.weights {
				eps[i].Weight = w
				wsum += int64(w)
			}
			loads := NewLoads()
			p := mustBuild(t, eps, Policy{BoundedLoad: tt.c, LoadFloor: tt.floor}, loads)
			f := int64(max(tt.floor, 0))
			if tt.floor == 0 {
				f = DefaultLoadFloor
			}
			rng := rand.New(rand.NewPCG(7, 7))
			hot := keyPool(3)
			key := func() uint64 {
				if rng.IntN(10) < 9 {
					return hot[rng.IntN(3)]
				}
				return rng.Uint64()
			}
			// over reports whether x carries more than its cap: active >
			// ceil(q) + F with q = num·Total·w / (den·W), i.e.
			// active-F-1 >= q.
			over := func(x *Target) bool {
				return (x.Active()-f-1)*tt.den*wsum >= tt.num*loads.Total()*int64(x.Endpoint.Weight)
			}
			var sessions []*Target
			exceeded := false
			// Arrivals only: every endpoint stays within its cap.
			for range 5000 {
				x := p.Pick(key(), nil)
				x.Acquire()
				sessions = append(sessions, x)
				for _, y := range p.Targets() {
					if over(y) {
						exceeded = true
						if tt.wantCapped {
							t.Fatalf("after %d sessions, %s (weight %d): got %v active, want at most ceil(%v × %v × %d / %d) + %d",
								len(sessions), y.Endpoint.Address, y.Endpoint.Weight, y.Active(), tt.c, loads.Total(), y.Endpoint.Weight, wsum, f)
						}
					}
				}
			}
			if !tt.wantCapped && !exceeded {
				t.Fatalf("c=0: got every endpoint within %d/%d of its share, want the hot keys to overload theirs", tt.num, tt.den)
			}
			// Departures shrink every cap, so from here on only the chosen
			// endpoint is sure to be within its cap when it is chosen.
			for range 5000 {
				if rng.IntN(2) == 0 {
					i := rng.IntN(len(sessions))
					sessions[i].Release()
					sessions[i] = sessions[len(sessions)-1]
					sessions = sessions[:len(sessions)-1]
					continue
				}
				x := p.Pick(key(), nil)
				x.Acquire()
				sessions = append(sessions, x)
				if tt.wantCapped && over(x) {
					t.Fatalf("%s (weight %d): got %v active, want at most ceil(%v × %v × %d / %d) + %d",
						x.Endpoint.Address, x.Endpoint.Weight, x.Active(), tt.c, loads.Total(), x.Endpoint.Weight, wsum, f)
				}
			}
			for _, x := range sessions {
				x.Release()
			}
			if got := loads.Total(); got != 0 {
				t.Errorf("Total after releasing all: got %v, want 0", got)
			}
		})
	}
}

// TestBoundedSoftCap checks that a key stays on its endpoint while that is
// below its cap, moves when it is at its cap, and that the cap yields rather
// than refuse a session when every untried target is at its cap.
func TestBoundedSoftCap(t *testing.T) {
	loads := NewLoads()
	p := mustBuild(t, readyEndpoints(2), Policy{BoundedLoad: 1, LoadFloor: NoLoadFloor}, loads)
	a, b := p.Targets()[0], p.Targets()[1]
	keys := keyPool(200)
	var home []uint64 // keys whose first choice is b
	for _, k := range keys {
		if p.Pick(k, nil) == b {
			home = append(home, k)
		}
	}
	if len(home) == 0 {
		t.Fatal("no key maps to the second endpoint")
	}
	for range 10 {
		b.Acquire() // Total 10: b's cap is ceil(11/2) = 6, so b is full
	}
	tests := []struct {
		name  string
		tried []*Target
		want  *Target
	}{
		{"b full: a", nil, a},
		{"a tried, b full: b anyway", []*Target{a}, b},
		{"both tried: nil", []*Target{a, b}, nil},
	}
	for _, tt := range tests {
		for _, k := range home {
			if got := p.Pick(k, tt.tried); got != tt.want {
				t.Fatalf("%s: got %v, want %v", tt.name, nameOf(got), nameOf(tt.want))
			}
		}
	}
}
