// Package drain decides which sessions must leave their endpoint, when, and
// at what pace. It never touches a connection itself: it asks sessions to
// migrate through the small interface they register, and asks endpoint-wide
// pools (HTTP/2 upstream connections) to drain through another.
//
// One Controller owns every migration of a listener: sessions of endpoints
// that new sessions may no longer use (Update), sessions of endpoints that
// carry far more than their share (Controller.Rebalance), and, when longhaul
// itself stops, every session and downstream connection (Shutdown). They
// share one clock, one pacing (Window with jitter, Rate, the deadline and
// KillMargin) and one owner for every timer and goroutine: Run.
package drain

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/longhaul-proxy/longhaul/discovery"
	"github.com/longhaul-proxy/longhaul/internal/guard"
)

// Session is what drain needs of a live session (or of a downstream
// connection, see Downstream).
type Session interface {
	// Migrate asks the session to leave by deadline: it starts its close
	// handshake and force-closes itself at deadline if still open. Calling
	// it again has no further effect.
	Migrate(deadline time.Time)
}

// migrationReasoner is a Session that keeps why it was asked to move
// (ReasonEndpoint, ReasonRebalance or ReasonShutdown), for its access log
// line; it is told before Migrate.
type migrationReasoner interface {
	SetMigrationReason(reason string)
}

// Lister lists a listener's live sessions by endpoint.
type Lister interface {
	// Endpoints returns the addresses that have live sessions.
	Endpoints() []string
	// Sessions returns the live sessions on one endpoint, each with a
	// stable identity.
	Sessions(endpoint string) []Session
	// Wait returns nil when no session is live, or ctx.Err() once ctx
	// ends, whichever comes first.
	Wait(ctx context.Context) error
}

// Downstream lists what is not bound to an endpoint but must leave when
// longhaul stops: client connections whose requests are balanced one by
// one (HTTP/2 clients of the relay). Migrate on one of them sends GOAWAY
// and closes it at the deadline.
type Downstream interface {
	// Conns returns the live connections, each with a stable identity.
	Conns() []Session
	// Wait returns nil when no connection is live, or ctx.Err() once ctx
	// ends, whichever comes first.
	Wait(ctx context.Context) error
}

// EndpointDrainer drains what belongs to an endpoint as a whole, such as the
// pooled HTTP/2 connections that carry per-request traffic: GOAWAY, then
// the streams still open when plan's turns come are ended one per turn
// (plan is never nil from the Controller; an implementation given nil ends
// them all at ctx's deadline), and what is left at ctx's end is ended. It
// returns when done, and by the time ctx ends at the latest.
type EndpointDrainer interface {
	DrainEndpoint(ctx context.Context, addr string, plan StreamPlan)
}

// StreamPlan is drain's pacing of the streams an endpoint drain ends: drain
// decides when each ends and what retry pushback its client gets; the
// drainer owns its connections, counts the streams and ends them. Times
// are on the Controller's Clock.
//
// It is an alias of an interface literal made of standard types only, so
// that a drainer can name an identical alias without importing drain (the
// HTTP/2 relay does: h2relay.StreamPlan); the two must stay identical.
type StreamPlan = interface {
	// Start returns the end of the grace the streams have after the
	// GOAWAY, so that short calls complete: no stream is ended before it.
	Start() time.Time
	// Ends plans the ends of n streams still open, in ascending order, and
	// the retry pushback each one's client is given (gRPC's
	// grpc-retry-pushback-ms). Safe for concurrent use; each call plans
	// after the starts and ends already planned, at the Controller's Rate.
	Ends(n int) (at []time.Time, pushback []time.Duration)
}

// Reasons a session is asked to move, for metrics.
const (
	ReasonEndpoint  = "endpoint"  // its endpoint is terminating, not ready or gone
	ReasonRebalance = "rebalance" // its endpoint carries far more than the mean
	ReasonShutdown  = "shutdown"  // longhaul itself is stopping
)

