package upstream

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longhaul-proxy/longhaul/proxy/metrics"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/discovery"
)

// Upstream is the set of endpoints one listener balances over, and the one
// place where a session or a request gets its endpoint (Lease, Try).
//
// It turns each Snapshot into a picker off the hot path and swaps it in
// whole with the snapshot it came from: readers see the old pair or the new
// one, never a mix. Load counters live in Loads and outlive every rebuild.
//
// Leases are ordered against swaps: a lease checks that its pick came from
// the state in force and registers its session before a swap can complete
// (leaseMu), so once Update has returned, every session on an endpoint the
// new state excludes is in the Registry, where drain finds it, and no later
// lease lands there. This is why the caller runs Update before it hands the
// same snapshot to drain.
//
// Lock order: mu (builds) before leaseMu before the Registry's lock.
type Upstream struct {
	name string
	id   uint64 // unique in the process: upstreams may share a name while one replaces another
	reg  *Registry
	// perConn: keys are per connection (client ip and port), so a client
	// reconnects under a new key (Lease.Misplaced).
	perConn atomic.Bool

	mu      sync.Mutex // serialises builds: Update and SetPolicy
	policy  balancer.Policy
	loads   *balancer.Loads
	metrics *metrics.Metrics

	// leaseMu is held shared by a lease from its check of the state to its
	// registration, and exclusively by a swap of the state.
	leaseMu sync.RWMutex
	state   atomic.Pointer[upstreamState]
	// leaving, once set by Leave (under leaseMu), is the deadline every
	// session leased from then on is asked to migrate by, at once.
	leaving time.Time

	picksOK, picksNone prometheus.Counter
}

// upstreamState is what one snapshot made: the picker built from it. A
// picker's targets are exactly the endpoints new work may use.
type upstreamState struct {
	picker    balancer.Picker
	snap      *discovery.Snapshot
	leastConn bool // the picker's policy ignores keys
}

// NewUpstream returns an Upstream with no endpoints, whose sessions are
// registered in reg: nothing is leased until the first Update.
func NewUpstream(name string, policy balancer.Policy, reg *Registry, m *metrics.Metrics) *Upstream {
	if m == nil {
		m = metrics.New(nil)
	}
	if reg == nil {
		reg = NewRegistry()
	}
	return &Upstream{name: name, id: upstreamIDs.Add(1), reg: reg, policy: policy, loads: balancer.NewLoads(), metrics: m,
		picksOK: m.Picks.WithLabelValues(name, "ok"), picksNone: m.Picks.WithLabelValues(name, "none")}
}

// SetKeysPerConnection says whether the keys sessions are picked by are
// per connection (client ip and port) rather than per client: a client
// then comes back under a new key, anywhere (see Lease.Misplaced).
func (u *Upstream) SetKeysPerConnection(on bool) { u.perConn.Store(on) }

// upstreamIDs numbers upstreams.
var upstreamIDs atomic.Uint64

// ID returns the upstream's process-unique number: its sessions carry it
// (SessionInfo.UpstreamID), so that an upstream replacing another of the
// same name lists only its own.
func (u *Upstream) ID() uint64 { return u.id }

// Update builds a picker from s and swaps it in. On error the previous
// picker stays in force.
func (u *Upstream) Update(s *discovery.Snapshot) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.build(s)
}

// SetPolicy changes the balancing policy and rebuilds the picker from the
// current snapshot. On error the previous policy and picker stay in force.
func (u *Upstream) SetPolicy(p balancer.Policy) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	old := u.policy
	u.policy = p
	if st := u.state.Load(); st != nil {
		if err := u.build(st.snap); err != nil {
			u.policy = old
			return err
		}
	}
	return nil
}

// build makes a picker from s with the current policy and swaps it in.
// Called with u.mu held.
func (u *Upstream) build(s *discovery.Snapshot) error {
	start := time.Now()
	p, err := balancer.Build(s, u.policy, u.loads)
	u.metrics.PickerBuildTime.WithLabelValues(u.name).Observe(time.Since(start).Seconds())
	if err != nil {
		u.metrics.PickerBuilds.WithLabelValues(u.name, "error").Inc()
		return fmt.Errorf("build picker for %s: %w", u.name, err)
	}
	u.metrics.PickerBuilds.WithLabelValues(u.name, "ok").Inc()
	u.leaseMu.Lock()
	u.state.Store(&upstreamState{picker: p, snap: s, leastConn: u.policy.Kind == balancer.LeastConnections})
	u.leaseMu.Unlock()
	var ready, serving, terminating int
	for _, e := range s.Endpoints {
		ready += b2i(e.Ready)
		serving += b2i(e.Serving)
		terminating += b2i(e.Terminating)
	}
	u.metrics.Endpoints.WithLabelValues(u.name, "ready").Set(float64(ready))
	u.metrics.Endpoints.WithLabelValues(u.name, "serving").Set(float64(serving))
	u.metrics.Endpoints.WithLabelValues(u.name, "terminating").Set(float64(terminating))
	u.metrics.Endpoints.WithLabelValues(u.name, "total").Set(float64(len(s.Endpoints)))
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Leave makes every session leased from now on migrate at once, by
// deadline: longhaul is shutting down, and drain moves the sessions leased
// before. Requests are still leased as before (their connections are
// moved as a whole).
func (u *Upstream) Leave(deadline time.Time) {
	u.leaseMu.Lock()
	u.leaving = deadline
	u.leaseMu.Unlock()
}

// isLeaving reports whether Leave was called.
func (u *Upstream) isLeaving() bool {
	u.leaseMu.RLock()
	defer u.leaseMu.RUnlock()
	return !u.leaving.IsZero()
}

// State returns the picker in force and the snapshot it was built from, a
// matching pair; both nil before the first Update.
func (u *Upstream) State() (balancer.Picker, *discovery.Snapshot) {
	if st := u.state.Load(); st != nil {
		return st.picker, st.snap
	}
	return nil, nil
}

// Picker returns the current picker, or nil before the first Update.
func (u *Upstream) Picker() balancer.Picker { p, _ := u.State(); return p }

// Snapshot returns the snapshot the current picker was built from, or nil.
func (u *Upstream) Snapshot() *discovery.Snapshot { _, s := u.State(); return s }

// Name returns the listener name the upstream belongs to.
func (u *Upstream) Name() string { return u.name }

// Loads returns the live load counters.
func (u *Upstream) Loads() *balancer.Loads { return u.loads }

// Metrics returns the collectors the upstream counts into; its listener
// counts into them too.
func (u *Upstream) Metrics() *metrics.Metrics { return u.metrics }

// Registry returns the registry the upstream's sessions are registered in.
func (u *Upstream) Registry() *Registry { return u.reg }

// findTarget returns the picker's target for addr, if new work may go
// there. Targets are sorted by address.
func findTarget(p balancer.Picker, addr string) *balancer.Target {
	ts := p.Targets()
	i := sort.Search(len(ts), func(i int) bool { return ts[i].Endpoint.Address >= addr })
	if i < len(ts) && ts[i].Endpoint.Address == addr {
		return ts[i]
	}
	return nil
}
