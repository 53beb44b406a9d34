package drain

import (
	"math"
	"time"

	"github.com/longhaul-proxy/longhaul/internal/guard"
)

// Rebalance moves sessions off endpoints that carry far more than their
// share, so that long-lived sessions follow a scale-up instead of staying
// on the endpoints that were there first.
//
// The spread is the busiest eligible endpoint's sessions over the mean of
// the eligible endpoints' (a session already asked to move counts in the
// mean but no longer on its endpoint).
// Once the busiest has stayed above max(Factor × mean, ceil(mean) + 1) for
// Sustain, rebalancing is active: every Interval a round moves sessions off
// the busiest endpoints, one at a time from whichever is busiest, until
// every endpoint is at most max(floor(Target × mean), ceil(mean)) with no
// move under way nor made in the last three Intervals (the moved sessions'
// reconnects); then it is inactive until a new imbalance lasts Sustain. A moved session
// reconnects through the picker, which sends it to a less loaded endpoint
// (least-connections, or Maglev with bounded loads); small rounds let the
// picker see each round's reconnects before the next.
//
// Budget. Sessions are moved at Rate per second: PerMinute × sessions / 60,
// at least one per Interval and at most MaxPerRound per Interval, with the
// starts of a round spread over the Interval through the Controller's
// pacing (and its Rate cap, shared with drains). A session moved is never
// moved again within Cooldown, by identity (the Session value), whether or
// not it is still listed.
//
// Only sessions that can leave without loss move: a Session that implements
// Movable and reports false never does, nor one Movable (the field) refuses.
// Nor does one that implements Misplaced and reports false: under a hash
// policy its key would bring it straight back.
//
// During a rollout (discovery.Placement active) sessions move only off
// the endpoints of the leaving revision: they will move once anyway, while
// a session moved off a new endpoint would move twice.
//
// It is off unless Factor > 0. It only makes sense with a picker that sends
// a reconnecting session elsewhere: with plain consistent hashing the key
// leads back to the same endpoint.
type Rebalance struct {
	// Factor: rebalancing starts when the busiest endpoint has more than
	// Factor times the mean (and more than ceil(mean) + 1, so that small
	// numbers do not flap). 0 turns rebalancing off.
	Factor float64
	// Target: rebalancing stops once no endpoint has more than
	// max(floor(Target × mean), ceil(mean)); 0 means 1.1. At most Factor.
	Target float64
	// Sustain is how long the imbalance must last before any session moves;
	// 0 means 10s. A rollout's transient skew does not trigger it.
	Sustain time.Duration
	// PerMinute is the share of the sessions moved per minute at most; 0
	// means 1 (a 3 to 4 scale-up needs about half of them moved, as about
	// half the reconnects of least-connections go to the endpoints that
	// were there: this reaches the target in well under a minute).
	PerMinute float64
	// MaxPerRound bounds the sessions moved per round (per Interval: with
	// the default Interval, per second); 0 means 10.
	MaxPerRound int
	// Cooldown: a session moved is not moved again for this long; 0 means
	// 10m.
	Cooldown time.Duration
	// Interval is the time between rounds; 0 means 1s.
	Interval time.Duration
	// Movable, if set, says whether a session may be moved (for example,
	// raw TCP sessions only when configured to); nil accepts all. It is
	// called without the Controller's lock.
	Movable func(Session) bool
}

// Misplaced is optionally implemented by a Session that knows whether its
// balancer would place it elsewhere now (upstream.Lease does): under a
// hash policy a session its key sends straight back to its endpoint is
// not moved by rebalancing, which would only churn it; after a scale-up
// the sessions whose keys now belong to the new endpoint are, each once.
// It is called without the Controller's lock.
type Misplaced interface {
	Misplaced() bool
}

// Movable is optionally implemented by a Session to say whether
// rebalancing may move it without loss (a WebSocket's close handshake or an
// HTTP/2 GOAWAY let the client reconnect cleanly). A Session that does not
// implement it counts as movable; drains and Shutdown move every session
// regardless.
type Movable interface {
	Movable() bool
}

