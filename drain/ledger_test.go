package drain

import (
	"sync"
	"testing"
	"time"
)

// lateRecorder keeps OnLate's reports.
type lateRecorder struct {
	mu sync.Mutex
	ds []EndpointDrain
}

func (r *lateRecorder) on(d EndpointDrain) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ds = append(r.ds, d)
}

func (r *lateRecorder) got() []EndpointDrain {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]EndpointDrain(nil), r.ds...)
}

// onlyDrain returns the one entry of c's ledger.
func onlyDrain(t *testing.T, c *Controller) EndpointDrain {
	t.Helper()
	ds := c.Drains()
	if len(ds) != 1 {
		t.Fatalf("ledger has %d entries, want 1: %+v", len(ds), ds)
	}
	return ds[0]
}

// TestLedgerCountsDrain: an endpoint with 10 sessions leaves with a kill
// time; its ledger entry counts the sessions as they are asked and end,
// projects the finish at the last start and then at the deadline, finishes
// with the last session, and is dropped LedgerKeep later.
func TestLedgerCountsDrain(t *testing.T) {
	clk := newFakeClock()
	ss := sessions(clk, 10)
	l := newLister(map[string][]*fakeSession{readyB.Address: ss})
	late := &lateRecorder{}
	c := &Controller{Timeout: 10 * time.Second, Window: 4 * time.Second, KillMargin: time.Second,
		Clock: clk, Lister: l, OnLate: late.on}
	start(t, c)
	dying := termB
	dying.KillTime = epoch.Add(8 * time.Second)
	if n := c.Update(snap(t, readyA, dying)); n != 10 {
		t.Fatalf("scheduled %d, want 10", n)
	}
	last := lastPlanned(c)
	d := onlyDrain(t, c)
	wantDeadline := epoch.Add(7 * time.Second) // the kill time minus the margin
	switch {
	case d.Endpoint != readyB.Address || !d.Started.Equal(epoch) || d.KillTime == nil || !d.KillTime.Equal(dying.KillTime):
		t.Fatalf("entry %+v, want %s from the epoch, kill time 8s", d, readyB.Address)
	case !d.Deadline.Equal(wantDeadline):
		t.Errorf("deadline %v, want 7s", d.Deadline.Sub(epoch))
	case d.AtStart != 10 || d.Asked != 0 || d.Planned != 10 || d.Left != 10:
		t.Errorf("at start %d asked %d planned %d left %d, want 10 0 10 10", d.AtStart, d.Asked, d.Planned, d.Left)
	case !d.ProjectedFinish.Equal(last) || !last.After(epoch):
		// Nothing asked yet: the last planned start.
		t.Errorf("projected finish %v, want the last planned start %v", d.ProjectedFinish.Sub(epoch), last.Sub(epoch))
	}
	clk.AdvanceTo(last.Add(-time.Nanosecond))
	if d := onlyDrain(t, c); d.Asked != 9 || d.Planned != 1 || !d.ProjectedFinish.Equal(wantDeadline) {
		// Sessions asked and still open: the deadline bounds them.
		t.Errorf("before the last start: asked %d planned %d projected %v, want 9 1 7s",
			d.Asked, d.Planned, d.ProjectedFinish.Sub(epoch))
	}
	clk.AdvanceTo(last)
	if d := onlyDrain(t, c); d.Asked != 10 || d.Planned != 0 || d.Left != 10 || d.Late {
		t.Errorf("after the last start: %+v, want 10 asked, 0 planned, 10 left, not late", d)
	}
	outcomes := []string{OutcomeMoved, OutcomeMoved, OutcomeMoved, OutcomeMoved, OutcomeMoved,
		OutcomeMoved, OutcomeForced, OutcomeForced, OutcomeClosed, "unknown"}
	for i, s := range ss {
		l.end(s)
		c.MigrationEnded(readyB.Address, outcomes[i])
		if i == 5 {
			if d := onlyDrain(t, c); d.Moved != 6 || d.Left != 4 || d.Finished != nil {
				t.Errorf("6 ended: moved %d left %d finished %v, want 6 4 nil", d.Moved, d.Left, d.Finished)
			}
		}
	}
	clk.Advance(time.Second)
	d = onlyDrain(t, c)
	switch {
	case d.Moved != 6 || d.Forced != 2 || d.Closed != 1 || d.Left != 0:
		t.Errorf("moved %d forced %d closed %d left %d, want 6 2 1 0", d.Moved, d.Forced, d.Closed, d.Left)
	case d.Finished == nil || !d.Finished.Equal(last) || !d.ProjectedFinish.Equal(last):
		t.Errorf("finished %v projected %v, want both at the last end, %v", d.Finished, d.ProjectedFinish.Sub(epoch), last.Sub(epoch))
	}
	clk.AdvanceTo(last.Add(LedgerKeep - time.Nanosecond))
	onlyDrain(t, c)
	clk.Advance(time.Nanosecond)
	if ds := c.Drains(); len(ds) != 0 {
		t.Errorf("ledger %+v LedgerKeep after the finish, want empty", ds)
	}
	if got := late.got(); len(got) != 0 {
		t.Errorf("OnLate called %d times for a drain ahead of its kill time", len(got))
	}
}

