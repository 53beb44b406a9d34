package balancer

import (
	"cmp"
	"encoding/binary"
	"math"
	"math/bits"
	"slices"
)

// maglevPicker looks keys up in a Maglev table (Eisenbud et al., "Maglev: A
// Fast and Reliable Software Network Load Balancer", NSDI 2016, section 3.4).
type maglevPicker struct {
	targets []Target  // snapshot order
	ptrs    []*Target // &targets[i], for Targets
	table   []uint32  // len size; each entry indexes targets
	size    uint64    // M, prime
	c       float64   // bounded-load factor; 0 when off
	floor   float64   // Policy.LoadFloor as validated: 0 when none
	wsum    float64   // W, the sum of target weights
	loads   *Loads    // for the total under bounded loads
	fp      uint64    // Fingerprint
}

// newMaglev builds the table over targets (at least one; len(targets) <= m).
// Endpoints claim slots in address order, whatever the order of targets, so
// that the table depends only on the set of endpoints, their weights and m.
// p is validated: TableSize is set and LoadFloor is the floor itself.
func newMaglev(targets []Target, p Policy) *maglevPicker {
	m := p.TableSize
	order := make([]int, len(targets)) // fill order: by address
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Compare(targets[a].Endpoint.Address, targets[b].Endpoint.Address)
	})
	var wsum uint64
	fillers := make([]filler, len(order))
	for i, ti := range order {
		addr := targets[ti].Endpoint.Address
		fillers[i] = filler{
			next:   seededHash(addr, offsetSeed) % m,
			skip:   seededHash(addr, skipSeed)%(m-1) + 1,
			weight: uint64(targets[ti].Endpoint.Weight),
			id:     uint32(ti),
		}
		wsum += uint64(targets[ti].Endpoint.Weight)
	}
	mp := &maglevPicker{
		targets: targets,
		ptrs:    pointers(targets),
		table:   populate(fillers, m),
		size:    m,
		c:       p.BoundedLoad,
		wsum:    float64(wsum),
		loads:   targets[0].loads,
	}
	if mp.c > 0 {
		mp.floor = float64(p.LoadFloor)
	}
	mp.fp = mp.fingerprint(order)
	return mp
}

// fingerprint hashes what decides Pick: the kind, M, c, the floor, the
// targets (address and weight) in address order and every table entry as
// the address rank of its target (order lists targets by address), so that
// it depends on neither the order of targets nor the process.
func (p *maglevPicker) fingerprint(order []int) uint64 {
	f := newFingerprinter(Maglev)
	f.u64(p.size)
	f.u64(math.Float64bits(p.c))
	f.u64(math.Float64bits(p.floor))
	rank := make([]uint32, len(order))
	for r, ti := range order {
		rank[ti] = uint32(r)
		f.target(&p.targets[ti])
	}
	var buf [4096]byte // the table in chunks: one Write per entry is slow
	n := 0
	for _, id := range p.table {
		binary.LittleEndian.PutUint32(buf[n:], rank[id])
		if n += 4; n == len(buf) {
			f.d.Write(buf[:])
			n = 0
		}
	}
	f.d.Write(buf[:n])
	return f.sum()
}

// Fingerprint returns the hash of the table and policy; see
// Picker.Fingerprint.
func (p *maglevPicker) Fingerprint() uint64 { return p.fp }

// filler is one endpoint's state while the table is populated: its
// permutation of the slots is next, next+skip, next+2·skip, ... (mod M).
type filler struct {
	next, skip      uint64 // next slot to try; stride, in [1, M-1]
	weight, claimed uint64
	id              uint32 // value of the endpoint's table entries
}

