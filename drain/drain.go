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
	"github.com/longhaul-proxy/longhaul/internal/guard"
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
// by its deadline, Timeout after the endpoint left, and never later than
// KillMargin before the endpoint's kill time when the snapshot gives one
// (discovery.Endpoint.KillTime: the pod's deletion timestamp).
//
// A kill time may arrive in a later snapshot than the one that made the
// endpoint leave (the pod is read after its endpoint turned terminating):
// migrations not yet started then take the earlier deadline when they start,
// and those planned too late are brought forward; pools already draining
// end at the earlier deadline. A session already asked to move keeps the
// deadline it was given.
//
// The zero value is not usable: set Timeout and Lister.
type Controller struct {
	Timeout time.Duration // time sessions have to leave
	Window  time.Duration // spread of migration starts; 0 means Timeout/2
	Rate    float64       // most migrations started per second; 0 means no cap
	// KillMargin is how long before an endpoint's kill time its sessions
	// must be gone; negative counts as 0. When the kill time minus the
	// margin is already past, sessions move as soon as possible, paced
	// within MinLeft.
	KillMargin time.Duration
	Lister     Lister
	Pools      EndpointDrainer // may be nil
	// OnMigrate, if set, is called as each session is asked to move, with
	// why: ReasonEndpoint or ReasonRebalance.
	OnMigrate func(endpoint string, s Session, reason string)
	// OnEndpointDrained, if set, is called when an endpoint's pools are
	// drained, with how long it took.
	OnEndpointDrained func(endpoint string, took time.Duration)

	mu        sync.Mutex
	scheduled map[Session]bool
	pending   map[Session]*pending  // endpoint migrations not yet started
	drained   map[string]bool       // endpoint -> pools drained since it was last eligible
	poolEnd   map[string]*poolDrain // endpoint -> its pools' drain, while it runs
	killAt    map[string]time.Time  // endpoint -> kill time, from snapshots
	wg        sync.WaitGroup
	nextSlot  time.Time       // rate cap: the earliest start of the next migration
	eligible  map[string]bool // of the last snapshot; read by Rebalance
}

// MinLeft is the least time a session is given when its endpoint's kill
// time minus the margin is already past or nearly so: migrations then start
// at once, spread over a tenth of it.
const MinLeft = 200 * time.Millisecond

// poolDrain is a running drain of an endpoint's pools; end makes it end by
// an earlier deadline.
type poolDrain struct{ end func(time.Time) }

// pending is an endpoint migration planned but not started.
type pending struct {
	ep    string
	base  time.Time // the deadline from Timeout alone
	at    time.Time // when it was planned: a past kill time gives MinLeft from then
	start time.Time // when it is planned to start
	timer *time.Timer
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
	base := now.Add(c.Timeout)
	c.eligible = eligible
	if c.scheduled == nil {
		c.scheduled = make(map[Session]bool)
		c.drained = make(map[string]bool)
	}
	if c.pending == nil {
		c.pending = make(map[Session]*pending)
		c.poolEnd = make(map[string]*poolDrain)
		c.killAt = make(map[string]time.Time)
	}
	tightened := c.learnKillTimes(next, eligible)
	live := make(map[Session]bool)
	withSessions := make(map[string]bool)
	n := 0
	for _, ep := range c.Lister.Endpoints() {
		withSessions[ep] = true
		deadline := c.deadline(ep, base, now)
		window, limit := c.pacing(deadline.Sub(now))
		for _, s := range c.Lister.Sessions(ep) {
			live[s] = true
			if p := c.pending[s]; p != nil && tightened[ep] {
				c.bringForward(s, p, now, window, limit)
			}
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
				if delay > limit {
					delay = limit // the deadline wins over the rate cap
				}
			}
			p := &pending{ep: ep, base: base, at: now, start: now.Add(delay)}
			c.pending[s] = p
			p.timer = time.AfterFunc(delay, func() { c.fire(s, p) })
			n++
		}
	}
	for s := range c.scheduled {
		if !live[s] {
			delete(c.scheduled, s)
		}
	}
	for s, p := range c.pending {
		if !live[s] && p.timer.Stop() {
			delete(c.pending, s) // ended before its turn
		}
	}
	for ep, pd := range c.poolEnd {
		if tightened[ep] {
			pd.end(c.deadline(ep, base, now))
		}
	}
	listed := make(map[string]bool)
	if next != nil {
		for _, e := range next.Endpoints {
			listed[e.Address] = true
		}
	}
	for ep := range c.killAt {
		if !listed[ep] && !withSessions[ep] && c.poolEnd[ep] == nil {
			delete(c.killAt, ep) // gone, with nothing left to move
		}
	}
	if c.Pools != nil {
		for _, e := range c.leaving(next, eligible) {
			deadline := c.deadline(e, base, now)
			ctx, cancel := context.WithDeadline(context.Background(), deadline)
			// end cancels ctx at an earlier deadline, should a kill time
			// arrive while the pools drain.
			pd := &poolDrain{end: func(at time.Time) {
				if at.Before(deadline) {
					time.AfterFunc(time.Until(at), cancel)
				}
			}}
			c.poolEnd[e] = pd
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				defer cancel()
				defer guard.Recover("drain", nil)
				start := time.Now()
				c.Pools.DrainEndpoint(ctx, e)
				c.mu.Lock()
				if c.poolEnd[e] == pd {
					delete(c.poolEnd, e)
				}
				c.mu.Unlock()
				if c.OnEndpointDrained != nil {
					c.OnEndpointDrained(e, time.Since(start))
				}
			}()
		}
	}
	return n
}