// TestLedgerLateWarnsOnce: sessions asked to move before their endpoint's
// kill time is known keep their deadline; the kill time arriving before it
// makes the projection late, which OnLate hears once however often the
// ledger is read or updated.
func TestLedgerLateWarnsOnce(t *testing.T) {
	clk := newFakeClock()
	ss := sessions(clk, 10)
	late := &lateRecorder{}
	c := &Controller{Timeout: 10 * time.Second, Window: time.Second, Clock: clk,
		Lister: newLister(map[string][]*fakeSession{readyB.Address: ss}), OnLate: late.on}
	start(t, c)
	c.Update(snap(t, readyA, termB))
	clk.Advance(time.Second)
	d := onlyDrain(t, c)
	if d.Asked != 10 || d.KillTime != nil || d.Late || !d.ProjectedFinish.Equal(epoch.Add(10*time.Second)) {
		t.Fatalf("all asked, no kill time: %+v, want 10 asked, projected at 10s, not late", d)
	}
	dying := termB
	dying.KillTime = epoch.Add(4 * time.Second)
	for range 3 {
		c.Update(snap(t, readyA, dying))
		c.Drains()
		clk.Advance(100 * time.Millisecond)
	}
	got := late.got()
	if len(got) != 1 {
		t.Fatalf("OnLate called %d times, want once", len(got))
	}
	if g := got[0]; g.Endpoint != readyB.Address || !g.Late || g.KillTime == nil || !g.KillTime.Equal(dying.KillTime) ||
		!g.ProjectedFinish.Equal(epoch.Add(10*time.Second)) || g.Left != 10 {
		t.Errorf("OnLate(%+v), want %s late: projected 10s past the kill time 4s, 10 left", g, readyB.Address)
	}
	if d := onlyDrain(t, c); !d.Late {
		t.Errorf("entry %+v not late after OnLate", d)
	}
}

// TestLedgerWaitsForPools: an endpoint that leaves with no session but
// pools to drain is in the ledger until its pools' drain returns (here at
// the Timeout's deadline), projected to finish by the pools' deadline, and
// is finished from then.
func TestLedgerWaitsForPools(t *testing.T) {
	clk := newFakeClock()
	pools := newPools(true)
	c := &Controller{Timeout: 2 * time.Second, Clock: clk, Lister: newLister(nil), Pools: pools}
	stop := start(t, c)
	c.Update(snap(t, readyA, termB))
	pools.await(t, 1)
	clk.Advance(time.Second)
	d := onlyDrain(t, c)
	if d.Endpoint != readyB.Address || d.AtStart != 0 || d.Left != 0 || d.Finished != nil ||
		!d.Deadline.Equal(epoch.Add(2*time.Second)) || !d.ProjectedFinish.Equal(d.Deadline) {
		t.Fatalf("entry %+v while its pools drain, want %s unfinished, deadline and projected finish 2s", d, readyB.Address)
	}
	clk.Advance(time.Second) // the pools' deadline ends their drain
	<-pools.ctx(t, readyB.Address).Done()
	stop() // waits for the pool drain's goroutine, which settles the ledger
	d = onlyDrain(t, c)
	if d.Finished == nil || !d.Finished.Equal(epoch.Add(2*time.Second)) {
		t.Errorf("finished %v, want when the pools' drain returned, at 2s", d.Finished)
	}
}
