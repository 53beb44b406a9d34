// Package balancer chooses an endpoint of a service for a key, fast.
//
// Build turns a discovery.Snapshot into an immutable Picker off the hot path;
// callers swap pickers with an atomic.Pointer. Pick neither allocates nor
// locks. Two policies exist: Maglev consistent hashing (optionally with
// bounded loads) and least-connections by the power of two choices.
//
// Every replica of longhaul maps a key to the same endpoint: key hashes and
// Maglev tables use fixed seeds (never hash/maphash's per-process seed) and
// tables are built from the endpoints' hash identities (discovery.Endpoint.ID,
// else the address) in sorted order. Only the Maglev table uses identities;
// least-connections and everything else go by address.
//
// Active-session counters live in Loads, keyed by endpoint address, so that
// they outlive picker rebuilds.
package balancer

import (
	"errors"
	"fmt"
	"math"

	"github.com/longhaul-proxy/longhaul/discovery"
)

// Kind names a balancing policy. The zero value is Maglev.
type Kind int

const (
	// Maglev is consistent hashing by a Maglev lookup table (NSDI 2016):
	// a key maps to the same endpoint on every replica, and a change of one
	// endpoint moves little more than that endpoint's share of keys.
	Maglev Kind = iota
	// LeastConnections draws two endpoints at random (in proportion to
	// weight) and takes the one with fewer active sessions per unit of
	// weight. It ignores the key.
	LeastConnections
)