// ErrStopped is wrapped by Shutdown once Run has ended (or ends while
// Shutdown waits), and by Run when called a second time.
var ErrStopped = errors.New("drain controller stopped")

// MinLeft is the least time a session is given when its endpoint's kill
// time minus the margin is already past or nearly so: migrations then start
// at once, spread over a tenth of it.
const MinLeft = 200 * time.Millisecond

// Controller moves sessions off endpoints that new sessions may no longer
// use (terminating, not ready, or gone), off overloaded endpoints when
// Rebalance is on, and off longhaul itself at Shutdown.
//
// Pacing. Every batch of migrations (the sessions an Update, a rebalance
// round or Shutdown asks to move at once) starts spread over Window: the
// window is cut into one equal stratum per migration, each starting at a
// random point of its stratum, and consecutive starts are at least 1/Rate
// apart, also after the starts already planned or made. When the window
// cannot hold them at Rate, the rate wins over the window; no start is ever
// later than nine tenths of the time the session has (the deadline wins
// over the rate).
//
// Deadlines. A session of an endpoint drain must be gone Timeout after the
// endpoint left, and never later than KillMargin before the endpoint's kill
// time when the snapshot gives one (discovery.Endpoint.KillTime: the pod's
// deletion timestamp). A kill time may arrive in a later snapshot than the
// one that made the endpoint leave (the pod is read after its endpoint
// turned terminating): migrations not yet started then take the earlier
// deadline when they start, and those planned too late are brought forward;
// pools already draining end at the earlier deadline. After Shutdown no
// deadline is later than Shutdown's. A session already asked to move keeps
// the deadline it was given.
//
// Lifetime. Run owns every timer and goroutine the controller starts. Before
// Run, Update, RebalanceOnce and Shutdown plan as usual but arm nothing:
// Run arms their timers (those already due fire at once) and starts their
// pool drains when it starts, so a controller never run leaks nothing. When
// Run's context ends, Run stops every timer, cancels every pool drain and
// waits for the calls and goroutines under way; from then on Update and
// RebalanceOnce do nothing and return 0, and Shutdown returns ErrStopped.
// Run's context must therefore outlive Shutdown.
//
// Streams. An endpoint's pools drain with a StreamPlan (see streamPlan):
// their streams still open after a grace of min(window/4, MaxStreamGrace)
// from the drain's start are ended over what is left of the same window
// as the endpoint's sessions, in strata, at Rate shared with the
// migrations, each no later than nine tenths of the time the pools have.
//
// Ledger. Each endpoint drain is accounted for from when the endpoint
// leaves until LedgerKeep after it finished (see EndpointDrain, Drains and
// MigrationEnded); OnLate hears of a projected finish past the kill time.
//
// Locks. c.mu guards the plans. No call out to the Lister, Downstream,
// Sessions, Pools, OnMigrate, OnEndpointDrained or OnLate is made with c.mu
// held;
// the only calls made with it held are to the Clock (Now, AfterFunc,
// Timer.Stop), which must not call back into the controller before
// returning, and to context cancel functions.
//
// The zero value is not usable: set Timeout and Lister. Set every exported
// field before the first call; afterwards only SetPacing changes Timeout,
// Window and Rate, and SetRebalance changes Rebalance.
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
	Downstream Downstream      // may be nil; used by Shutdown only
	// Rebalance configures the rebalance rounds Run makes; the zero value
	// (Factor 0) makes none. Read at every round; after the first call
	// only SetRebalance changes it.
	Rebalance Rebalance
	Clock     Clock // nil means the real clock
	// OnMigrate, if set, is called as each session is asked to move, with
	// its endpoint ("" for a downstream connection) and why: ReasonEndpoint,
	// ReasonRebalance or ReasonShutdown.
	OnMigrate func(endpoint string, s Session, reason string)
	// OnEndpointDrained, if set, is called when an endpoint's pools are
	// drained, with how long it took.
	OnEndpointDrained func(endpoint string, took time.Duration)
	// OnLate, if set, is called once per endpoint drain when its projected
	// finish is found past its kill time (see EndpointDrain), without c.mu.
	OnLate func(d EndpointDrain)

	mu       sync.Mutex
	state    lifeState
	life     context.Context // ends when Run ends; parent of the pool drains
	endLife  context.CancelFunc
	started  chan struct{}       // closed when Run starts
	timers   map[*timer]struct{} // armed (or, before Run, recorded) and not yet run
	deferred []func()            // goroutines asked for before Run
	wg       sync.WaitGroup      // timer calls and goroutines under way

	scheduled map[Session]bool      // sessions asked or planned to move, until they end
	down      map[Session]bool      // downstream connections likewise
	pending   map[Session]*pending  // migrations planned and not started
	drained   map[string]bool       // endpoint -> pools drained since it was last eligible
	poolEnd   map[string]*poolDrain // endpoint -> its pools' drain, while it runs
	killAt    map[string]time.Time  // endpoint -> kill time, from snapshots
	listed    map[string]bool       // the addresses of the last snapshot
	eligible  map[string]bool       // of the last snapshot; read by RebalanceOnce
	// outgoing holds the eligible endpoints of the last snapshot that run
	// a leaving revision (discovery.Placement); while it is not empty,
	// rebalancing moves sessions only off them. Read by RebalanceOnce.
	outgoing  map[string]bool
	lastStart time.Time               // the latest start of a migration made
	stopBy    time.Time               // Shutdown's deadline; zero before Shutdown
	reb       rebalanceState          // carried between rebalance rounds
	rebTick   *timer                  // the next rebalance round, while Factor > 0
	ledger    map[string]*ledgerEntry // endpoint -> its drain, see Drains
}

