package balancer

import (
	"cmp"
	"encoding/binary"
	"math"
	"math/bits"
	"slices"

	"github.com/longhaul-proxy/longhaul/discovery"
)

// maglevPicker looks keys up in a Maglev table (Eisenbud et al., "Maglev: A
// Fast and Reliable Software Network Load Balancer", NSDI 2016, section 3.4).
//
// During a rollout the table also holds placeholders (Target.leaving) for
// the leaving endpoints of discovery.Placement, after the eligible targets:
// a key whose slot is a placeholder walks on to a preferred target (not
// outgoing), so that only the leaving endpoints' keys go to the new
// revision and every other key stays.
type maglevPicker struct {
	targets []Target  // eligible in snapshot order, then placeholders
	n       int       // eligible targets: targets[:n]
	ptrs    []*Target // &targets[i] for i < n, for Targets
	table   []uint32  // len size; each entry indexes targets
	size    uint64    // M, prime
	c       float64   // bounded-load factor; 0 when off
	floor   float64   // Policy.LoadFloor as validated: 0 when none
	wsum    float64   // W, the sum of eligible target weights
	loads   *Loads    // for the total under bounded loads
	fp      uint64    // Fingerprint
}

// newMaglev builds the table over targets, of which the first n (at least
// one) are eligible and the rest placeholders (len(targets) <= m).
// Endpoints claim slots in the order of their hash keys (hashKeys: the
// identity, else the address), and their permutations are seeded by those
// keys, whatever the order of targets, so that the table depends only on
// the set of identities, their weights and m: an endpoint replaced under a
// new address but the same identity holds exactly its predecessor's slots.
// p is validated: TableSize is set and LoadFloor is the floor itself.
func newMaglev(targets []Target, n int, p Policy) *maglevPicker {
	m := p.TableSize
	keys, ids := hashKeys(targets)
	order := make([]int, len(targets)) // fill order: by hash key
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(keys[a], keys[b]) })
	var wsum uint64
	fillers := make([]filler, len(order))
	for i, ti := range order {
		fillers[i] = filler{
			next:   seededHash(keys[ti], offsetSeed) % m,
			skip:   seededHash(keys[ti], skipSeed)%(m-1) + 1,
			weight: uint64(targets[ti].Endpoint.Weight),
			id:     uint32(ti),
		}
		if ti < n {
			wsum += uint64(targets[ti].Endpoint.Weight)
		}
	}
	mp := &maglevPicker{
		targets: targets,
		n:       n,
		ptrs:    pointers(targets[:n]),
		table:   populate(fillers, m),
		size:    m,
		c:       p.BoundedLoad,
		wsum:    float64(wsum),
		loads:   targets[0].loads,
	}
	if mp.c > 0 {
		mp.floor = float64(p.LoadFloor)
	}
	mp.fp = mp.fingerprint(order, keys, ids)
	return mp
}

// idKeyPrefix starts the hash key of an endpoint hashed by its ID, so that
// an ID never hashes like an address ("ip:port" never starts with it) and
// the keys of one table are unique.
const idKeyPrefix = "id/"

// hashKeys returns the string each target is hashed by, indexed like
// targets, and whether any target has an ID. A target hashes by
// idKeyPrefix+ID when it holds its ID; otherwise (no ID, or another target
// holds the ID) by its address. Of targets sharing an ID, the one of
// highest discovery.Rank holds it, then the one of lowest address: a
// replacement that is ready takes the ID from a predecessor that is not.
// Addresses are unique (Snapshot), so the keys are unique and depend only
// on the set of targets, not their order.
func hashKeys(targets []Target) (keys []string, ids bool) {
	keys = make([]string, len(targets))
	var holder map[string]int // ID to the index of the target holding it
	for i := range targets {
		e := &targets[i].Endpoint
		keys[i] = e.Address
		if e.ID == "" {
			continue
		}
		if holder == nil {
			holder = make(map[string]int)
		}
		j, ok := holder[e.ID]
		if !ok || holds(e, &targets[j].Endpoint) {
			holder[e.ID] = i
		}
	}
	for id, i := range holder {
		keys[i] = idKeyPrefix + id
	}
	return keys, holder != nil
}

