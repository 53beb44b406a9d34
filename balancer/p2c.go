package balancer

import (
	"math/bits"
	"math/rand/v2"
)

// p2cPicker is least-connections: up to scanMax targets, the untried one
// with the fewest active sessions per unit of weight (ties broken at
// random), so that a new endpoint takes every new session until it has its
// share and sessions moved by rebalancing all land there; beyond, by the
// power of two choices: draw two distinct untried targets, each in
// proportion to its weight, and take the one with fewer active sessions
// per unit of weight. Drawing by weight and
// comparing per unit of weight agree: at equal per-weight loads the arrivals
// are proportional to weight, which keeps the loads so.
//
// While a rollout is under way (discovery.Placement active) the draws are
// from the preferred targets; only when every one of them is tried do they
// fall back to all.
type p2cPicker struct {
	targets []Target  // snapshot order
	ptrs    []*Target // &targets[i], for Targets
	all     p2cSet    // over ptrs
	pref    *p2cSet   // over the preferred targets; nil when all are
	fp      uint64    // Fingerprint
}

// p2cSet is a set of targets to draw from.
type p2cSet struct {
	ts []*Target
	// Alias table (Walker; Vose's construction in integers) for drawing an
	// index in proportion to weight: draw i uniformly, keep it when a
	// uniform draw in [0, wsum) is below keep[i], else take alias[i].
	// nil when all weights are equal (then i itself is the draw). Draws
	// are exact up to the 2^-32 granularity of the random halves.
	keep  []uint64
	alias []uint32
	wsum  uint64
}

// newP2C builds the picker over targets, preferring those not outgoing.
func newP2C(targets []Target) *p2cPicker {
	p := &p2cPicker{targets: targets, ptrs: pointers(targets)}
	p.all = newP2CSet(p.ptrs)
	var ts []*Target
	for _, t := range p.ptrs {
		if !t.outgoing {
			ts = append(ts, t)
		}
	}
	if len(ts) > 0 && len(ts) < len(p.ptrs) {
		set := newP2CSet(ts)
		p.pref = &set
	}
	p.fp = targetsFingerprint(LeastConnections, targets)
	return p
}

func newP2CSet(ts []*Target) p2cSet {
	s := p2cSet{ts: ts}
	n := uint64(len(ts))
	equal := true
	for _, t := range ts {
		s.wsum += uint64(t.Endpoint.Weight)
		equal = equal && t.Endpoint.Weight == ts[0].Endpoint.Weight
	}
	if equal {
		return s
	}
	// Scaled weights w_i × n average wsum. Pair each light index (below
	// wsum) with a heavy one that lends it the rest of its column.
	s.keep = make([]uint64, n)
	s.alias = make([]uint32, n)
	var light, heavy []uint32
	for i, t := range ts {
		s.keep[i] = uint64(t.Endpoint.Weight) * n
		s.alias[i] = uint32(i)
		if s.keep[i] < s.wsum {
			light = append(light, uint32(i))
		} else {
			heavy = append(heavy, uint32(i))
		}
	}
	for len(light) > 0 && len(heavy) > 0 {
		l, h := light[len(light)-1], heavy[len(heavy)-1]
		light = light[:len(light)-1]
		s.alias[l] = h
		s.keep[h] -= s.wsum - s.keep[l]
		if s.keep[h] < s.wsum {
			heavy = heavy[:len(heavy)-1]
			light = append(light, h)
		}
	}
	// What is left holds exactly wsum (integer arithmetic loses nothing).
	for _, i := range append(light, heavy...) {
		s.keep[i] = s.wsum
	}
	return s
}

// draw returns an index in proportion to weight from 64 random bits: the
// high half picks a column (multiply-shift, biased by at most n/2^32), the
// low half decides between the column's index and its alias.
func (s *p2cSet) draw(r uint64) int {
	i := int((r >> 32) * uint64(len(s.ts)) >> 32)
	if s.keep != nil {
		if u, _ := bits.Mul64(r<<32, s.wsum); u >= s.keep[i] { // u = floor(low half × W / 2^32)
			i = int(s.alias[i])
		}
	}
	return i
}

// choose returns a random index other than not whose target is not tried,
// drawn in proportion to weight, or -1 when there is none. After a few
// rejected draws (most of the weight is tried) it scans from a random start.
func (s *p2cSet) choose(tried []*Target, not int) int {
	for range 4 {
		if i := s.draw(rand.Uint64()); i != not && !contains(tried, s.ts[i]) {
			return i
		}
	}
	n := len(s.ts)
	start := rand.IntN(n)
	for k := range n {
		i := (start + k) % n
		if i != not && !contains(tried, s.ts[i]) {
			return i
		}
	}
	return -1
}

// Pick ignores key; see Picker.Pick. The preferred targets are drawn from
// first, then, when every one of them is tried, all.
func (p *p2cPicker) Pick(_ uint64, tried []*Target) *Target {
	if p.pref != nil {
		if t := p.pref.pick(tried); t != nil {
			return t
		}
	}
	return p.all.pick(tried)
}

// scanMax is the most targets least-connections compares all of; above,
// it compares two drawn at random.
const scanMax = 8

// pick returns the least loaded untried target of s (scanMax or fewer),
// or draws two targets of s and returns the less loaded; nil when every
// target of s is tried. With equal weights and nothing tried one
// random word yields two distinct indexes; otherwise each index is drawn
// by weight and redrawn while it collides or is tried.
func (s *p2cSet) pick(tried []*Target) *Target {
	if len(s.ts) <= scanMax {
		return s.least(tried)
	}
	var a, b int
	switch n := len(s.ts); {
	case n == 1:
		if contains(tried, s.ts[0]) {
			return nil
		}
		return s.ts[0]
	case len(tried) == 0 && s.keep == nil:
		r := rand.Uint64()
		a = int((r >> 32) * uint64(n) >> 32)
		b = int((r & 0xffffffff) * uint64(n-1) >> 32)
		b += int(^uint(b-a) >> 63) // skip a: b++ when b >= a, without a branch

	default:
		if a = s.choose(tried, -1); a < 0 {
			return nil
		}
		if b = s.choose(tried, a); b < 0 {
			return s.ts[a]
		}
	}
	ta, tb := s.ts[a], s.ts[b]
	// active_b / w_b < active_a / w_a, without dividing; ties go to a,
	// which is as random as b.
	t := ta
	if tb.Active()*int64(ta.Endpoint.Weight) < ta.Active()*int64(tb.Endpoint.Weight) {
		t = tb
	}
	return t
}

// least returns the untried target of s with the fewest active sessions
// per unit of weight, scanning from a random start so that ties are
// broken at random; nil when every target is tried.
func (s *p2cSet) least(tried []*Target) *Target {
	n := len(s.ts)
	start := 0
	if n > 1 {
		start = rand.IntN(n)
	}
	var best *Target
	var bestActive int64
	for k := range n {
		t := s.ts[(start+k)%n]
		if contains(tried, t) {
			continue
		}
		// active_t / w_t < best / w_best, without dividing.
		if a := t.Active(); best == nil || a*int64(best.Endpoint.Weight) < bestActive*int64(t.Endpoint.Weight) {
			best, bestActive = t, a
		}
	}
	return best
}

// Targets returns the targets in snapshot order.
func (p *p2cPicker) Targets() []*Target { return p.ptrs }

// Fingerprint returns the hash of the kind and targets; see
// Picker.Fingerprint.
func (p *p2cPicker) Fingerprint() uint64 { return p.fp }
