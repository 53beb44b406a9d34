package drain

import (
	"context"
	"errors"
	"testing"
	"time"
)

// shutdown runs c.Shutdown(ctx) on a goroutine and returns its result's
// channel once Shutdown has planned (it waits on the lister).
func shutdown(t *testing.T, c *Controller, l *fakeLister, ctx context.Context) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.Shutdown(ctx) }()
	select {
	case <-l.waiting:
	case err := <-done:
		t.Fatalf("Shutdown returned %v before waiting for the sessions", err)
	}
	return done
}

func result(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return")
		return nil
	}
}

// TestShutdownPacesSessions: 200 sessions over four endpoints start within
// the window, at most Rate a second, each with the earlier of Timeout and
// ctx's deadline; Shutdown returns once they have all ended.
func TestShutdownPacesSessions(t *testing.T) {
	cases := []struct {
		name         string
		ctxDeadline  time.Duration // 0: none
		wantDeadline time.Duration
		wantWindow   time.Duration
	}{
		{"timeout", 0, time.Minute, 30 * time.Second},
		{"ctx deadline earlier", 40 * time.Second, 40 * time.Second, 20 * time.Second}, // the window shrinks to 40/60 of 30s
		{"ctx deadline later", 2 * time.Minute, time.Minute, 30 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			all := sessions(clk, 200)
			l := newLister(map[string][]*fakeSession{
				readyA.Address: all[:50], readyB.Address: all[50:100], readyC.Address: all[100:150], readyD.Address: all[150:]})
			l.endOnMigrate()
			rec := &recorder{}
			c := &Controller{Timeout: time.Minute, Window: 30 * time.Second, Rate: 20, Clock: clk, Lister: l, OnMigrate: rec.on}
			start(t, c)
			c.Update(snap(t, readyA, readyB, readyC, readyD))
			clk.Advance(time.Second)
			t0 := clk.Now()
			ctx := context.Background()
			if tc.ctxDeadline > 0 {
				ctx = deadlineCtx{ctx, t0.Add(tc.ctxDeadline)}
			}
			done := shutdown(t, c, l, ctx)
			last := lastPlanned(c)
			clk.AdvanceTo(last.Add(-time.Nanosecond))
			select {
			case err := <-done:
				t.Fatalf("Shutdown returned %v with a session live", err)
			default:
			}
			clk.AdvanceTo(t0.Add(tc.wantWindow))
			if err := result(t, done); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			got := starts(t, all)
			if got[0].Before(t0) || got[199].After(t0.Add(tc.wantWindow)) {
				t.Errorf("starts from +%v to +%v, want within [0, %v]", got[0].Sub(t0), got[199].Sub(t0), tc.wantWindow)
			}
			checkGaps(t, got, 50*time.Millisecond)
			checkDeadlines(t, all, t0.Add(tc.wantDeadline))
			for _, s := range all {
				if reason, _ := rec.reason(s); reason != ReasonShutdown {
					t.Fatalf("reason %q, want %q", reason, ReasonShutdown)
				}
			}
			t.Logf("200 starts over %v (window %v), closest %v apart", got[199].Sub(got[0]), tc.wantWindow, minGap(got))
			// Shutting down: no rebalancing any more.
			if n := c.RebalanceOnce(Rebalance{Factor: 1}, clk.Now()); n != 0 {
				t.Errorf("rebalance moved %d after Shutdown", n)
			}
		})
	}
}

func minGap(sorted []time.Time) time.Duration {
	g := time.Duration(1<<63 - 1)
	for i := 1; i < len(sorted); i++ {
		g = min(g, sorted[i].Sub(sorted[i-1]))
	}
	return g
}

// TestShutdownReturnsCtxErr: a session that never ends keeps Shutdown
// waiting until ctx ends.
func TestShutdownReturnsCtxErr(t *testing.T) {
	clk := newFakeClock()
	ss := sessions(clk, 3)
	l := newLister(map[string][]*fakeSession{readyA.Address: ss})
	l.endOnMigrate()
	ss[1].onMigrate = nil // this one never ends
	c := &Controller{Timeout: 10 * time.Second, Clock: clk, Lister: l}
	start(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	done := shutdown(t, c, l, ctx)
	clk.Advance(time.Minute)
	starts(t, ss)
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a session live", err)
	default:
	}
	cancel()
	if err := result(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown: %v, want context.Canceled", err)
	}
}

