package drain

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestTerminatingEndpointSessionsMove: the sessions of a terminating
// endpoint start moving one per stratum of the window, each with the
// Timeout's deadline; those of a ready endpoint stay; its pools drain once.
func TestTerminatingEndpointSessionsMove(t *testing.T) {
	clk := newFakeClock()
	onA, onB := sessions(clk, 20), sessions(clk, 20)
	pools := newPools(false)
	rec := &recorder{}
	c := &Controller{Timeout: 2 * time.Second, Window: 400 * time.Millisecond, Clock: clk, OnMigrate: rec.on,
		Lister: newLister(map[string][]*fakeSession{readyA.Address: onA, readyB.Address: onB}), Pools: pools}
	stop := start(t, c)
	if n := c.Update(snap(t, readyA, termB)); n != 20 {
		t.Fatalf("scheduled %d, want 20", n)
	}
	// A second snapshot with the same state schedules nothing new.
	if n := c.Update(snap(t, readyA, termB)); n != 0 {
		t.Fatalf("re-scheduled %d sessions, want 0", n)
	}
	clk.Advance(400 * time.Millisecond)
	got := starts(t, onB)
	for i, at := range got {
		// 20 strata of 20ms: the i-th start is in the i-th.
		lo := epoch.Add(time.Duration(i) * 20 * time.Millisecond)
		if at.Before(lo) || !at.Before(lo.Add(20*time.Millisecond)) {
			t.Errorf("start %d at %v, want in [%v, %v)", i, at.Sub(epoch), lo.Sub(epoch), lo.Sub(epoch)+20*time.Millisecond)
		}
	}
	checkDeadlines(t, onB, epoch.Add(2*time.Second))
	for _, s := range onB {
		if reason, ep := rec.reason(s); reason != ReasonEndpoint || ep != readyB.Address {
			t.Errorf("OnMigrate(%q, %q), want (%q, %q)", ep, reason, readyB.Address, ReasonEndpoint)
		}
		s.mu.Lock()
		if s.reason != ReasonEndpoint || !s.early {
			t.Errorf("the session was told reason %q (before Migrate: %v), want %q before", s.reason, s.early, ReasonEndpoint)
		}
		s.mu.Unlock()
	}
	for _, s := range onA {
		if n, _, _ := s.migrated(); n != 0 {
			t.Fatal("a session on a ready endpoint was migrated")
		}
	}
	if got := pools.await(t, 1); got[0] != readyB.Address {
		t.Errorf("pools of %v drained, want %s", got, readyB.Address)
	}
	if dl, _ := pools.ctx(t, readyB.Address).Deadline(); !dl.Equal(epoch.Add(2 * time.Second)) {
		t.Errorf("pool drain deadline %v, want the Timeout's", dl.Sub(epoch))
	}
	stop()
	if pools.count(readyB.Address) != 1 || pools.count(readyA.Address) != 0 {
		t.Errorf("pools drained %v, want only %s once", pools.drained, readyB.Address)
	}
}

func TestGoneEndpointDrainsPools(t *testing.T) {
	clk := newFakeClock()
	pools := newPools(false)
	c := &Controller{Timeout: time.Second, Clock: clk, Lister: newLister(nil), Pools: pools}
	stop := start(t, c)
	c.Update(snap(t, readyA, readyB))
	c.Update(snap(t, readyA))
	pools.await(t, 1)
	// Back, then gone again: drained again.
	c.Update(snap(t, readyA, readyB))
	c.Update(snap(t, readyA))
	pools.await(t, 1)
	stop()
	if pools.count(readyB.Address) != 2 || pools.count(readyA.Address) != 0 {
		t.Fatalf("pools drained %v, want %s twice", pools.drained, readyB.Address)
	}
}

// TestFallbackKeepsSessions: when every endpoint is terminating, the
// serving ones stay in use and their sessions are not moved.
func TestFallbackKeepsSessions(t *testing.T) {
	clk := newFakeClock()
	onA := sessions(clk, 3)
	c := &Controller{Timeout: 100 * time.Millisecond, Clock: clk, Lister: newLister(map[string][]*fakeSession{termA.Address: onA})}
	start(t, c)
	if n := c.Update(snap(t, termA)); n != 0 {
		t.Fatalf("scheduled %d sessions of the only serving endpoint, want 0", n)
	}
	if n := clk.Pending(); n != 0 {
		t.Fatalf("%d timers armed, want none", n)
	}
}