type lifeState int

const (
	idle    lifeState = iota // Run not called yet
	running                  // Run under way
	ended                    // Run returned, or about to
)

// pending is a migration planned but not started.
type pending struct {
	ep     string // "" for a downstream connection
	down   bool   // a downstream connection, not a session of the Lister
	reason string
	base   time.Time // the deadline without kill times: Timeout after it was first planned
	at     time.Time // when it was planned: a past kill time gives MinLeft from then
	start  time.Time // when it is planned to start
	// hold, for a downstream connection, bounds its deadline to its start
	// plus hold, so that what is still open on it (long-lived streams)
	// ends spread like the starts rather than all at the shutdown's
	// deadline; 0 for sessions.
	hold  time.Duration
	timer *timer
	led   *ledgerEntry // the endpoint drain it counts in, while pending
}

// migration is a session with its plan, before place gives it a start.
type migration struct {
	s Session
	p *pending
}

// poolDrain is a running drain of an endpoint's pools.
type poolDrain struct {
	ctx      *clockCtx
	cancel   context.CancelCauseFunc
	deadline time.Time
	timer    *timer        // cancels ctx at deadline
	done     chan struct{} // closed when DrainEndpoint has returned
}

// endpointSessions is one endpoint's live sessions, as the Lister gave them.
type endpointSessions struct {
	ep       string
	sessions []Session
}

// init makes the maps and the lifetime. Called with c.mu held.
func (c *Controller) init() {
	if c.timers != nil {
		return
	}
	c.life, c.endLife = context.WithCancel(context.Background())
	c.started = make(chan struct{})
	c.timers = make(map[*timer]struct{})
	c.scheduled = make(map[Session]bool)
	c.down = make(map[Session]bool)
	c.pending = make(map[Session]*pending)
	c.drained = make(map[string]bool)
	c.poolEnd = make(map[string]*poolDrain)
	c.killAt = make(map[string]time.Time)
	c.ledger = make(map[string]*ledgerEntry)
}

func (c *Controller) clock() Clock {
	if c.Clock == nil {
		return realClock{}
	}
	return c.Clock
}