// TestShutdownEndsWithRun: Run's end makes a waiting Shutdown return.
func TestShutdownEndsWithRun(t *testing.T) {
	clk := newFakeClock()
	l := newLister(map[string][]*fakeSession{readyA.Address: sessions(clk, 1)})
	c := &Controller{Timeout: 10 * time.Second, Clock: clk, Lister: l}
	stop := start(t, c)
	done := shutdown(t, c, l, context.Background())
	stop()
	if err := result(t, done); !errors.Is(err, ErrStopped) {
		t.Fatalf("Shutdown: %v, want ErrStopped", err)
	}
}

// TestShutdownMigratesDownstream: the downstream connections move too,
// with the same pacing, and Shutdown waits for them.
func TestShutdownMigratesDownstream(t *testing.T) {
	clk := newFakeClock()
	ss, conns := sessions(clk, 5), sessions(clk, 5)
	l := newLister(map[string][]*fakeSession{readyA.Address: ss})
	l.endOnMigrate()
	down := newDown(conns)
	rec := &recorder{}
	c := &Controller{Timeout: 10 * time.Second, Window: 2 * time.Second, Rate: 4, Clock: clk,
		Lister: l, Downstream: down, OnMigrate: rec.on}
	start(t, c)
	done := shutdown(t, c, l, context.Background())
	clk.Advance(2250 * time.Millisecond)
	// Ten starts at 4/s do not fit a 2s window: 250ms apart.
	got := starts(t, append(append([]*fakeSession{}, ss...), conns...))
	for i, at := range got {
		if want := epoch.Add(time.Duration(i) * 250 * time.Millisecond); !at.Equal(want) {
			t.Errorf("start %d at %v, want %v", i, at.Sub(epoch), want.Sub(epoch))
		}
	}
	// A connection's deadline: its start plus what the 2s window leaves
	// of the 10s (never past the 10s), so that what is still open on them
	// ends spread too.
	for i, s := range conns {
		_, at, dl := s.migrated()
		want := at.Add(8 * time.Second)
		if end := epoch.Add(10 * time.Second); want.After(end) {
			want = end
		}
		if !dl.Equal(want) {
			t.Errorf("downstream conn %d asked at %v with deadline %v, want %v", i, at.Sub(epoch), dl.Sub(epoch), want.Sub(epoch))
		}
	}
	checkDeadlines(t, ss, epoch.Add(10*time.Second))
	for _, s := range conns {
		if reason, ep := rec.reason(s); reason != ReasonShutdown || ep != "" {
			t.Errorf("OnMigrate(%q, %q) for a downstream conn, want (\"\", %q)", ep, reason, ReasonShutdown)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with downstream conns live", err)
	default:
	}
	for _, s := range conns {
		down.end(s)
	}
	if err := result(t, done); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// TestShutdownDrainsPools: longhaul's shutdown drains no endpoint's pools
// (the endpoints stay, and the client connections still to move use them);
// a pool draining because its endpoint left ends by Shutdown's deadline, and
// Shutdown waits for it; an endpoint leaving during the shutdown drains its
// pools by that deadline too.
func TestShutdownDrainsPools(t *testing.T) {
	clk := newFakeClock()
	pools := newPools(true)
	l := newLister(nil)
	c := &Controller{Timeout: 30 * time.Second, Clock: clk, Lister: l, Pools: pools}
	stop := start(t, c)
	c.Update(snap(t, readyA, readyB, readyC, readyD))
	c.Update(snap(t, readyA, readyB, readyD)) // C gone
	pools.await(t, 1)
	clk.Advance(30 * time.Second) // C's drain ends at its deadline
	if err := pools.ctx(t, readyC.Address).Err(); err == nil {
		t.Fatal("C's pools still draining after their deadline")
	}
	c.Update(snap(t, readyA, readyB, termD)) // D terminating: its pools drain until +30s
	pools.await(t, 1)
	clk.Advance(time.Second)
	t0 := clk.Now()
	ctx := deadlineCtx{context.Background(), t0.Add(5 * time.Second)}
	done := shutdown(t, c, l, ctx)
	if dl, _ := pools.ctx(t, termD.Address).Deadline(); !dl.Equal(t0.Add(5 * time.Second)) {
		t.Errorf("pools of D: deadline +%v, want Shutdown's +5s", dl.Sub(t0))
	}
	c.Update(snap(t, readyA, termB, termD)) // B leaves during the shutdown
	pools.await(t, 1)
	if dl, _ := pools.ctx(t, termB.Address).Deadline(); dl.After(t0.Add(5 * time.Second)) {
		t.Errorf("pools of B, leaving during the shutdown: deadline +%v, want by Shutdown's +5s", dl.Sub(t0))
	}
	clk.Advance(5*time.Second - time.Nanosecond)
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with pools draining", err)
	default:
	}
	clk.Advance(time.Nanosecond)
	if err := result(t, done); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	stop()
	for ep, n := range map[string]int{readyA.Address: 0, readyB.Address: 1, readyC.Address: 1, termD.Address: 1} {
		if got := pools.count(ep); got != n {
			t.Errorf("pools of %s drained %d times, want %d", ep, got, n)
		}
	}
}

// TestEndpointDrainThenShutdown: a session an endpoint drain already asked
// to move is not asked again; one planned soon enough keeps its plan; one
// planned too late is brought forward within Shutdown's limit; all take
// Shutdown's deadline unless asked before it.
func TestEndpointDrainThenShutdown(t *testing.T) {
	clk := newFakeClock()
	onA, onB := sessions(clk, 10), sessions(clk, 10)
	l := newLister(map[string][]*fakeSession{readyA.Address: onA, readyB.Address: onB})
	l.endOnMigrate()
	rec := &recorder{}
	c := &Controller{Timeout: 10 * time.Second, Window: 8 * time.Second, Clock: clk, Lister: l, OnMigrate: rec.on}
	start(t, c)
	c.Update(snap(t, readyA, termB))
	clk.Advance(time.Second)
	t1 := clk.Now()
	planned := map[*fakeSession]time.Time{}
	c.mu.Lock()
	for _, s := range onB {
		if p := c.pending[s]; p != nil {
			planned[s] = p.start
		}
	}
	c.mu.Unlock()
	if len(planned) < 8 || len(planned) > 9 {
		t.Fatalf("%d of 10 still planned after 1s of 8 strata of 800ms, want 8 or 9", len(planned))
	}
	// 2s left: starts by 1.8s, within a window of 8s*2/10 = 1.6s.
	done := shutdown(t, c, l, deadlineCtx{context.Background(), t1.Add(2 * time.Second)})
	clk.Advance(2 * time.Second)
	if err := result(t, done); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	limit := t1.Add(1800 * time.Millisecond)
	for i, s := range onB {
		n, at, dl := s.migrated()
		if n != 1 {
			t.Fatalf("B's session %d asked to move %d times, want once", i, n)
		}
		if reason, _ := rec.reason(s); reason != ReasonEndpoint {
			t.Errorf("B's session %d moved for %q, want %q", i, reason, ReasonEndpoint)
		}
		p, wasPlanned := planned[s]
		switch {
		case !wasPlanned:
			if !dl.Equal(epoch.Add(10 * time.Second)) {
				t.Errorf("B's session %d, asked before Shutdown: deadline +%v, want its own 10s", i, dl.Sub(epoch))
			}
			continue
		case !p.After(limit) && !at.Equal(p):
			t.Errorf("B's session %d planned at +%v within the limit moved to +%v", i, p.Sub(t1), at.Sub(t1))
		case at.After(limit):
			t.Errorf("B's session %d started +%v after Shutdown, want by +1.8s", i, at.Sub(t1))
		}
		if !dl.Equal(t1.Add(2 * time.Second)) {
			t.Errorf("B's session %d: deadline +%v, want Shutdown's +2s", i, dl.Sub(t1))
		}
	}
	for _, at := range starts(t, onA) {
		if at.After(t1.Add(1600 * time.Millisecond)) {
			t.Errorf("A's session started +%v after Shutdown, want within the 1.6s window", at.Sub(t1))
		}
	}
	checkDeadlines(t, onA, t1.Add(2*time.Second))
}

// TestShutdownBeforeRun: Shutdown before Run plans; the migrations start
// when Run does.
func TestShutdownBeforeRun(t *testing.T) {
	clk := newFakeClock()
	ss := sessions(clk, 3)
	l := newLister(map[string][]*fakeSession{readyA.Address: ss})
	l.endOnMigrate()
	c := &Controller{Timeout: 10 * time.Second, Window: 3 * time.Second, Clock: clk, Lister: l}
	done := shutdown(t, c, l, context.Background())
	clk.Advance(time.Second)
	if clk.Pending() != 0 {
		t.Fatal("Shutdown before Run armed a timer")
	}
	start(t, c)
	clk.Advance(2 * time.Second) // to the end of the 3s window
	if err := result(t, done); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if last := starts(t, ss)[2]; last.After(epoch.Add(3 * time.Second)) {
		t.Errorf("last start at %v, want within the 3s window", last.Sub(epoch))
	}
	checkDeadlines(t, ss, epoch.Add(10*time.Second))
}