// TestRateCap: with a window too narrow for the rate, starts are exactly
// 1/Rate apart, and a later batch continues after the last.
func TestRateCap(t *testing.T) {
	clk := newFakeClock()
	onB, onA := sessions(clk, 10), sessions(clk, 3)
	c := &Controller{Timeout: 5 * time.Second, Window: time.Millisecond, Rate: 20, Clock: clk,
		Lister: newLister(map[string][]*fakeSession{readyB.Address: onB, readyA.Address: onA})}
	start(t, c)
	c.Update(snap(t, readyA, termB, readyC))
	clk.Advance(100 * time.Millisecond)
	// A leaves too, after 100ms: its sessions queue behind B's.
	c.Update(snap(t, termA, termB, readyC))
	clk.Advance(time.Second)
	for i, at := range starts(t, onB) {
		if want := epoch.Add(time.Duration(i) * 50 * time.Millisecond); !at.Equal(want) {
			t.Errorf("B's start %d at %v, want %v", i, at.Sub(epoch), want.Sub(epoch))
		}
	}
	for i, at := range starts(t, onA) {
		if want := epoch.Add(time.Duration(10+i) * 50 * time.Millisecond); !at.Equal(want) {
			t.Errorf("A's start %d at %v, want %v", i, at.Sub(epoch), want.Sub(epoch))
		}
	}
	checkDeadlines(t, onB, epoch.Add(5*time.Second))
	checkDeadlines(t, onA, epoch.Add(100*time.Millisecond+5*time.Second))
}

// TestKillTimeBoundsDeadline: the deadline is the earlier of Timeout and
// the kill time minus the margin, and the pacing shrinks to fit.
func TestKillTimeBoundsDeadline(t *testing.T) {
	clk := newFakeClock()
	ss := sessions(clk, 20)
	c := &Controller{Timeout: 10 * time.Second, Window: 5 * time.Second, KillMargin: 500 * time.Millisecond,
		Clock: clk, Lister: newLister(map[string][]*fakeSession{readyB.Address: ss})}
	start(t, c)
	dying := termB
	dying.KillTime = epoch.Add(2 * time.Second)
	if n := c.Update(snap(t, readyA, dying)); n != 20 {
		t.Fatalf("scheduled %d, want 20", n)
	}
	clk.Advance(2 * time.Second)
	// 1.5s left of 10s: the 5s window shrinks to 750ms.
	if last := starts(t, ss)[19]; last.After(epoch.Add(750 * time.Millisecond)) {
		t.Errorf("last start at %v, want within the 750ms window", last.Sub(epoch))
	}
	checkDeadlines(t, ss, epoch.Add(1500*time.Millisecond))
}

// TestKillTimeLaterThanTimeout: a distant kill time changes nothing.
func TestKillTimeLaterThanTimeout(t *testing.T) {
	clk := newFakeClock()
	ss := sessions(clk, 5)
	c := &Controller{Timeout: time.Second, Window: 100 * time.Millisecond, KillMargin: 2 * time.Second,
		Clock: clk, Lister: newLister(map[string][]*fakeSession{readyB.Address: ss})}
	start(t, c)
	dying := termB
	dying.KillTime = epoch.Add(time.Minute)
	c.Update(snap(t, readyA, dying))
	clk.Advance(100 * time.Millisecond)
	if last := starts(t, ss)[4]; last.After(epoch.Add(100 * time.Millisecond)) {
		t.Errorf("last start at %v, want within the 100ms window", last.Sub(epoch))
	}
	checkDeadlines(t, ss, epoch.Add(time.Second))
}

// TestKillTimePastMovesAtOnce: a kill time minus margin already past gives
// sessions MinLeft, and every migration starts within nine tenths of it:
// the rate cap yields to the deadline.
func TestKillTimePastMovesAtOnce(t *testing.T) {
	clk := newFakeClock()
	ss := sessions(clk, 20)
	c := &Controller{Timeout: 10 * time.Second, Rate: 5, KillMargin: 2 * time.Second,
		Clock: clk, Lister: newLister(map[string][]*fakeSession{readyB.Address: ss})}
	start(t, c)
	dying := termB
	dying.KillTime = epoch.Add(time.Second) // minus the margin: a second ago
	c.Update(snap(t, readyA, dying))
	clk.Advance(MinLeft)
	got := starts(t, ss)
	// 200ms apart at 5/s: the first at once, the rest at the latest start.
	if !got[0].Equal(epoch) || !got[19].Equal(epoch.Add(MinLeft*9/10)) {
		t.Errorf("starts from %v to %v, want from 0 to %v", got[0].Sub(epoch), got[19].Sub(epoch), MinLeft*9/10)
	}
	checkDeadlines(t, ss, epoch.Add(MinLeft))
}