// fire starts a planned migration, with the deadline known now: a kill time
// learnt since it was planned may have brought it forward.
func (c *Controller) fire(s Session, p *pending) {
	defer guard.Recover("drain", nil)
	c.mu.Lock()
	if c.pending[s] != p {
		c.mu.Unlock()
		return // replanned or forgotten
	}
	delete(c.pending, s)
	deadline := c.deadline(p.ep, p.base, p.at)
	c.mu.Unlock()
	s.Migrate(deadline)
	if c.OnMigrate != nil {
		c.OnMigrate(p.ep, s, ReasonEndpoint)
	}
}

// bringForward replans a pending migration whose endpoint's deadline moved
// earlier, if it was planned to start later than limit from now: it then
// starts within window. Called with c.mu held.
func (c *Controller) bringForward(s Session, p *pending, now time.Time, window, limit time.Duration) {
	if !p.start.After(now.Add(limit)) || !p.timer.Stop() {
		return // soon enough, or already starting
	}
	delay := time.Duration(0)
	if window > 0 {
		delay = rand.N(window)
	}
	q := &pending{ep: p.ep, base: p.base, at: now, start: now.Add(delay)}
	c.pending[s] = q
	q.timer = time.AfterFunc(delay, func() { c.fire(s, q) })
}

// learnKillTimes records the kill times of next's endpoints and returns the
// endpoints whose kill time appeared or moved earlier. An endpoint that is
// eligible again forgets its kill time; one that left the snapshot keeps
// it. Called with c.mu held.
func (c *Controller) learnKillTimes(next *discovery.Snapshot, eligible map[string]bool) map[string]bool {
	tightened := make(map[string]bool)
	if next == nil {
		return tightened
	}
	for _, e := range next.Endpoints {
		switch {
		case eligible[e.Address]:
			delete(c.killAt, e.Address)
		case !e.KillTime.IsZero():
			old, ok := c.killAt[e.Address]
			if !ok || e.KillTime.Before(old) {
				tightened[e.Address] = true
			}
			c.killAt[e.Address] = e.KillTime
		}
	}
	return tightened
}

// deadline returns when the sessions of ep must be gone: base (Timeout
// after they were scheduled), or earlier, KillMargin before ep's kill time;
// never before now (when the migration was planned) plus MinLeft because of
// the kill time. Called with c.mu
// held.
func (c *Controller) deadline(ep string, base, now time.Time) time.Time {
	kill, ok := c.killAt[ep]
	if !ok {
		return base
	}
	d := kill.Add(-max(c.KillMargin, 0))
	if !d.Before(base) {
		return base
	}
	if soonest := now.Add(MinLeft); d.Before(soonest) {
		d = soonest
		if base.Before(d) {
			d = base
		}
	}
	return d
}

// pacing returns the spread of migration starts and the latest start for
// sessions that have left to go: the configured window, compressed in
// proportion when a kill time leaves less than Timeout, and at most
// nine tenths of left. Called with c.mu held.
func (c *Controller) pacing(left time.Duration) (window, limit time.Duration) {
	window = c.window()
	if left < c.Timeout && c.Timeout > 0 {
		window = time.Duration(float64(window) * float64(left) / float64(c.Timeout))
	}
	limit = left - left/10
	if window > limit {
		window = limit
	}
	return max(window, 0), max(limit, 0)
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