// populate fills a table of m entries (m prime, at least len(fs) >= 1).
// In each round every endpoint, in order, claims the next free slot of its
// permutation, as in the paper; with unequal weights an endpoint of weight w
// claims only while its claimed count is below round × w / maxWeight, so after
// r rounds it holds ceil(r × w / maxWeight) slots: its weight share within
// two slots. The heaviest endpoint claims every round, so the loop ends.
// It takes about M·ln M probes with equal weights.
func populate(fs []filler, m uint64) []uint32 {
	const free = ^uint32(0)
	table := make([]uint32, m)
	for i := range table {
		table[i] = free
	}
	var maxW uint64
	for _, f := range fs {
		maxW = max(maxW, f.weight)
	}
	filled := uint64(0)
	for round := uint64(1); ; round++ {
		for i := range fs {
			f := &fs[i]
			if f.claimed*maxW >= round*f.weight {
				continue // not its turn this round
			}
			for table[f.next] != free {
				f.next = stride(f.next, f.skip, m)
			}
			table[f.next] = f.id
			f.next = stride(f.next, f.skip, m)
			f.claimed++
			if filled++; filled == m {
				return table
			}
		}
	}
}

// stride returns (pos + skip) mod m for pos, skip < m, without dividing.
func stride(pos, skip, m uint64) uint64 {
	pos += skip
	if pos >= m {
		pos -= m
	}
	return pos
}

// Pick maps key to a slot by the high half of key × M (uniform for a
// well-mixed key, and cheaper than key mod M), then returns that slot's
// target, or walks forward as Picker.Pick describes.
func (p *maglevPicker) Pick(key uint64, tried []*Target) *Target {
	slot, _ := bits.Mul64(key, p.size)
	if len(tried) == 0 {
		// Without bounded loads, or below the floor (then below the cap
		// whatever the total), the key's own slot decides.
		if t := &p.targets[p.table[slot]]; p.c == 0 || float64(t.Active()) < p.floor {
			return t
		}
	}
	return p.walk(slot, tried)
}

// walk returns the first target from slot on that is not tried and, under
// bounded loads, below its cap; failing that the first untried target met;
// nil when every target is tried. The caps sum to at least Total+1, so with
// nothing tried some target is below its cap. After failed attempts every
// untried target may be at its cap (say one endpoint of two is down): that
// is checked first, over the targets, so that the walk stays short instead
// of covering the whole table.
func (p *maglevPicker) walk(slot uint64, tried []*Target) *Target {
	if allTried(p.targets, tried) {
		return nil
	}
	capped, next := p.c > 0, int64(0) // next: Total+1, the total with this session
	if capped {
		next = p.loads.Total() + 1
		capped = len(tried) == 0 || p.anyBelowCap(tried, next)
	}
	var first *Target
	for range p.size {
		t := &p.targets[p.table[slot]]
		if !contains(tried, t) {
			if !capped || p.belowCap(t, next) {
				return t
			}
			if first == nil {
				first = t
			}
		}
		if slot++; slot == p.size {
			slot = 0
		}
	}
	return first // every untried target reached its cap during the walk
}

// belowCap reports whether t may take a session when the total becomes
// next: active < ceil(c × next × w / W + F), F the floor, that is, active
// being an integer, active × W < c × next × w + F × W. Both sides are exact
// for counts below 2^53 and a c exact in binary (1, 1.25, 1.5, 2); F is at
// most MaxLoadFloor. So after the session t carries at most
// ceil(c × next × w / W) + F.
//
// The load is the instantaneous count of sessions, not a smoothed one: a
// time average would lag a burst of a hot key and let its endpoint pass the
// cap. The floor is what keeps the choice from flickering: a target is
// skipped only F sessions above its share, not at each arrival.
func (p *maglevPicker) belowCap(t *Target, next int64) bool {
	return float64(t.Active())*p.wsum < p.c*float64(next*int64(t.Endpoint.Weight))+p.floor*p.wsum
}

// anyBelowCap reports whether some target not in tried is below its cap.
func (p *maglevPicker) anyBelowCap(tried []*Target, next int64) bool {
	for i := range p.targets {
		if t := &p.targets[i]; !contains(tried, t) && p.belowCap(t, next) {
			return true
		}
	}
	return false
}

// Targets returns the targets in snapshot order.
func (p *maglevPicker) Targets() []*Target { return p.ptrs }