// TestKillTimeArrivesLater: the kill time comes in a snapshot after the one
// that made the endpoint terminating (the pod is read afterwards).
// Migrations not started yet take the earlier deadline and those planned
// too late are brought forward; the pools end at it too.
func TestKillTimeArrivesLater(t *testing.T) {
	clk := newFakeClock()
	ss := sessions(clk, 20)
	pools := newPools(true)
	c := &Controller{Timeout: 10 * time.Second, Window: 8 * time.Second, KillMargin: 500 * time.Millisecond,
		Clock: clk, Lister: newLister(map[string][]*fakeSession{readyB.Address: ss}), Pools: pools}
	start(t, c)
	c.Update(snap(t, readyA, termB))
	pools.await(t, 1)
	clk.Advance(20 * time.Millisecond)
	planned := make(map[*fakeSession]time.Time)
	c.mu.Lock()
	for _, s := range ss {
		if p := c.pending[s]; p != nil {
			planned[s] = p.start
		}
	}
	c.mu.Unlock()
	t1 := clk.Now()
	dying := termB
	dying.KillTime = t1.Add(1500 * time.Millisecond)
	if n := c.Update(snap(t, readyA, dying)); n != 0 {
		t.Fatalf("the kill time scheduled %d sessions again", n)
	}
	want := t1.Add(time.Second)
	clk.AdvanceTo(want.Add(-time.Nanosecond))
	pctx := pools.ctx(t, readyB.Address)
	if dl, _ := pctx.Deadline(); !dl.Equal(want) {
		t.Errorf("pool drain deadline %v, want the kill time's %v", dl.Sub(epoch), want.Sub(epoch))
	}
	if pctx.Err() != nil {
		t.Fatal("pool drain ended before the kill time's deadline")
	}
	early := 0
	for i, s := range ss {
		n, at, dl := s.migrated()
		switch {
		case n != 1:
			t.Fatalf("session %d asked to move %d times by the deadline, want once", i, n)
		case at.Before(t1):
			early++ // asked before the kill time was known: keeps its deadline
			if !dl.Equal(epoch.Add(10 * time.Second)) {
				t.Errorf("early migration's deadline %v, want 10s", dl.Sub(epoch))
			}
		case !dl.Equal(want):
			t.Errorf("session %d: deadline %v, want the kill time's %v", i, dl.Sub(epoch), want.Sub(epoch))
		case at.After(t1.Add(900 * time.Millisecond)):
			t.Errorf("session %d started %v after the kill time came, want within 900ms", i, at.Sub(t1))
		case !planned[s].After(t1.Add(900*time.Millisecond)) && !at.Equal(planned[s]):
			t.Errorf("session %d planned soon enough moved from %v to %v", i, planned[s].Sub(epoch), at.Sub(epoch))
		}
	}
	// 20 strata of 400ms: only the first can start in the first 20ms.
	if early > 1 {
		t.Errorf("%d of 20 migrations started in the first 20ms of an 8s window", early)
	}
	clk.Advance(time.Nanosecond)
	if !errors.Is(pctx.Err(), context.DeadlineExceeded) {
		t.Errorf("pool drain context: %v at the deadline, want DeadlineExceeded", pctx.Err())
	}
}

// TestKillTimeForgottenWhenEligible: an endpoint that is ready again (its
// pod replaced at the same address) loses its old kill time.
func TestKillTimeForgottenWhenEligible(t *testing.T) {
	clk := newFakeClock()
	ss := sessions(clk, 3)
	c := &Controller{Timeout: 300 * time.Millisecond, Window: time.Millisecond, KillMargin: time.Second,
		Clock: clk, Lister: newLister(map[string][]*fakeSession{readyB.Address: ss})}
	start(t, c)
	dying := termB
	dying.KillTime = epoch.Add(-time.Hour)
	c.Update(snap(t, readyA, dying))
	clk.Advance(time.Millisecond)
	starts(t, ss)
	c.Update(snap(t, readyA, readyB))
	c.mu.Lock()
	_, kept := c.killAt[readyB.Address]
	c.mu.Unlock()
	if kept {
		t.Error("the kill time of an endpoint ready again is kept")
	}
}