// Defaults of Rebalance's zero fields.
const (
	DefaultRebalanceTarget    = 1.1
	DefaultRebalanceSustain   = 10 * time.Second
	DefaultRebalancePerMinute = 1.0
	DefaultRebalancePerRound  = 10
	DefaultRebalanceCooldown  = 10 * time.Minute
	DefaultRebalanceInterval  = time.Second
)

// withDefaults returns r with its zero fields set to their defaults.
func (r Rebalance) withDefaults() Rebalance {
	if r.Target <= 0 {
		r.Target = DefaultRebalanceTarget
	}
	if r.Factor > 0 && r.Target > r.Factor {
		r.Target = r.Factor
	}
	if r.Sustain <= 0 {
		r.Sustain = DefaultRebalanceSustain
	}
	if r.PerMinute <= 0 {
		r.PerMinute = DefaultRebalancePerMinute
	}
	if r.MaxPerRound <= 0 {
		r.MaxPerRound = DefaultRebalancePerRound
	}
	if r.Cooldown <= 0 {
		r.Cooldown = DefaultRebalanceCooldown
	}
	if r.Interval <= 0 {
		r.Interval = DefaultRebalanceInterval
	}
	return r
}

// settle is how many Intervals after its last move rebalancing stays
// active at the target, for the reconnects of the sessions it moved.
const settle = 3

// rebalanceState is what RebalanceOnce carries between rounds. Guarded by
// the Controller's mu.
type rebalanceState struct {
	since    time.Time             // when the current imbalance began; zero when none
	active   bool                  // the imbalance lasted Sustain and the target is not reached
	tokens   float64               // sessions the budget allows now
	last     time.Time             // the previous round, for the budget
	lastMove time.Time             // the last round that moved sessions
	moved    map[Session]time.Time // session -> end of its cool-down
}

// candidate is a session the rebalancer may move, with its endpoint.
type candidate struct {
	s  Session
	ep string
}

