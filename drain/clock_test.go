package drain

import (
	"sync"
	"time"
)

// fakeClock is a Clock that moves only when told: Advance runs the timers
// that fall due, in order of their time (ties in the order they were
// armed), on the caller's goroutine, each with Now at its time. A timer
// armed with d <= 0 runs at the next Advance, even Advance(0).
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	seq    int
	timers []*fakeTimer
}

type fakeTimer struct {
	clk *fakeClock
	at  time.Time
	seq int
	f   func()
	off bool // ran or stopped
}

// epoch is where every fake clock starts.
var epoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func newFakeClock() *fakeClock { return &fakeClock{now: epoch} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &fakeTimer{clk: c, at: c.now.Add(max(d, 0)), seq: c.seq, f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.clk.mu.Lock()
	defer t.clk.mu.Unlock()
	if t.off {
		return false
	}
	t.off = true
	return true
}

// Advance moves the clock d forward, running the timers due by then.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	for {
		var next *fakeTimer
		live := c.timers[:0]
		for _, t := range c.timers {
			if t.off {
				continue
			}
			live = append(live, t)
			if !t.at.After(end) && (next == nil || t.at.Before(next.at) || t.at.Equal(next.at) && t.seq < next.seq) {
				next = t
			}
		}
		c.timers = live
		if next == nil {
			break
		}
		if next.at.After(c.now) {
			c.now = next.at
		}
		next.off = true
		c.mu.Unlock()
		next.f()
		c.mu.Lock()
	}
	c.now = end
	c.mu.Unlock()
}

// AdvanceTo moves the clock to t (if later), running the timers due by then.
func (c *fakeClock) AdvanceTo(t time.Time) { c.Advance(max(t.Sub(c.Now()), 0)) }

// Pending returns the timers armed and neither run nor stopped.
func (c *fakeClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.off {
			n++
		}
	}
	return n
}