// TestEndedSessionIsNotMigrated: a session that ends before its turn loses
// its plan at the next Update.
func TestEndedSessionIsNotMigrated(t *testing.T) {
	clk := newFakeClock()
	ss := sessions(clk, 2)
	l := newLister(map[string][]*fakeSession{readyB.Address: ss})
	c := &Controller{Timeout: time.Minute, Window: time.Millisecond, Rate: 0.1, Clock: clk, Lister: l}
	start(t, c)
	c.Update(snap(t, readyA, termB))
	clk.Advance(0)
	first := ss[0]
	if n, _, _ := first.migrated(); n == 0 {
		first = ss[1]
	}
	var second *fakeSession
	for _, s := range ss {
		if s != first {
			second = s
		}
	}
	l.end(second)
	c.Update(snap(t, readyA, termB))
	clk.Advance(time.Minute)
	if n, _, _ := second.migrated(); n != 0 {
		t.Error("a session that ended was asked to move")
	}
	if n := clk.Pending(); n != 0 {
		t.Errorf("%d timers still armed, want none", n)
	}
}

// TestRunEndStopsTimers: when Run's context ends, a migration planned at
// +10s never happens, every timer is stopped and the pool drains under
// way are cancelled and waited for.
func TestRunEndStopsTimers(t *testing.T) {
	clk := newFakeClock()
	ss := sessions(clk, 2)
	pools := newPools(true)
	// 0.1/s: the starts are at 0 and +10s.
	c := &Controller{Timeout: time.Minute, Window: time.Millisecond, Rate: 0.1, Clock: clk,
		Lister: newLister(map[string][]*fakeSession{readyB.Address: ss}), Pools: pools}
	stop := start(t, c)
	c.Update(snap(t, readyA, termB))
	pools.await(t, 1)
	clk.Advance(time.Second)
	migrated := 0
	for _, s := range ss {
		n, _, _ := s.migrated()
		migrated += n
	}
	if migrated != 1 {
		t.Fatalf("%d migrations in the first second, want 1", migrated)
	}
	stop() // returns only once the pool drain has returned
	if err := pools.ctx(t, readyB.Address).Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("pool drain context %v after Run, want Canceled", err)
	}
	if n := clk.Pending(); n != 0 {
		t.Errorf("%d timers armed after Run, want none", n)
	}
	clk.Advance(time.Minute)
	migrated = 0
	for _, s := range ss {
		n, _, _ := s.migrated()
		migrated += n
	}
	if migrated != 1 {
		t.Errorf("%d migrations after Run ended, want still 1", migrated)
	}
	// Once Run has ended, Update plans nothing and Shutdown refuses.
	if n := c.Update(snap(t, termA, termB)); n != 0 || clk.Pending() != 0 {
		t.Errorf("Update after Run scheduled %d and armed %d timers, want none", n, clk.Pending())
	}
	if err := c.Shutdown(context.Background()); !errors.Is(err, ErrStopped) {
		t.Errorf("Shutdown after Run: %v, want ErrStopped", err)
	}
	if err := c.Run(context.Background()); !errors.Is(err, ErrStopped) {
		t.Errorf("second Run: %v, want ErrStopped", err)
	}
	goleak.VerifyNone(t)
}

