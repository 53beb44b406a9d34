package drain

import (
	"context"
	"math"
	"slices"
	"time"

	"github.com/longhaul-proxy/longhaul/internal/guard"
)

// Rebalance moves sessions off endpoints that carry far more than their
// share, so that long-lived sessions follow a scale-up instead of staying
// on the endpoints that were there first.
//
// It is off unless Factor > 0. It only makes sense with a picker that sends
// a reconnecting session elsewhere (least-connections, or Maglev with
// bounded loads): with plain consistent hashing the key leads back to the
// same endpoint.
type Rebalance struct {
	// Factor c: an endpoint is overloaded when it has more than c times the
	// mean of the eligible endpoints' sessions (and at least 2 more than
	// the mean, so that small numbers do not flap). 0 turns rebalancing off.
	Factor float64
	// Sustain is how long the imbalance must last before any session moves;
	// 0 means 30s. A rollout's transient skew does not trigger it.
	Sustain time.Duration
	// MaxPerRound bounds the sessions moved per round; 0 means 10. Rounds
	// are Sustain apart, so the whole is paced.
	MaxPerRound int
	// Interval is how often loads are checked; 0 means 1s.
	Interval time.Duration
}

// RunRebalance checks the spread of sessions every r.Interval until ctx
// ends, and moves at most r.MaxPerRound sessions off the busiest endpoints
// once an imbalance has lasted r.Sustain. The moves go through the same
// pacing and deadline as a drain.
func (c *Controller) RunRebalance(ctx context.Context, r Rebalance) {
	if r.Factor <= 0 {
		return
	}
	if r.Sustain <= 0 {
		r.Sustain = 30 * time.Second
	}
	if r.MaxPerRound <= 0 {
		r.MaxPerRound = 10
	}
	if r.Interval <= 0 {
		r.Interval = time.Second
	}
	tick := time.NewTicker(r.Interval)
	defer tick.Stop()
	var since time.Time // when the current imbalance began; zero when none
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			moved := 0
			// A panic ends this round only (guard logs and counts it).
			guard.Do("rebalance", func() { moved = c.RebalanceOnce(r, now, &since) })
			if moved > 0 {
				since = time.Time{} // a new round needs a new sustained imbalance
			}
		}
	}
}

// RebalanceOnce is one check of RunRebalance at time now; since carries the
// start of the imbalance between checks. It returns the sessions it asked to
// move.
func (c *Controller) RebalanceOnce(r Rebalance, now time.Time, since *time.Time) int {
	c.mu.Lock()
	eligible := c.eligible
	c.mu.Unlock()
	if len(eligible) < 2 {
		*since = time.Time{}
		return 0
	}
	type load struct {
		ep       string
		sessions []Session
	}
	var loads []load
	total := 0
	for ep := range eligible {
		ss := c.Lister.Sessions(ep)
		loads = append(loads, load{ep, ss})
		total += len(ss)
	}
	mean := float64(total) / float64(len(eligible))
	limit := math.Max(r.Factor*mean, mean+2)
	slices.SortFunc(loads, func(a, b load) int { return len(b.sessions) - len(a.sessions) })
	if float64(len(loads[0].sessions)) <= limit {
		*since = time.Time{}
		return 0
	}
	if since.IsZero() {
		*since = now
	}
	if now.Sub(*since) < r.Sustain {
		return 0
	}
	// Move the busiest endpoints' excess over the mean, busiest first, at
	// most MaxPerRound in all.
	target := int(math.Ceil(mean))
	moved := 0
	live := make(map[Session]bool)
	for _, ep := range c.Lister.Endpoints() {
		for _, s := range c.Lister.Sessions(ep) {
			live[s] = true
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	window := c.window()
	deadline := now.Add(c.Timeout)
	if c.scheduled == nil {
		c.scheduled = make(map[Session]bool)
		c.drained = make(map[string]bool)
	}
	for s := range c.scheduled {
		if !live[s] {
			delete(c.scheduled, s) // ended: forget it
		}
	}
	for _, l := range loads {
		if float64(len(l.sessions)) <= limit || moved >= r.MaxPerRound {
			break
		}
		excess := len(l.sessions) - target
		for _, s := range l.sessions {
			if excess <= 0 || moved >= r.MaxPerRound {
				break
			}
			if c.scheduled[s] {
				continue
			}
			c.scheduled[s] = true
			// Spread the moves of a round over the window, like a drain.
			delay := time.Duration(0)
			if moved > 0 && r.MaxPerRound > 1 {
				delay = window * time.Duration(moved) / time.Duration(r.MaxPerRound)
			}
			ep := l.ep
			time.AfterFunc(delay, func() {
				defer guard.Recover("drain", nil)
				s.Migrate(deadline)
				if c.OnMigrate != nil {
					c.OnMigrate(ep, s, ReasonRebalance)
				}
			})
			excess--
			moved++
		}
	}
	return moved
}