// Run is the controller's lifetime: it arms what was planned before it,
// makes rebalance rounds every Rebalance.Interval while Rebalance.Factor > 0,
// and when ctx ends stops every timer, cancels the pool drains, waits for
// every call and goroutine under way and returns nil. It may be called once;
// a second call returns an error wrapping ErrStopped.
func (c *Controller) Run(ctx context.Context) error {
	c.mu.Lock()
	c.init()
	if c.state != idle {
		c.mu.Unlock()
		return fmt.Errorf("drain: Run called again: %w", ErrStopped)
	}
	c.state = running
	for h := range c.timers {
		c.armClock(h)
	}
	for _, f := range c.deferred {
		c.spawn(f)
	}
	c.deferred = nil
	c.armRebalance()
	close(c.started)
	c.mu.Unlock()

	<-ctx.Done()
	c.mu.Lock()
	c.state = ended
	for h := range c.timers {
		c.stop(h)
	}
	c.endLife()
	c.mu.Unlock()
	c.wg.Wait()
	return nil
}

// Update compares the live sessions' endpoints with next and schedules the
// migration of every session on an endpoint that is no longer eligible
// (discovery.Snapshot.Eligible), and the drain of the pools of every
// endpoint that left. A session is scheduled once, however many snapshots
// follow. After Shutdown it still schedules the sessions of endpoints that
// leave (by Shutdown's deadline at the latest) but drains no pool again:
// Shutdown drained them all. It returns the number of sessions newly
// scheduled.
func (c *Controller) Update(next *discovery.Snapshot) int {
	pl := next.Placement()
	eligible := addresses(pl.Eligible)
	var outgoing map[string]bool
	for i, e := range pl.Eligible {
		if !pl.Preferred(i) {
			if outgoing == nil {
				outgoing = make(map[string]bool)
			}
			outgoing[e.Address] = true
		}
	}
	lists := c.list()

	var lates []EndpointDrain
	defer func() { // after the unlock below
		for _, d := range lates {
			c.late(d)
		}
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	if c.state == ended {
		return 0
	}
	now := c.clock().Now()
	base := now.Add(c.Timeout)
	c.eligible, c.outgoing = eligible, outgoing
	tightened := c.learnKillTimes(next, eligible)
	live := make(map[Session]bool)
	withSessions := make(map[string]bool)
	n := 0
	for _, l := range lists {
		withSessions[l.ep] = true
		if !eligible[l.ep] {
			c.ledgerFor(l.ep, now, base, len(l.sessions))
		}
		window, limit := c.pacing(c.deadline(l.ep, base, now).Sub(now))
		var batch []migration
		for _, s := range l.sessions {
			live[s] = true
			if p := c.pending[s]; p != nil && tightened[l.ep] {
				if q := c.forward(s, p, now, limit); q != nil {
					batch = append(batch, migration{s, q})
				}
			}
			if eligible[l.ep] || c.scheduled[s] {
				continue
			}
			c.scheduled[s] = true
			batch = append(batch, migration{s, &pending{ep: l.ep, reason: ReasonEndpoint, base: base}})
			n++
		}
		c.place(batch, now, window, limit)
	}
	c.forget(live)
	for ep, pd := range c.poolEnd {
		if tightened[ep] {
			c.setPoolDeadline(pd, c.deadline(ep, base, now))
		}
	}
	c.listed = make(map[string]bool)
	if next != nil {
		for _, e := range next.Endpoints {
			c.listed[e.Address] = true
		}
	}
	for ep := range c.killAt {
		if !c.listed[ep] && !withSessions[ep] && c.poolEnd[ep] == nil {
			delete(c.killAt, ep) // gone, with nothing left to move
		}
	}
	if c.Pools != nil { // by Shutdown's deadline, if it runs (see deadline)
		for _, e := range c.leaving(next, eligible) {
			c.ledgerFor(e, now, base, 0)
			c.drainPools(e, c.deadline(e, base, now))
		}
	}
	left := make(map[string]int, len(lists))
	for _, l := range lists {
		left[l.ep] = len(l.sessions)
	}
	for ep := range c.ledger {
		if d, late := c.settle(ep, left[ep]); late {
			lates = append(lates, d)
		}
	}
	return n
}

// list asks the Lister for every live session. Called without c.mu.
func (c *Controller) list() []endpointSessions {
	var out []endpointSessions
	for _, ep := range c.Lister.Endpoints() {
		out = append(out, endpointSessions{ep, c.Lister.Sessions(ep)})
	}
	return out
}

// forget drops the sessions that are no longer live (live: every session
// of the Lister), stopping their planned migrations. Called with c.mu held.
func (c *Controller) forget(live map[Session]bool) {
	for s := range c.scheduled {
		if !live[s] {
			delete(c.scheduled, s)
		}
	}
	for s, p := range c.pending {
		if !p.down && !live[s] && c.stop(p.timer) {
			c.unplanned(p, false, time.Time{})
			delete(c.pending, s) // ended before its turn
		}
	}
}

// forward takes back the pending migration p of s if it would start later
// than limit from now, and returns its replacement for place to plan
// anew, with the same endpoint, reason and base deadline; nil when p is
// soon enough or already starting. Called with c.mu held.
func (c *Controller) forward(s Session, p *pending, now time.Time, limit time.Duration) *pending {
	if !p.start.After(now.Add(limit)) || !c.stop(p.timer) {
		return nil
	}
	c.unplanned(p, false, time.Time{})
	delete(c.pending, s)
	return &pending{ep: p.ep, down: p.down, reason: p.reason, base: p.base}
}

// place plans the batch's starts (see starts), in random order, and arms
// their timers. Called with c.mu held.
func (c *Controller) place(batch []migration, now time.Time, window, limit time.Duration) {
	rand.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
	starts := c.starts(len(batch), now, window, limit)
	for i, m := range batch {
		s, p := m.s, m.p
		p.at, p.start = now, starts[i]
		if p.down {
			// Each connection gets what the window leaves of the time to
			// the deadline, counted from its own start.
			p.hold = max(p.base.Sub(now)-window, MinLeft)
		}
		c.pending[s] = p
		c.planned(p)
		p.timer = c.arm(p.start, func() { c.fire(s, p) })
	}
}

// starts returns the starts of n migrations planned at now: after every
// start planned or made so far plus the rate cap's gap, then over what is
// left of window in n equal strata, each start at a random point of its
// stratum that keeps it at least the gap after the previous one. When the
// strata are narrower than the gap, the starts are the gap apart instead.
// No start is later than limit from now. Called with c.mu held.
func (c *Controller) starts(n int, now time.Time, window, limit time.Duration) []time.Time {
	var gap, from time.Duration
	if c.Rate > 0 {
		gap = time.Duration(float64(time.Second) / c.Rate)
		last := c.lastStart
		for _, p := range c.pending {
			if p.start.After(last) {
				last = p.start
			}
		}
		if !last.IsZero() {
			from = max(last.Add(gap).Sub(now), 0)
		}
	}
	var stratum time.Duration
	if span := window - from; n > 0 && span > 0 {
		stratum = span / time.Duration(n)
	}
	out := make([]time.Time, n)
	for i := range out {
		var d time.Duration
		if stratum > 0 && stratum >= gap {
			d = from + time.Duration(i)*stratum
			if j := stratum - gap; j > 0 {
				d += rand.N(j)
			}
		} else {
			d = from + time.Duration(i)*gap
		}
		out[i] = now.Add(min(d, limit))
	}
	return out
}

// fire starts a planned migration, with the deadline known now: a kill time
// learnt or a Shutdown since it was planned may have brought it forward.
func (c *Controller) fire(s Session, p *pending) {
	defer guard.Recover("drain", nil)
	c.mu.Lock()
	if c.pending[s] != p {
		c.mu.Unlock()
		return // replanned or forgotten
	}
	delete(c.pending, s)
	if p.start.After(c.lastStart) {
		c.lastStart = p.start
	}
	deadline := c.deadline(p.ep, p.base, p.at)
	if p.hold > 0 {
		if d := p.start.Add(p.hold); d.Before(deadline) {
			deadline = d
		}
	}
	var d EndpointDrain
	late := false
	if e := p.led; e != nil {
		c.unplanned(p, true, deadline)
		// The session just asked is live: the Lister is not asked here.
		d, late = c.settle(p.ep, e.planned+1)
	}
	c.mu.Unlock()
	if r, ok := s.(migrationReasoner); ok {
		r.SetMigrationReason(p.reason)
	}
	s.Migrate(deadline)
	if c.OnMigrate != nil {
		c.OnMigrate(p.ep, s, p.reason)
	}
	if late {
		c.late(d)
	}
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
// after they were scheduled), or earlier, KillMargin before ep's kill time,
// never before now (when the migration was planned) plus MinLeft because of
// the kill time; and never after Shutdown's deadline. Called with c.mu
// held.
func (c *Controller) deadline(ep string, base, now time.Time) time.Time {
	d := base
	if kill, ok := c.killAt[ep]; ok {
		if k := kill.Add(-max(c.KillMargin, 0)); k.Before(base) {
			d = now.Add(MinLeft)
			if base.Before(d) {
				d = base
			}
			if k.After(d) {
				d = k
			}
		}
	}
	if !c.stopBy.IsZero() && c.stopBy.Before(d) {
		d = c.stopBy
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

// leaving returns the endpoints whose pools must drain now: known before or
// listed in s, not eligible, and not drained since they last were. It
// records them as drained. Called with c.mu held.
func (c *Controller) leaving(s *discovery.Snapshot, eligible map[string]bool) []string {
	if s != nil {
		for _, e := range s.Endpoints {
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
		if !c.listed[addr] && c.drained[addr] {
			delete(c.drained, addr) // gone: forget it once drained
		}
	}
	return out
}

// drainPools starts the drain of ep's pools, to end by deadline. Called
// with c.mu held.
func (c *Controller) drainPools(ep string, deadline time.Time) {
	inner, cancel := context.WithCancelCause(c.life)
	pd := &poolDrain{ctx: &clockCtx{Context: inner}, cancel: cancel, done: make(chan struct{})}
	c.setPoolDeadline(pd, deadline)
	plan := c.streamPlan(pd, c.clock().Now())
	if !c.spawn(func() { c.runPoolDrain(ep, pd, plan) }) {
		c.stop(pd.timer)
		cancel(nil)
		return
	}
	c.poolEnd[ep] = pd
}

// setPoolDeadline makes pd end by at, if that is earlier than its deadline.
// Called with c.mu held.
func (c *Controller) setPoolDeadline(pd *poolDrain, at time.Time) {
	if pd.timer != nil && !at.Before(pd.deadline) {
		return
	}
	c.stop(pd.timer)
	pd.deadline = at
	pd.ctx.deadline.Store(&at)
	pd.timer = c.arm(at, func() { pd.cancel(context.DeadlineExceeded) })
}

// runPoolDrain drains ep's pools, on a goroutine of spawn. It takes c.mu
// itself, after DrainEndpoint has returned.
func (c *Controller) runPoolDrain(ep string, pd *poolDrain, plan *streamPlan) {
	defer guard.Recover("drain", nil)
	defer close(pd.done)
	defer func() {
		c.mu.Lock()
		if c.poolEnd[ep] == pd {
			delete(c.poolEnd, ep)
		}
		c.stop(pd.timer)
		c.mu.Unlock()
		pd.cancel(nil)
		c.settleLive(ep)
	}()
	start := c.clock().Now()
	c.Pools.DrainEndpoint(pd.ctx, ep, plan)
	if c.OnEndpointDrained != nil {
		c.OnEndpointDrained(ep, c.clock().Now().Sub(start))
	}
}

// addresses returns the set of eps' addresses.
func addresses(eps []discovery.Endpoint) map[string]bool {
	out := make(map[string]bool, len(eps))
	for _, e := range eps {
		out[e.Address] = true
	}
	return out
}
