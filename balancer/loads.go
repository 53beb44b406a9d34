package balancer

import (
	"sync"
	"sync/atomic"

	"github.com/longhaul-proxy/longhaul/discovery"
)

// Loads holds one active-session counter per endpoint address. It outlives
// picker builds: a counter keeps its value when a new picker is built (keyed
// by Endpoint.Address). Safe for concurrent use. Use one Loads per service,
// that is per sequence of snapshots: each Build drops the counters of
// addresses absent from its snapshot that have no active session.
//
// A picker built before such a drop may still count a session on the dropped
// counter; should that address come back while the session lasts, its new
// counter misses that session until it ends. Total is never affected.
type Loads struct {
	total atomic.Int64
	_     [56]byte // keep the hot total off the cache line of mu and m

	mu  sync.Mutex // guards m and gen; taken by Build only, never by Pick
	m   map[string]*counter
	gen uint64
}

// counter is one endpoint's active sessions, alone on its cache line so that
// cores serving different endpoints do not contend.
type counter struct {
	n   atomic.Int64
	gen uint64 // last Build whose snapshot listed the address; under Loads.mu
	_   [48]byte
}

// NewLoads returns Loads with no counter.
func NewLoads() *Loads { return &Loads{m: make(map[string]*counter)} }

// Total returns the active sessions over all counters, including those of
// endpoints that are no longer targets but still carry sessions.
func (l *Loads) Total() int64 { return l.total.Load() }

// attach returns the counter of each endpoint of eps, in order, creating the
// missing ones, and drops idle counters of addresses that eps does not list.
func (l *Loads) attach(eps []discovery.Endpoint) []*counter {
	out := make([]*counter, len(eps))
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gen++
	for i, e := range eps {
		c := l.m[e.Address]
		if c == nil {
			c = new(counter)
			l.m[e.Address] = c
		}
		c.gen = l.gen
		out[i] = c
	}
	for addr, c := range l.m {
		if c.gen != l.gen && c.n.Load() == 0 {
			delete(l.m, addr)
		}
	}
	return out
}

// Target is one endpoint a picker may choose, with its live load counter.
// It is immutable except the counter, and shared by every goroutine using
// the picker. Compare targets by pointer only within one picker; across
// pickers compare Endpoint.Address.
type Target struct {
	// Endpoint is the endpoint as the snapshot listed it (Weight at least 1).
	Endpoint discovery.Endpoint

	load  *counter
	loads *Loads
	// outgoing marks an eligible target of a revision some leaving
	// endpoint runs (discovery.Placement): new sessions go to it only when
	// no other target is left to try (or by a Maglev key whose own slot is
	// its). leaving marks a Maglev placeholder: a terminating endpoint kept
	// in the table so that only its keys go elsewhere; it is never picked.
	outgoing, leaving bool
}

// Outgoing reports whether t runs a revision that a leaving endpoint runs,
// so that new sessions avoid it while others are left (see
// discovery.Placement).
func (t *Target) Outgoing() bool { return t.outgoing }

// Acquire counts one more active session on t (and in its Loads' total).
// Call it as soon as t is chosen, before dialling, so that concurrent
// bounded-load picks see the session; pair every Acquire with one Release.
func (t *Target) Acquire() {
	t.load.n.Add(1)
	t.loads.total.Add(1)
}

// Release counts one active session fewer on t; it undoes one Acquire.
func (t *Target) Release() {
	t.load.n.Add(-1)
	t.loads.total.Add(-1)
}

// Active returns the active sessions on t's endpoint, counted by every
// picker built with the same Loads.
func (t *Target) Active() int64 { return t.load.n.Load() }