// String returns the name ParseKind accepts for k.
func (k Kind) String() string {
	switch k {
	case Maglev:
		return "maglev"
	case LeastConnections:
		return "least-connections"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// ParseKind returns the Kind named s: "maglev" or "least-connections".
func ParseKind(s string) (Kind, error) {
	switch s {
	case "maglev":
		return Maglev, nil
	case "least-connections":
		return LeastConnections, nil
	}
	return 0, fmt.Errorf("balancer policy %q: want maglev or least-connections", s)
}

// Maglev table sizes: this package owns the one range every table, built or
// configured, is checked against (ValidTableSize).
const (
	// DefaultTableSize is the table size used when Policy.TableSize is 0.
	// It is prime, and at least 100 times the endpoint count up to 655
	// endpoints, which keeps each endpoint's share within 1 % of its
	// weight share.
	DefaultTableSize = 65537
	// MinTableSize is the smallest table: a prime 100 times one endpoint.
	MinTableSize = 101
	// MaxTableSize bounds a table so that a configuration typo cannot
	// allocate gigabytes: 4 bytes per entry, 40 MB at the bound. It is
	// prime.
	MaxTableSize = 10_000_019
)

// ValidTableSize returns nil when n is a Maglev table size, a prime from
// MinTableSize to MaxTableSize, or else an error wrapping ErrPolicy that
// names n and the range. It does not check n against a number of targets.
func ValidTableSize(n uint64) error {
	if n < MinTableSize || n > MaxTableSize || !isPrime(n) {
		return fmt.Errorf("%w: tableSize %d: want a prime from %d to %d", ErrPolicy, n, MinTableSize, MaxTableSize)
	}
	return nil
}

// Policy says how a Picker chooses. The zero value is Maglev with the default
// table size and bounded loads off.
type Policy struct {
	// Kind is the balancing algorithm.
	Kind Kind
	// TableSize is the Maglev table size M: 0 means DefaultTableSize;
	// otherwise it passes ValidTableSize and is at least the number of
	// targets. Keep
	// M > 100 × targets for an even spread. Ignored by LeastConnections.
	TableSize uint64
	// BoundedLoad is the factor c of consistent hashing with bounded loads:
	// 0 turns it off; otherwise c >= 1 and a target i is skipped while its
	// active sessions reach its cap, c × (Total+1) × w_i / W + LoadFloor
	// (rounded up), W the sum of target weights. Ignored by
	// LeastConnections, which balances by load already.
	BoundedLoad float64
	// LoadFloor is the number of sessions a target may carry above its
	// bounded-load share c × (Total+1) × w_i / W before it is skipped: 0
	// means DefaultLoadFloor, NoLoadFloor means none (the cap of the
	// paper), otherwise 1 to MaxLoadFloor. So a target with fewer than
	// LoadFloor active sessions is never skipped, and bounded loads move
	// keys only on real overload: without a floor the cap is 1 while
	// fewer sessions than targets are active, a target with one session
	// is skipped, and replicas, each counting only its own sessions,
	// disagree on where keys go. Ignored when BoundedLoad is 0.
	LoadFloor int
}

// Load floors (Policy.LoadFloor).
const (
	// DefaultLoadFloor is the floor used when Policy.LoadFloor is 0. With
	// 32 requests in flight per replica over 10 endpoints, on keys whose
	// hottest draws 17 % of requests (Zipf, s = 1.1), two replicas agree
	// on all keys but a few in ten thousand (TestReplicaAgreement); a
	// floor of 8 leaves them at about 98.7 %. A hot key's endpoint stays
	// within c × mean + 16 sessions, a small excess once the mean is in
	// the hundreds, where overload matters.
	DefaultLoadFloor = 16
	// NoLoadFloor turns the floor off: the cap is ceil(c × (Total+1) ×
	// w_i / W).
	NoLoadFloor = -1
	// MaxLoadFloor bounds LoadFloor, so that the cap arithmetic stays
	// exact.
	MaxLoadFloor = 1 << 20
)

// ErrPolicy is wrapped by every error Build returns for an invalid Policy.
var ErrPolicy = errors.New("invalid balancer policy")

func (p Policy) validate(targets int) (Policy, error) {
	if c := p.BoundedLoad; c != 0 && !(c >= 1 && !math.IsInf(c, 1)) {
		return p, fmt.Errorf("%w: boundedLoad %v: want 0 (off) or a finite factor >= 1", ErrPolicy, c)
	}
	switch f := p.LoadFloor; {
	case f == 0:
		p.LoadFloor = DefaultLoadFloor
	case f == NoLoadFloor:
		p.LoadFloor = 0
	case f < 0 || f > MaxLoadFloor:
		return p, fmt.Errorf("%w: loadFloor %d: want 0 (default %d), %d (none) or 1 to %d",
			ErrPolicy, f, DefaultLoadFloor, NoLoadFloor, MaxLoadFloor)
	}
	switch p.Kind {
	case Maglev:
		if p.TableSize == 0 {
			p.TableSize = DefaultTableSize
		}
		if err := ValidTableSize(p.TableSize); err != nil {
			return p, err
		}
		if p.TableSize < uint64(targets) {
			return p, fmt.Errorf("%w: tableSize %d is smaller than the %d eligible endpoints", ErrPolicy, p.TableSize, targets)
		}
	case LeastConnections:
	default:
		return p, fmt.Errorf("%w: unknown kind %d", ErrPolicy, int(p.Kind))
	}
	return p, nil
}

// isPrime reports whether n is prime by trial division by odd numbers; the
// callers bound n by MaxTableSize first, so this takes at most about 1600
// divisions.
func isPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	if n%2 == 0 {
		return n == 2
	}
	for d := uint64(3); d*d <= n; d += 2 {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// Picker chooses a target for a key. It is built off the hot path by Build
// and is immutable afterwards (only the targets' load counters change); it is
// safe for concurrent use, and Pick neither allocates nor locks.
type Picker interface {
	// Pick returns the target for a key hash, skipping the targets in tried
	// (previous attempts that failed to connect, at most a few), or nil
	// when no target is left. key must be a well-mixed hash (HashString,
	// HashAddr, HashAddrPort). Maglev looks the key up in its
	// table and walks the table forward past tried targets and, with
	// BoundedLoad, past targets at their cap; when every untried target is
	// at its cap it returns the first untried one (the cap is soft rather
	// than refuse a session). LeastConnections ignores key.
	Pick(key uint64, tried []*Target) *Target
	// Targets lists the endpoints new sessions may go to, in snapshot order
	// (sorted by address). The slice is shared: do not modify it.
	Targets() []*Target
	// Fingerprint returns a hash of what Pick decides by, the same on
	// every replica and process: pickers built from snapshots with the
	// same targets (address, weight and ID) under the same policy report the
	// same fingerprint, so that replicas can check that they agree. For
	// Maglev it covers the lookup table, M, c, the load floor and the
	// targets' hash identities; for LeastConnections the kind, the targets
	// and their IDs; for both, during a rollout, which targets are
	// outgoing and which are placeholders. A picker without
	// targets reports 0. It is computed by Build; Fingerprint only reads
	// it.
	Fingerprint() uint64
}

// Build returns a Picker over the eligible endpoints of s under policy p,
// with load counters from loads (one Loads per service; nil means a private
// one). Targets are s.Eligible() (discovery owns the rule): the endpoints
// that are ready and not terminating; only when there is none, the serving
// and terminating ones. During a rollout (s.Placement() active) new
// sessions prefer the targets that are not outgoing: least-connections
// draws from them while one is untried; Maglev keeps each leaving
// endpoint's place in its table (a placeholder, never picked), sends the
// keys of those places to preferred targets (walking the table on) and
// leaves every other key where it was. With no target Build
// returns a Picker whose Pick returns nil, not an error. Build errors, wrapping
// ErrPolicy, when p is invalid: a BoundedLoad other than 0 or a finite
// c >= 1 (so one in (0, 1)), a LoadFloor below NoLoadFloor or above
// MaxLoadFloor (whatever BoundedLoad), an unknown Kind, or for Maglev a TableSize other
// than 0 that fails ValidTableSize or is smaller than the number of targets.
//
// Build relies on the Snapshot invariant (endpoints sorted by address and
// unique) only for Targets' order: the Maglev table is built in hash-key
// order (identities, see discovery.Endpoint.ID) whatever the input order. Build may drop counters in loads of
// addresses absent from s that have no active session.
func Build(s *discovery.Snapshot, p Policy, loads *Loads) (Picker, error) {
	var eps []discovery.Endpoint
	if s != nil {
		eps = s.Endpoints
	}
	pl := s.Placement()
	p, err := p.validate(len(pl.Eligible))
	if err != nil {
		return nil, err
	}
	if loads == nil {
		loads = NewLoads()
	}
	if p.Kind == Maglev && uint64(len(pl.Eligible)+len(pl.Leaving)) > p.TableSize {
		pl.Outgoing, pl.Leaving = nil, nil // no room for the placeholders: no preference
	}
	targets := newTargets(eps, pl, loads)
	n := len(pl.Eligible)
	if n == 0 {
		return emptyPicker{}, nil
	}
	switch p.Kind {
	case LeastConnections:
		return newP2C(targets[:n:n]), nil
	default:
		return newMaglev(targets, n, p), nil
	}
}

// newTargets returns as Targets, wired to their counters in loads, the
// eligible endpoints of pl (a subsequence of eps) in their order, marked
// outgoing as pl says, then pl's leaving endpoints marked leaving; it
// refreshes loads' set of counters from every endpoint of eps.
func newTargets(eps []discovery.Endpoint, pl discovery.Placement, loads *Loads) []Target {
	counters := loads.attach(eps)
	byAddr := make(map[string]*counter, len(eps))
	for i, e := range eps {
		byAddr[e.Address] = counters[i] // one counter per address
	}
	targets := make([]Target, 0, len(pl.Eligible)+len(pl.Leaving))
	for i, e := range pl.Eligible {
		e.Weight = max(e.Weight, 1)
		targets = append(targets, Target{Endpoint: e, load: byAddr[e.Address], loads: loads, outgoing: !pl.Preferred(i)})
	}
	for _, e := range pl.Leaving {
		e.Weight = max(e.Weight, 1)
		targets = append(targets, Target{Endpoint: e, load: byAddr[e.Address], loads: loads, leaving: true})
	}
	return targets
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// pointers returns pointers to the elements of ts, in order.
func pointers(ts []Target) []*Target {
	ps := make([]*Target, len(ts))
	for i := range ts {
		ps[i] = &ts[i]
	}
	return ps
}

// contains reports whether t is one of tried. tried holds at most a few.
func contains(tried []*Target, t *Target) bool {
	for _, x := range tried {
		if x == t {
			return true
		}
	}
	return false
}

// allTried reports whether every target in ts is in tried.
func allTried(ts []Target, tried []*Target) bool {
	if len(tried) < len(ts) {
		return false
	}
	for i := range ts {
		if !contains(tried, &ts[i]) {
			return false
		}
	}
	return true
}

// emptyPicker has no target: Pick always returns nil.
type emptyPicker struct{}

func (emptyPicker) Pick(uint64, []*Target) *Target { return nil }
func (emptyPicker) Targets() []*Target             { return nil }
func (emptyPicker) Fingerprint() uint64            { return 0 }