// holds reports whether e rather than o holds their shared ID: the more
// available, then the lower address.
func holds(e, o *discovery.Endpoint) bool {
	if re, ro := discovery.Rank(*e), discovery.Rank(*o); re != ro {
		return re > ro
	}
	return e.Address < o.Address
}

// fingerprint hashes what decides Pick: the kind, M, c, the floor, the
// targets (address and weight) in hash-key order, every table entry as the
// rank of its target in that order (order lists targets by hash key), and,
// when some target has an ID, the hash keys in that order, so that it
// depends on neither the order of targets nor the process. Without IDs the
// key order is the address order and the value is the one of releases
// before IDs.
func (p *maglevPicker) fingerprint(order []int, keys []string, ids bool) uint64 {
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
	if ids {
		f.u64(identitiesMark)
		for _, ti := range order {
			f.str(keys[ti])
		}
	}
	if len(p.targets) > p.n || slices.ContainsFunc(p.targets, func(t Target) bool { return t.outgoing }) {
		ts := make([]*Target, len(order))
		for r, ti := range order {
			ts[r] = &p.targets[ti]
		}
		f.outgoing(ts)
	}
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
// target, or walks forward as Picker.Pick describes. A slot held by a
// placeholder walks to a preferred target.
func (p *maglevPicker) Pick(key uint64, tried []*Target) *Target {
	slot, _ := bits.Mul64(key, p.size)
	id := p.table[slot]
	if len(tried) == 0 && int(id) < p.n {
		// Without bounded loads, or below the floor (then below the cap
		// whatever the total), the key's own slot decides.
		if t := &p.targets[id]; p.c == 0 || float64(t.Active()) < p.floor {
			return t
		}
	}
	return p.walk(slot, tried, int(id) >= p.n)
}

// walk returns the first target from slot on that is not tried, not a
// placeholder, preferred when avoid is set and some preferred target may
// be had, and, under bounded loads, below its cap; failing that the first
// such target met regardless of its cap; nil when every target is tried.
// The caps sum to at least Total+1, so with nothing tried some target is
// below its cap. After failed attempts every untried target may be at its
// cap (say one endpoint of two is down): that is checked first, over the
// targets, so that the walk stays short instead of covering the whole
// table.
func (p *maglevPicker) walk(slot uint64, tried []*Target, avoid bool) *Target {
	eligible := p.targets[:p.n]
	if allTried(eligible, tried) {
		return nil
	}
	capped, next := p.c > 0, int64(0) // next: Total+1, the total with this session
	if capped {
		next = p.loads.Total() + 1
		capped = len(tried) == 0 || p.anyBelowCap(tried, next)
	}
	// A placeholder's key goes to a preferred target, below its cap if one
	// is; only when none is left does it go to an outgoing one.
	avoid = avoid && p.any(func(t *Target) bool {
		return !t.outgoing && !contains(tried, t) && (!capped || p.belowCap(t, next))
	})
	var first *Target
	for range p.size {
		t := &p.targets[p.table[slot]]
		if !t.leaving && !contains(tried, t) && (!avoid || !t.outgoing) {
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

// anyBelowCap reports whether some eligible target not in tried is below
// its cap.
func (p *maglevPicker) anyBelowCap(tried []*Target, next int64) bool {
	return p.any(func(t *Target) bool { return !contains(tried, t) && p.belowCap(t, next) })
}

// any reports whether f holds for some eligible target.
func (p *maglevPicker) any(f func(*Target) bool) bool {
	for i := range p.targets[:p.n] {
		if f(&p.targets[i]) {
			return true
		}
	}
	return false
}

// Targets returns the targets in snapshot order.
func (p *maglevPicker) Targets() []*Target { return p.ptrs }
