package balancer

import (
	"math/bits"
	"math/rand/v2"
)

// p2cPicker is least-connections by the power of two choices: draw two
// distinct untried targets, each in proportion to its weight, and take the
// one with fewer active sessions per unit of weight. Drawing by weight and
// comparing per unit of weight agree: at equal per-weight loads the arrivals
// are proportional to weight, which keeps the loads so.
type p2cPicker struct {
	targets []Target  // snapshot order
	ptrs    []*Target // &targets[i], for Targets
	// Alias table (Walker; Vose's construction in integers) for drawing an
	// index in proportion to weight: draw i uniformly, keep it when a
	// uniform draw in [0, wsum) is below keep[i], else take alias[i].
	// nil when all weights are equal (then i itself is the draw). Draws
	// are exact up to the 2^-32 granularity of the random halves.
	keep  []uint64
	alias []uint32
	wsum  uint64
	fp    uint64 // Fingerprint
}

func newP2C(targets []Target) *p2cPicker {
	p := &p2cPicker{targets: targets, ptrs: pointers(targets), fp: targetsFingerprint(LeastConnections, targets)}
	n := uint64(len(targets))
	equal := true
	for _, t := range targets {
		p.wsum += uint64(t.Endpoint.Weight)
		equal = equal && t.Endpoint.Weight == targets[0].Endpoint.Weight
	}
	if equal {
		return p
	}
	// Scaled weights w_i × n average wsum. Pair each light index (below
	// wsum) with a heavy one that lends it the rest of its column.
	p.keep = make([]uint64, n)
	p.alias = make([]uint32, n)
	var light, heavy []uint32
	for i, t := range targets {
		p.keep[i] = uint64(t.Endpoint.Weight) * n
		p.alias[i] = uint32(i)
		if p.keep[i] < p.wsum {
			light = append(light, uint32(i))
		} else {
			heavy = append(heavy, uint32(i))
		}
	}
	for len(light) > 0 && len(heavy) > 0 {
		l, h := light[len(light)-1], heavy[len(heavy)-1]
		light = light[:len(light)-1]
		p.alias[l] = h
		p.keep[h] -= p.wsum - p.keep[l]
		if p.keep[h] < p.wsum {
			heavy = heavy[:len(heavy)-1]
			light = append(light, h)
		}
	}
	// What is left holds exactly wsum (integer arithmetic loses nothing).
	for _, i := range append(light, heavy...) {
		p.keep[i] = p.wsum
	}
	return p
}

// draw returns an index in proportion to weight from 64 random bits: the
// high half picks a column (multiply-shift, biased by at most n/2^32), the
// low half decides between the column's index and its alias.
func (p *p2cPicker) draw(r uint64) int {
	i := int((r >> 32) * uint64(len(p.targets)) >> 32)
	if p.keep != nil {
		if u, _ := bits.Mul64(r<<32, p.wsum); u >= p.keep[i] { // u = floor(low half × W / 2^32)
			i = int(p.alias[i])
		}
	}
	return i
}

// choose returns a random index other than not whose target is not tried,
// drawn in proportion to weight, or -1 when there is none. After a few
// rejected draws (most of the weight is tried) it scans from a random start.
func (p *p2cPicker) choose(tried []*Target, not int) int {
	for range 4 {
		if i := p.draw(rand.Uint64()); i != not && !contains(tried, &p.targets[i]) {
			return i
		}
	}
	n := len(p.targets)
	start := rand.IntN(n)
	for k := range n {
		i := (start + k) % n
		if i != not && !contains(tried, &p.targets[i]) {
			return i
		}
	}
	return -1
}

// Pick ignores key; see Picker.Pick. With equal weights and nothing tried
// one random word yields two distinct indexes; otherwise each index is drawn
// by weight and redrawn while it collides or is tried.
func (p *p2cPicker) Pick(_ uint64, tried []*Target) *Target {
	var a, b int
	switch n := len(p.targets); {
	case n == 1:
		if contains(tried, &p.targets[0]) {
			return nil
		}
		return &p.targets[0]
	case len(tried) == 0 && p.keep == nil:
		r := rand.Uint64()
		a = int((r >> 32) * uint64(n) >> 32)
		b = int((r & 0xffffffff) * uint64(n-1) >> 32)
		b += int(^uint(b-a) >> 63) // skip a: b++ when b >= a, without a branch

	default:
		if a = p.choose(tried, -1); a < 0 {
			return nil
		}
		if b = p.choose(tried, a); b < 0 {
			return &p.targets[a]
		}
	}
	ta, tb := &p.targets[a], &p.targets[b]
	// active_b / w_b < active_a / w_a, without dividing; ties go to a,
	// which is as random as b.
	t := ta
	if tb.Active()*int64(ta.Endpoint.Weight) < ta.Active()*int64(tb.Endpoint.Weight) {
		t = tb
	}
	return t
}

// Targets returns the targets in snapshot order.
func (p *p2cPicker) Targets() []*Target { return p.ptrs }

// Fingerprint returns the hash of the kind and targets; see
// Picker.Fingerprint.
func (p *p2cPicker) Fingerprint() uint64 { return p.fp }
