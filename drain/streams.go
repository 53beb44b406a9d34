package drain

import (
	"math/rand/v2"
	"time"
)

// The grace an endpoint's streams have after its pools' GOAWAY before the
// first is ended, so that calls in flight finish: a quarter of the window,
// at least MinStreamGrace (when the deadline leaves that much) and at most
// MaxStreamGrace. With a window of nearly nothing (moves all at once), the
// streams still open are ended together after MinStreamGrace.
const (
	MinStreamGrace = 500 * time.Millisecond
	MaxStreamGrace = time.Second
)

// streamPlan is the StreamPlan of one pool drain: the streams it ends are
// paced like the migrations of the endpoint's sessions. It is made with
// c.mu held and read-only afterwards; Ends takes c.mu.
//
// Pushback choice: each ended stream's client is told to wait a delay
// drawn uniformly from [0, grace] before retrying. The ends are already
// spread by the strata; the pushback spreads the retries of streams whose
// ends the rate or a deadline squeezed together, while holding no client
// off the service (which has other endpoints) longer than a short call is
// given, and never more than MaxStreamGrace.
type streamPlan struct {
	c      *Controller
	pd     *poolDrain
	start  time.Time     // the end of the grace
	end    time.Time     // the end of the window
	latest time.Time     // the latest end: nine tenths of the time the pools have
	grace  time.Duration // also the largest pushback
}

// streamPlan returns the plan of the pool drain pd starting at now, over
// the window the endpoint's sessions get. Called with c.mu held.
func (c *Controller) streamPlan(pd *poolDrain, now time.Time) *streamPlan {
	window, limit := c.pacing(pd.deadline.Sub(now))
	grace := max(min(window/4, MaxStreamGrace), min(MinStreamGrace, limit))
	return &streamPlan{c: c, pd: pd, start: now.Add(grace), end: now.Add(window), latest: now.Add(limit), grace: grace}
}

// Start implements StreamPlan.
func (p *streamPlan) Start() time.Time { return p.start }

// Ends implements StreamPlan: n ends from the later of now and the end of
// the grace, over what is left of the window in strata (see
// Controller.starts), at least 1/Rate after every start or end planned
// before, none later than nine tenths of the time the pools have left (the
// pools' deadline may have moved earlier since the plan was made). The
// latest of them counts as a start made for the rate of later plans.
func (p *streamPlan) Ends(n int) (at []time.Time, pushback []time.Duration) {
	c := p.c
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock().Now()
	from := now
	if p.start.After(from) {
		from = p.start
	}
	latest := p.latest
	if left := p.pd.deadline.Sub(now); now.Add(left - left/10).Before(latest) {
		latest = now.Add(max(left-left/10, 0))
	}
	limit := max(latest.Sub(from), 0)
	at = c.starts(n, from, min(max(p.end.Sub(from), 0), limit), limit)
	pushback = make([]time.Duration, n)
	for i := range pushback {
		if p.grace > 0 {
			pushback[i] = rand.N(p.grace + 1)
		}
	}
	if n > 0 && at[n-1].After(c.lastStart) {
		c.lastStart = at[n-1]
	}
	return at, pushback
}
