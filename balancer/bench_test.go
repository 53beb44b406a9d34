package balancer

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

var (
	sinkPicker Picker
	sinkTarget *Target
)

const poolSize = 1024 // keys per benchmark, a power of two

func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			s := mustSnapshot(b, readyEndpoints(n))
			loads := NewLoads()
			b.ReportAllocs()
			for b.Loop() {
				p, err := Build(s, Policy{TableSize: DefaultTableSize}, loads)
				if err != nil {
					b.Fatal(err)
				}
				sinkPicker = p
			}
		})
	}
}

func BenchmarkPickMaglev(b *testing.B) {
	p := mustBuild(b, readyEndpoints(100), Policy{}, nil)
	keys := keyPool(poolSize)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		sinkTarget = p.Pick(keys[i&(poolSize-1)], nil)
		i++
	}
}

func BenchmarkPickMaglevHashAddr(b *testing.B) {
	p := mustBuild(b, readyEndpoints(100), Policy{}, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	addrs := make([]netip.Addr, poolSize)
	for i := range addrs {
		var a [16]byte
		for j := range a {
			a[j] = byte(rng.Uint32())
		}
		addrs[i] = netip.AddrFrom16(a)
		if i%2 == 0 {
			addrs[i] = netip.AddrFrom4([4]byte(a[:4]))
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		sinkTarget = p.Pick(HashAddr(addrs[i&(poolSize-1)]), nil)
		i++
	}
}

// boundedPicker returns a bounded-load picker (c = 1.25, 100 endpoints)
// carrying 10,000 sessions placed by it, 90 % of them from 3 keys, so that
// some endpoints are at their cap.
func boundedPicker(b *testing.B) Picker {
	p := mustBuild(b, readyEndpoints(100), Policy{BoundedLoad: 1.25}, nil)
	rng := rand.New(rand.NewPCG(3, 4))
	hot := keyPool(3)
	for range 10_000 {
		k := rng.Uint64()
		if rng.IntN(10) < 9 {
			k = hot[rng.IntN(3)]
		}
		p.Pick(k, nil).Acquire()
	}
	return p
}

func BenchmarkPickBounded(b *testing.B) {
	p := boundedPicker(b)
	keys := keyPool(poolSize)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		sinkTarget = p.Pick(keys[i&(poolSize-1)], nil)
		i++
	}
}

// p2cPickerLoaded returns a least-connections picker over 100 endpoints
// carrying 10,000 sessions placed by it.
func p2cPickerLoaded(b *testing.B) Picker {
	p := mustBuild(b, readyEndpoints(100), Policy{Kind: LeastConnections}, nil)
	for range 10_000 {
		p.Pick(0, nil).Acquire()
	}
	return p
}

func BenchmarkPickP2C(b *testing.B) {
	p := p2cPickerLoaded(b)
	b.ReportAllocs()
	i := uint64(0)
	for b.Loop() {
		sinkTarget = p.Pick(i, nil)
		i++
	}
}

// BenchmarkPickParallel picks from all cores at once; with acquire-release
// each pick also counts a session on and off, the cost of the shared
// counters under contention.
func BenchmarkPickParallel(b *testing.B) {
	tests := []struct {
		name    string
		picker  func(*testing.B) Picker
		acquire bool
	}{
		{"maglev", func(b *testing.B) Picker { return mustBuild(b, readyEndpoints(100), Policy{}, nil) }, false},
		{"bounded", boundedPicker, false},
		{"p2c", p2cPickerLoaded, false},
		{"bounded+acquire-release", boundedPicker, true},
		{"p2c+acquire-release", p2cPickerLoaded, true},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			p := tt.picker(b)
			keys := keyPool(poolSize)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var t *Target
				i := rand.IntN(poolSize)
				for pb.Next() {
					t = p.Pick(keys[i&(poolSize-1)], nil)
					if tt.acquire {
						t.Acquire()
						t.Release()
					}
					i++
				}
				sinkTarget = t
			})
		})
	}
}