// RebalanceOnce is one round of Run's rebalancing at time now (see
// Rebalance; r's zero fields count as their defaults). It plans the moves
// through the same pacing and deadlines as a drain and returns how many it
// planned. Rounds must come in increasing now. After Shutdown, or once Run
// has ended, it moves nothing.
func (c *Controller) RebalanceOnce(r Rebalance, now time.Time) int {
	r = r.withDefaults()
	c.mu.Lock()
	c.init()
	eligible, outgoing := c.eligible, c.outgoing
	stopping := c.state == ended || !c.stopBy.IsZero()
	if len(eligible) < 2 || stopping {
		c.reb.since, c.reb.active = time.Time{}, false
		c.mu.Unlock()
		return 0
	}
	c.mu.Unlock()

	lists := c.list()
	movable := make(map[Session]bool)
	for _, l := range lists {
		if !eligible[l.ep] {
			continue
		}
		for _, s := range l.sessions {
			if m, ok := s.(Movable); ok && !m.Movable() {
				continue
			}
			if m, ok := s.(Misplaced); ok && !m.Misplaced() {
				continue // its key would bring it straight back
			}
			if r.Movable != nil && !r.Movable(s) {
				continue
			}
			movable[s] = true
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == ended || !c.stopBy.IsZero() {
		return 0
	}
	live := make(map[Session]bool)
	for _, l := range lists {
		for _, s := range l.sessions {
			live[s] = true
		}
	}
	c.forget(live)
	st := &c.reb
	for s, until := range st.moved {
		if !now.Before(until) {
			delete(st.moved, s)
		}
	}

	// Loads, without the sessions already asked or planned to move; the
	// mean counts them all, as they reconnect.
	load := make(map[string]int, len(eligible))
	var cands []candidate
	for ep := range eligible {
		load[ep] = 0
	}
	total, inflight := 0, 0
	for _, l := range lists {
		if !eligible[l.ep] {
			continue
		}
		total += len(l.sessions)
		for _, s := range l.sessions {
			if c.scheduled[s] {
				inflight++
				continue // leaving: it counts where it reconnects
			}
			load[l.ep]++
			if _, cooling := st.moved[s]; movable[s] && !cooling {
				cands = append(cands, candidate{s, l.ep})
			}
		}
	}
	mean := float64(total) / float64(len(eligible))
	busiest := 0
	for _, n := range load {
		busiest = max(busiest, n)
	}
	trigger := math.Max(r.Factor*mean, math.Ceil(mean)+1)
	target := int(math.Max(math.Floor(r.Target*mean), math.Ceil(mean)))

	if !st.active {
		if float64(busiest) <= trigger {
			st.since = time.Time{}
			return 0
		}
		if st.since.IsZero() {
			st.since = now
		}
		if now.Sub(st.since) < r.Sustain {
			return 0
		}
		st.active, st.tokens, st.last = true, 0, now.Add(-r.Interval)
	}
	if busiest <= target {
		// Reached, unless moves are under way: a session still leaving,
		// or gone and not yet back, may reconnect to a busy endpoint.
		if inflight == 0 && now.Sub(st.lastMove) >= settle*r.Interval {
			st.active, st.since = false, time.Time{}
		}
		return 0
	}

	// The budget: a token bucket at rate, holding one round's worth.
	rate := r.PerMinute * float64(total) / 60 // per second
	perRound := r.Interval.Seconds()
	rate = math.Min(math.Max(rate, 1/perRound), float64(r.MaxPerRound)/perRound)
	st.tokens = math.Min(st.tokens+rate*now.Sub(st.last).Seconds(), math.Max(rate*perRound, 1))
	st.last = now
	n := int(st.tokens)

	// One at a time off whichever endpoint is busiest, down to target.
	byEP := make(map[string][]Session)
	for _, cd := range cands {
		byEP[cd.ep] = append(byEP[cd.ep], cd.s)
	}
	base := now.Add(c.Timeout)
	var batch []migration
	for len(batch) < n {
		best := ""
		for ep, ss := range byEP {
			if len(outgoing) > 0 && !outgoing[ep] {
				continue // a rollout: sessions of new endpoints stay
			}
			if len(ss) > 0 && load[ep] > target && (best == "" || load[ep] > load[best] || load[ep] == load[best] && ep < best) {
				best = ep
			}
		}
		if best == "" {
			break
		}
		s := byEP[best][0]
		byEP[best] = byEP[best][1:]
		load[best]--
		c.scheduled[s] = true
		if st.moved == nil {
			st.moved = make(map[Session]time.Time)
		}
		st.moved[s] = now.Add(r.Cooldown)
		batch = append(batch, migration{s, &pending{ep: best, reason: ReasonRebalance, base: base}})
	}
	st.tokens -= float64(len(batch))
	if len(batch) > 0 {
		st.lastMove = now
	}
	window, limit := c.pacing(c.Timeout)
	c.place(batch, now, min(window, r.Interval), limit)
	return len(batch)
}

// SetRebalance changes the rebalancing from the next round on: Factor 0
// stops the rounds, and a Factor > 0 starts them (while Run runs) if they
// were stopped. An imbalance under way is noted anew. Safe to call while
// Run runs.
func (c *Controller) SetRebalance(r Rebalance) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	c.Rebalance = r
	c.reb.since, c.reb.active = time.Time{}, false
	c.armRebalance()
}

// armRebalance arms the next rebalance round, unless one is armed or
// Rebalance.Factor is 0 (then it stops the one armed). Each round reads
// c.Rebalance and, if it is still the round c.rebTick names, arms the
// next: one chain of rounds at a time. Called with c.mu held.
func (c *Controller) armRebalance() {
	r := c.Rebalance.withDefaults()
	if r.Factor <= 0 || c.state == ended {
		c.stop(c.rebTick)
		c.rebTick = nil
		return
	}
	if c.rebTick != nil && !c.rebTick.done {
		return
	}
	var h *timer
	h = c.arm(c.clock().Now().Add(r.Interval), func() {
		c.mu.Lock()
		r := c.Rebalance
		c.mu.Unlock()
		if r.Factor > 0 {
			now := c.clock().Now()
			// A panic ends this round only (guard logs and counts it).
			guard.Do("rebalance", func() { c.RebalanceOnce(r, now) })
		}
		c.mu.Lock()
		if c.rebTick == h {
			c.rebTick = nil
			c.armRebalance()
		}
		c.mu.Unlock()
	})
	c.rebTick = h
}