// TestBeforeRun: Update before Run arms nothing and starts no goroutine;
// Run arms what it planned, and what is already due fires at once.
func TestBeforeRun(t *testing.T) {
	clk := newFakeClock()
	ss := sessions(clk, 4)
	pools := newPools(false)
	c := &Controller{Timeout: 10 * time.Second, Window: 4 * time.Second, Clock: clk,
		Lister: newLister(map[string][]*fakeSession{readyB.Address: ss}), Pools: pools}
	if n := c.Update(snap(t, readyA, termB)); n != 4 {
		t.Fatalf("scheduled %d before Run, want 4", n)
	}
	clk.Advance(2 * time.Second)
	if n := clk.Pending(); n != 0 {
		t.Fatalf("%d timers armed before Run, want none", n)
	}
	for _, s := range ss {
		if n, _, _ := s.migrated(); n != 0 {
			t.Fatal("a session moved before Run")
		}
	}
	if pools.count(readyB.Address) != 0 {
		t.Fatal("pools drained before Run")
	}
	goleak.VerifyNone(t) // a controller never run leaves nothing behind
	start(t, c)
	pools.await(t, 1)
	clk.Advance(0) // the first two strata are past: they start at once
	moved := 0
	for _, s := range ss {
		if n, at, _ := s.migrated(); n == 1 {
			moved++
			if !at.Equal(epoch.Add(2 * time.Second)) {
				t.Errorf("a late start at %v, want at Run's start", at.Sub(epoch))
			}
		}
	}
	if moved != 2 {
		t.Errorf("%d started when Run did, want the 2 whose strata were past", moved)
	}
	clk.Advance(2 * time.Second)
	starts(t, ss)
	checkDeadlines(t, ss, epoch.Add(10*time.Second))
}

// TestStarts: the pacing itself, over many draws.
func TestStarts(t *testing.T) {
	cases := []struct {
		name          string
		n             int
		window, limit time.Duration
		rate          float64
		last          time.Duration // the latest start allowed
		gap           time.Duration // the least gap between starts
		exact         bool          // starts exactly gap apart
	}{
		{name: "window only", n: 100, window: time.Second, limit: 2 * time.Second, last: time.Second},
		{name: "window holds the rate", n: 100, window: 10 * time.Second, limit: 20 * time.Second, rate: 20, last: 10 * time.Second, gap: 50 * time.Millisecond},
		{name: "rate beats window", n: 10, window: 100 * time.Millisecond, limit: 20 * time.Second, rate: 10, last: 900 * time.Millisecond, gap: 100 * time.Millisecond, exact: true},
		{name: "limit beats rate", n: 10, window: 100 * time.Millisecond, limit: 250 * time.Millisecond, rate: 10, last: 250 * time.Millisecond},
		{name: "no window", n: 5, limit: time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for range 50 {
				c := &Controller{Rate: tc.rate}
				c.init()
				got := c.starts(tc.n, epoch, tc.window, tc.limit)
				for i, at := range got {
					d := at.Sub(epoch)
					if d < 0 || d > tc.last {
						t.Fatalf("start %d at %v, want within [0, %v]", i, d, tc.last)
					}
					if tc.exact && d != time.Duration(i)*tc.gap {
						t.Fatalf("start %d at %v, want %v", i, d, time.Duration(i)*tc.gap)
					}
				}
				checkGaps(t, got, tc.gap)
			}
		})
	}
}

// realSession reports its deadline when asked to move.
type realSession chan time.Time

func (s realSession) Migrate(deadline time.Time) { s <- deadline }

type realLister map[string][]Session

func (l realLister) Endpoints() []string {
	var out []string
	for ep := range l {
		out = append(out, ep)
	}
	return out
}
func (l realLister) Sessions(ep string) []Session   { return l[ep] }
func (l realLister) Wait(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }

// TestRealClock: with no Clock, the real one plans: the deadline is Timeout
// after the Update, the pools' context carries it, and Run's end cancels
// the pool drain.
func TestRealClock(t *testing.T) {
	s := make(realSession, 1)
	pools := newPools(true)
	c := &Controller{Timeout: time.Minute, Window: time.Millisecond, Lister: realLister{readyB.Address: {s}}, Pools: pools}
	stop := start(t, c)
	before := time.Now()
	c.Update(snap(t, readyA, termB))
	after := time.Now()
	var dl time.Time
	select {
	case dl = <-s:
	case <-time.After(10 * time.Second):
		t.Fatal("the session was not asked to move")
	}
	if dl.Before(before.Add(time.Minute)) || dl.After(after.Add(time.Minute)) {
		t.Errorf("deadline %v, want Timeout after the Update, within [%v, %v]", dl, before.Add(time.Minute), after.Add(time.Minute))
	}
	pools.await(t, 1)
	pctx := pools.ctx(t, readyB.Address)
	if pdl, _ := pctx.Deadline(); !pdl.Equal(dl) {
		t.Errorf("pool drain deadline %v, want the sessions' %v", pdl, dl)
	}
	stop()
	if !errors.Is(pctx.Err(), context.Canceled) {
		t.Errorf("pool drain context %v after Run, want Canceled", pctx.Err())
	}
}
