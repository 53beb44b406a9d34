package drain

import (
	"math"
	"slices"
	"time"
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
	// Interval is how often Run checks the loads; 0 means 1s.
	Interval time.Duration
}

// withDefaults returns r with its zero fields set to their defaults.
func (r Rebalance) withDefaults() Rebalance {
	if r.Sustain <= 0 {
		r.Sustain = 30 * time.Second
	}
	if r.MaxPerRound <= 0 {
		r.MaxPerRound = 10
	}
	if r.Interval <= 0 {
		r.Interval = time.Second
	}
	return r
}

// RebalanceOnce is one round of Run's rebalancing at time now; since
// carries the start of the imbalance between rounds. Once an imbalance has
// lasted r.Sustain it plans the moves of at most r.MaxPerRound sessions
// off the busiest endpoints, through the same pacing and deadlines as a
// drain, and returns how many. r's zero fields count as their defaults.
// After Shutdown, or once Run has ended, it moves nothing.
func (c *Controller) RebalanceOnce(r Rebalance, now time.Time, since *time.Time) int {
	r = r.withDefaults()
	c.mu.Lock()
	c.init()
	eligible := c.eligible
	stopping := c.state == ended || !c.stopBy.IsZero()
	c.mu.Unlock()
	if len(eligible) < 2 || stopping {
		*since = time.Time{}
		return 0
	}
	type load struct {
		ep       string
		sessions []Session
	}
	lists := c.list()
	loads := make([]load, 0, len(eligible))
	got := make(map[string]bool)
	total := 0
	for _, l := range lists {
		if eligible[l.ep] {
			got[l.ep] = true
			loads = append(loads, load{l.ep, l.sessions})
			total += len(l.sessions)
		}
	}
	for ep := range eligible {
		if !got[ep] {
			loads = append(loads, load{ep: ep}) // eligible and empty: a scale-up
		}
	}
	mean := float64(total) / float64(len(eligible))
	limit := math.Max(r.Factor*mean, mean+2)
	slices.SortStableFunc(loads, func(a, b load) int { return len(b.sessions) - len(a.sessions) })
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
	live := make(map[Session]bool)
	for _, l := range lists {
		for _, s := range l.sessions {
			live[s] = true
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == ended || !c.stopBy.IsZero() {
		return 0
	}
	c.forget(live)
	// Move the busiest endpoints' excess over the mean, busiest first, at
	// most MaxPerRound in all.
	target := int(math.Ceil(mean))
	base := now.Add(c.Timeout)
	var batch []migration
	for _, l := range loads {
		if float64(len(l.sessions)) <= limit || len(batch) >= r.MaxPerRound {
			break
		}
		excess := len(l.sessions) - target
		for _, s := range l.sessions {
			if excess <= 0 || len(batch) >= r.MaxPerRound {
				break
			}
			if c.scheduled[s] {
				continue
			}
			c.scheduled[s] = true
			batch = append(batch, migration{s, &pending{ep: l.ep, reason: ReasonRebalance, base: base}})
			excess--
		}
	}
	window, maxStart := c.pacing(c.Timeout)
	c.place(batch, now, window, maxStart)
	return len(batch)
}
