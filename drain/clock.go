package drain

import (
	"context"
	"sync/atomic"
	"time"
)

// Clock is the time drain plans by. Controller.Clock nil means the real
// clock (time.Now and time.AfterFunc); tests inject one they advance by hand.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f once d has passed (d <= 0: as soon as possible),
	// unless the Timer is stopped first. It must not call f before it
	// returns: the controller arms timers with its mutex held.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a timer armed by Clock.AfterFunc.
type Timer interface {
	// Stop prevents the call if it has not started, and reports whether
	// it did.
	Stop() bool
}

type realClock struct{}

func (realClock) Now() time.Time                            { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// timer is a call the controller armed and owns: in c.timers until it runs
// or is stopped. Before Run it is only recorded (t nil); Run arms it with
// the clock, and stops it when Run's context ends. Its fields are guarded by
// the controller's mu.
type timer struct {
	at   time.Time
	f    func()
	t    Timer // nil until Run arms it
	done bool  // ran, or stopped
}

// arm records f to be called at at and, while Run runs, arms the clock for
// it. After Run has ended it arms nothing. Called with c.mu held.
func (c *Controller) arm(at time.Time, f func()) *timer {
	h := &timer{at: at, f: f}
	switch c.state {
	case ended:
		h.done = true
		return h
	case running:
		c.armClock(h)
	}
	c.timers[h] = struct{}{}
	return h
}

// armClock arms the clock for h. Called with c.mu held.
func (c *Controller) armClock(h *timer) {
	clk := c.clock()
	h.t = clk.AfterFunc(h.at.Sub(clk.Now()), func() { c.runTimer(h) })
}

// stop stops h and reports whether it had neither run nor been stopped.
// Called with c.mu held.
func (c *Controller) stop(h *timer) bool {
	if h == nil || h.done {
		return false
	}
	h.done = true
	delete(c.timers, h)
	if h.t != nil {
		h.t.Stop()
	}
	return true
}

// runTimer runs h's call, unless it was stopped or Run has ended; Run
// waits for the calls under way before it returns. It takes c.mu itself
// and runs the call without it.
func (c *Controller) runTimer(h *timer) {
	c.mu.Lock()
	if h.done || c.state != running {
		c.mu.Unlock()
		return
	}
	h.done = true
	delete(c.timers, h)
	c.wg.Add(1)
	c.mu.Unlock()
	defer c.wg.Done()
	h.f()
}

// spawn runs f on a goroutine that Run waits for: at once while Run runs,
// when Run starts if it has not, never once it has ended. It reports
// whether f will run. Called with c.mu held.
func (c *Controller) spawn(f func()) bool {
	switch c.state {
	case ended:
		return false
	case idle:
		c.deferred = append(c.deferred, f)
		return true
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
	return true
}

// clockCtx is the context an endpoint's pools drain under: its deadline is
// kept by the controller's clock (a timer cancels it with cause
// context.DeadlineExceeded) and may move earlier while the drain runs; Run's
// end cancels it too.
type clockCtx struct {
	context.Context
	deadline atomic.Pointer[time.Time]
}

func (c *clockCtx) Deadline() (time.Time, bool) { return *c.deadline.Load(), true }

// Err reports context.DeadlineExceeded once the deadline has passed, like a
// context of context.WithDeadline.
func (c *clockCtx) Err() error {
	err := c.Context.Err()
	if err != nil && context.Cause(c.Context) == context.DeadlineExceeded {
		return context.DeadlineExceeded
	}
	return err
}
