package proxy

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/discovery"
)

// Upstream is the set of endpoints one listener balances over. It turns each
// Snapshot into a picker off the hot path and swaps it in whole: readers see
// the old picker or the new one, never a mix. Load counters live in Loads and
// outlive every rebuild.
type Upstream struct {
	name string

	mu      sync.Mutex // serialises builds: Update and SetPolicy
	policy  balancer.Policy
	loads   *balancer.Loads
	metrics *Metrics

	picker atomic.Pointer[balancer.Picker]
	snap   atomic.Pointer[discovery.Snapshot]
}

// NewUpstream returns an Upstream with no endpoints: Pick finds nothing until
// the first Update.
func NewUpstream(name string, policy balancer.Policy, m *Metrics) *Upstream {
	if m == nil {
		m = NewMetrics(nil)
	}
	return &Upstream{name: name, policy: policy, loads: balancer.NewLoads(), metrics: m}
}

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
	if s := u.snap.Load(); s != nil {
		if err := u.build(s); err != nil {
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
	u.picker.Store(&p)
	u.snap.Store(s)
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

// Picker returns the current picker, or nil before the first Update.
func (u *Upstream) Picker() balancer.Picker {
	if p := u.picker.Load(); p != nil {
		return *p
	}
	return nil
}

// Snapshot returns the snapshot the current picker was built from, or nil.
func (u *Upstream) Snapshot() *discovery.Snapshot { return u.snap.Load() }

// Name returns the listener name the upstream belongs to.
func (u *Upstream) Name() string { return u.name }

// Loads returns the live load counters.
func (u *Upstream) Loads() *balancer.Loads { return u.loads }
