package drain

import (
	"context"
	"fmt"
	"time"
)

// Shutdown moves everything off longhaul itself, through the same pacing as
// an endpoint drain, and returns when it is gone.
//
// Its deadline is the earlier of Timeout from now and ctx's deadline (and of
// an earlier Shutdown's). Every live session of the Lister and every
// connection of the Downstream not yet asked to move is asked to, with
// ReasonShutdown, its start within the window and at the rate cap (see
// Controller); a migration already planned keeps its plan unless it would
// start later than the shutdown allows, and is then planned anew within
// it; no deadline is later than Shutdown's. A Downstream connection's
// deadline is its start plus the time the window leaves before Shutdown's
// deadline, so that the streams still open on the connections end spread
// over the window as the connections were asked to move, not all at once.
// Pools are not drained (the endpoints are not leaving, and the connections
// still to move need them); those draining because their endpoint left end
// by the deadline at the latest.
//
// Sessions enforce their deadlines themselves (Session.Migrate): Shutdown
// closes nothing. It returns nil once the Lister and the Downstream report
// nothing live and the pool drains have returned; or, wrapping ctx.Err(),
// when ctx ends first; or, wrapping ErrStopped, when Run has ended or ends
// first. Call it once the listener accepts no more sessions: those accepted
// afterwards are not moved. Before Run, it plans but nothing starts until
// Run does.
func (c *Controller) Shutdown(ctx context.Context) error {
	lists := c.list()
	var conns []Session
	if c.Downstream != nil {
		conns = c.Downstream.Conns()
	}

	c.mu.Lock()
	c.init()
	if c.state == ended {
		c.mu.Unlock()
		return fmt.Errorf("drain: shutdown: %w", ErrStopped)
	}
	now := c.clock().Now()
	stopBy := now.Add(c.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(stopBy) {
		stopBy = d
	}
	if c.stopBy.IsZero() || stopBy.Before(c.stopBy) {
		c.stopBy = stopBy
	}
	stopBy = c.stopBy
	window, limit := c.pacing(stopBy.Sub(now))
	var batch []migration
	live := make(map[Session]bool)
	for _, l := range lists {
		for _, s := range l.sessions {
			live[s] = true
			batch = c.shutdownOne(batch, s, l.ep, false, now, limit)
		}
	}
	c.forget(live)
	liveDown := make(map[Session]bool)
	for _, s := range conns {
		liveDown[s] = true
		batch = c.shutdownOne(batch, s, "", true, now, limit)
	}
	for s := range c.down {
		if !liveDown[s] {
			delete(c.down, s)
		}
	}
	c.place(batch, now, window, limit)
	// The endpoints' pools are not drained for longhaul's own shutdown:
	// the endpoints stay, and the client connections still waiting for
	// their turn to move need them; the listener closes them at the end.
	// Drains under way (endpoints leaving) end by the deadline at the
	// latest, and Shutdown waits for them.
	var pools []*poolDrain
	for _, pd := range c.poolEnd {
		c.setPoolDeadline(pd, stopBy)
		pools = append(pools, pd)
	}
	life := c.life
	c.mu.Unlock()

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(life, cancel)()
	if err := c.Lister.Wait(wctx); err != nil {
		return shutdownErr(ctx, "sessions", err)
	}
	if c.Downstream != nil {
		if err := c.Downstream.Wait(wctx); err != nil {
			return shutdownErr(ctx, "downstream connections", err)
		}
	}
	for _, pd := range pools {
		select {
		case <-pd.done:
		case <-wctx.Done():
			return shutdownErr(ctx, "pool drains", wctx.Err())
		}
	}
	return nil
}

// shutdownOne adds s to batch if it must be planned: not yet asked to move,
// or planned to start later than limit from now. Called with c.mu held.
func (c *Controller) shutdownOne(batch []migration, s Session, ep string, down bool, now time.Time, limit time.Duration) []migration {
	if p := c.pending[s]; p != nil {
		if q := c.forward(s, p, now, limit); q != nil {
			batch = append(batch, migration{s, q})
		}
		return batch
	}
	asked := c.scheduled
	if down {
		asked = c.down
	}
	if asked[s] {
		return batch // already asked to move, with its deadline
	}
	asked[s] = true
	return append(batch, migration{s, &pending{ep: ep, down: down, reason: ReasonShutdown, base: c.stopBy}})
}

// shutdownErr says what was still live when Shutdown stopped waiting, and
// why: ctx's end, or Run's.
func shutdownErr(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("drain: shutdown: %s still live: %w", what, ctx.Err())
	}
	return fmt.Errorf("drain: shutdown: %s still live: %w (%w)", what, ErrStopped, err)
}
