// Package drain decides which sessions must leave their endpoint, when, and
// at what pace. It never touches a connection itself: it asks sessions to
// migrate through the small interface they register, and asks endpoint-wide
// pools (HTTP/2 upstream connections) to drain through another.
package drain

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/longhaul-proxy/longhaul/discovery"
)

// Session is what drain needs of a live session.
type Session interface {
	// Migrate asks the session to leave its endpoint by deadline. Calling
	// it again has no further effect.
	Migrate(deadline time.Time)
}

// Lister lists a listener's live sessions by endpoint.
type Lister interface {
	// Endpoints returns the addresses that have live sessions.
	Endpoints() []string
	// Sessions returns the live sessions on one endpoint, each with a
	// stable identity.
	Sessions(endpoint string) []Session
}

// EndpointDrainer drains what belongs to an endpoint as a whole, such as the
// pooled HTTP/2 connections that carry per-request traffic: GOAWAY, then the
// streams left at ctx's deadline are ended. It returns when done.
type EndpointDrainer interface {
	DrainEndpoint(ctx context.Context, addr string)
}

// Reasons a session is asked to move, for metrics.
const (
	ReasonEndpoint  = "endpoint"  // its endpoint is terminating, not ready or gone
	ReasonRebalance = "rebalance" // its endpoint carries far more than the mean
	ReasonShutdown  = "shutdown"  // longhaul itself is stopping
)

// Controller moves sessions off endpoints that new sessions may no longer
// use (terminating, not ready, or gone). Migrations start spread over Window
// with jitter and at most Rate per second, so that the remaining endpoints
// do not take every reconnect in the same instant; each session must be gone
// by its deadline, Timeout after the endpoint left.
//
// The zero value is not usable: set Timeout and Lister.
type Controller struct {
	Timeout time.Duration // time sessions have to leave
	Window  time.Duration // spread of migration starts; 0 means Timeout/2
	Rate    float64       // most migrations started per second; 0 means no cap
	Lister  Lister
	Pools   EndpointDrainer // may be nil
	// OnMigrate, if set, is called as each session is asked to move, with
	// why: ReasonEndpoint or ReasonRebalance.
	OnMigrate func(endpoint string, s Session, reason string)
	// OnEndpointDrained, if set, is called when an endpoint's pools are
	// drained, with how long it took.
	OnEndpointDrained func(endpoint string, took time.Duration)

	mu        sync.Mutex
	scheduled map[Session]bool
	drained   map[string]bool // endpoint -> pools drained since it was last eligible
	wg        sync.WaitGroup
	nextSlot  time.Time       // rate cap: the earliest start of the next migration
	eligible  map[string]bool // of the last snapshot; read by Rebalance
}

// Update compares the live sessions' endpoints with next and schedules the
// migration of every session on an endpoint that is no longer eligible. A
// session is scheduled once, however many snapshots follow. It returns the
// number of sessions newly scheduled.
func (c *Controller) Update(next *discovery.Snapshot) int {
	eligible := Eligible(next)
	now := time.Now()

	c.mu.Lock()
	defer c.mu.Unlock()
	window := c.window()
	deadline := now.Add(c.Timeout)
	c.eligible = eligible
	if c.scheduled == nil {
		c.scheduled = make(map[Session]bool)
		c.drained = make(map[string]bool)
	}
	live := make(map[Session]bool)
	n := 0
	for _, ep := range c.Lister.Endpoints() {
		for _, s := range c.Lister.Sessions(ep) {
			live[s] = true
			if eligible[ep] || c.scheduled[s] {
				continue
			}
			c.scheduled[s] = true
			delay := time.Duration(0)
			if window > 0 {
				delay = rand.N(window)
			}
			if c.Rate > 0 {
				start := now.Add(delay)
				if start.Before(c.nextSlot) {
					start = c.nextSlot
				}
				c.nextSlot = start.Add(time.Duration(float64(time.Second) / c.Rate))
				delay = start.Sub(now)
				if limit := c.Timeout - c.Timeout/10; delay > limit {
					delay = limit // the deadline wins over the rate cap
				}
			}
			ep := ep
			time.AfterFunc(delay, func() {
				s.Migrate(deadline)
				if c.OnMigrate != nil {
					c.OnMigrate(ep, s, ReasonEndpoint)
				}
			})
			n++
		}
	}
	for s := range c.scheduled {
		if !live[s] {
			delete(c.scheduled, s)
		}
	}
	if c.Pools != nil {
		for _, e := range c.leaving(next, eligible) {
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				ctx, cancel := context.WithDeadline(context.Background(), deadline)
				defer cancel()
				start := time.Now()
				c.Pools.DrainEndpoint(ctx, e)
				if c.OnEndpointDrained != nil {
					c.OnEndpointDrained(e, time.Since(start))
				}
			}()
		}
	}
	return n
}

// SetPacing changes Timeout, Window and Rate for the migrations scheduled
// from now on; those already scheduled keep theirs. Safe to call while
// Update runs.
func (c *Controller) SetPacing(timeout, window time.Duration, rate float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Timeout, c.Window, c.Rate = timeout, window, rate
}

// DrainTimeout returns the time sessions get to leave.
func (c *Controller) DrainTimeout() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Timeout
}

// window returns the spread of migration starts. Called with c.mu held.
func (c *Controller) window() time.Duration {
	if c.Window <= 0 || c.Window > c.Timeout {
		return c.Timeout / 2
	}
	return c.Window
}

// Wait blocks until every endpoint drain started by Update has returned.
func (c *Controller) Wait() { c.wg.Wait() }

// leaving returns the endpoints whose pools must drain now: known before or
// listed in s, not eligible, and not drained since they last were. It
// records them as drained. Called with c.mu held.
func (c *Controller) leaving(s *discovery.Snapshot, eligible map[string]bool) []string {
	listed := map[string]bool{}
	if s != nil {
		for _, e := range s.Endpoints {
			listed[e.Address] = true
			if _, known := c.drained[e.Address]; !known {
				c.drained[e.Address] = false
			}
		}
	}
	var out []string
	for addr, done := range c.drained {
		switch {
		case eligible[addr]:
			c.drained[addr] = false
		case !done:
			c.drained[addr] = true
			out = append(out, addr)
		}
		if !listed[addr] && c.drained[addr] {
			delete(c.drained, addr) // gone: forget it once drained
		}
	}
	return out
}

// Eligible returns the addresses that new sessions may use: the ready,
// non-terminating endpoints, or, when there are none, the serving and
// terminating ones (so that a single-replica rollout is not black-holed).
func Eligible(s *discovery.Snapshot) map[string]bool {
	primary := make(map[string]bool)
	fallback := make(map[string]bool)
	if s == nil {
		return primary
	}
	for _, e := range s.Endpoints {
		p, f := e.Eligible()
		if p {
			primary[e.Address] = true
		} else if f {
			fallback[e.Address] = true
		}
	}
	if len(primary) > 0 {
		return primary
	}
	return fallback
}
