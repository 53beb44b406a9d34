package drain

import (
	"slices"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/discovery"
)

var termC = discovery.Endpoint{Address: readyC.Address, Serving: true, Terminating: true}

// TestStreamPlanStrata: a pool drain's plan gives the streams a grace of a
// quarter of the window (at most MaxStreamGrace), then ends them over the
// rest of the window, one per stratum, ascending, each with a pushback in
// [0, grace].
func TestStreamPlanStrata(t *testing.T) {
	for _, tc := range []struct {
		window, grace time.Duration
	}{
		{2 * time.Second, 500 * time.Millisecond},
		{8 * time.Second, MaxStreamGrace},
	} {
		clk, _, plan := leavingB(t, tc.window)
		if want := epoch.Add(tc.grace); !plan.Start().Equal(want) {
			t.Fatalf("window %v: start %v after the epoch, want %v", tc.window, plan.Start().Sub(epoch), tc.grace)
		}
		clk.AdvanceTo(plan.Start())
		const n = 10
		at, pb := plan.Ends(n)
		if len(at) != n || len(pb) != n {
			t.Fatalf("window %v: %d ends and %d pushbacks, want %d", tc.window, len(at), len(pb), n)
		}
		if !slices.IsSortedFunc(at, time.Time.Compare) {
			t.Fatalf("window %v: ends not ascending", tc.window)
		}
		stratum := (tc.window - tc.grace) / n
		for i, a := range at {
			lo := plan.Start().Add(time.Duration(i) * stratum)
			if a.Before(lo) || !a.Before(lo.Add(stratum)) {
				t.Errorf("window %v: end %d at %v, want in stratum [%v, %v)", tc.window, i, a.Sub(epoch), lo.Sub(epoch), lo.Add(stratum).Sub(epoch))
			}
			if pb[i] < 0 || pb[i] > tc.grace {
				t.Errorf("window %v: pushback %d is %v, want in [0, %v]", tc.window, i, pb[i], tc.grace)
			}
		}
	}
}

// TestStreamPlanLate: ends asked for after the grace start at the time of
// asking and keep within what is left of the window.
func TestStreamPlanLate(t *testing.T) {
	clk, _, plan := leavingB(t, 4*time.Second)
	clk.Advance(3 * time.Second)
	asked := clk.Now()
	at, _ := plan.Ends(4)
	for i, a := range at {
		if a.Before(asked) || a.After(epoch.Add(4*time.Second)) {
			t.Errorf("end %d at %v, want within [3s, 4s]", i, a.Sub(epoch))
		}
	}
	// Past the window: at once.
	clk.Advance(2 * time.Second)
	asked = clk.Now()
	at, _ = plan.Ends(3)
	for i, a := range at {
		if !a.Equal(asked) {
			t.Errorf("end %d past the window at %v, want at once (%v)", i, a.Sub(epoch), asked.Sub(epoch))
		}
	}
}

// TestStreamPlanRate: the plan's ends keep Rate, after the migrations
// planned before it, and the migrations planned after it keep Rate after
// its ends.
func TestStreamPlanRate(t *testing.T) {
	clk := newFakeClock()
	pools := newPools(true)
	first, second := sessions(clk, 3), sessions(clk, 3)
	l := newLister(map[string][]*fakeSession{readyB.Address: first})
	c := &Controller{Timeout: 20 * time.Second, Window: 4 * time.Second, Rate: 2, Clock: clk, Lister: l, Pools: pools}
	start(t, c)
	c.Update(snap(t, readyA, readyC, termB))
	pools.await(t, 1)
	plan := pools.plan(t, readyB.Address)
	var planned []time.Time
	c.mu.Lock()
	for _, s := range first {
		planned = append(planned, c.pending[s].start)
	}
	c.mu.Unlock()
	clk.AdvanceTo(plan.Start())
	ends, _ := plan.Ends(6)
	all := slices.Concat(planned, ends)
	slices.SortFunc(all, time.Time.Compare)
	checkGaps(t, all, 500*time.Millisecond)

	l.mu.Lock()
	l.eps[readyC.Address] = second
	l.mu.Unlock()
	c.Update(snap(t, readyA, termB, termC))
	c.mu.Lock()
	for _, s := range second {
		all = append(all, c.pending[s].start)
	}
	c.mu.Unlock()
	slices.SortFunc(all, time.Time.Compare)
	checkGaps(t, all, 500*time.Millisecond)
}

// TestStreamPlanKillTime: a kill time learnt after the plan was made brings
// its ends within nine tenths of what the pools have left.
func TestStreamPlanKillTime(t *testing.T) {
	clk, c, plan := leavingB(t, 8*time.Second)
	clk.AdvanceTo(plan.Start())
	dying := termB
	dying.KillTime = clk.Now().Add(2 * time.Second)
	c.Update(snap(t, readyA, dying))
	latest := clk.Now().Add(1800 * time.Millisecond)
	at, _ := plan.Ends(5)
	for i, a := range at {
		if a.After(latest) {
			t.Errorf("end %d at %v, after the kill time's latest %v", i, a.Sub(epoch), latest.Sub(epoch))
		}
	}
}

// leavingB runs a controller on a fake clock with a 10s timeout and window,
// with no session, makes B leave and returns the plan of its pools' drain.
func leavingB(t *testing.T, window time.Duration) (*fakeClock, *Controller, StreamPlan) {
	t.Helper()
	clk := newFakeClock()
	pools := newPools(true)
	c := &Controller{Timeout: 10 * time.Second, Window: window, Clock: clk, Lister: newLister(nil), Pools: pools}
	start(t, c)
	c.Update(snap(t, readyA, termB))
	pools.await(t, 1)
	return clk, c, pools.plan(t, readyB.Address)
}
