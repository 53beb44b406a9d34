package drain

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/longhaul-proxy/longhaul/discovery"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fakeSession struct {
	mu    sync.Mutex
	calls []time.Time // when Migrate was called
	dl    time.Time
}

func (s *fakeSession) Migrate(deadline time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, time.Now())
	s.dl = deadline
}

func (s *fakeSession) migrated() (int, time.Time, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.calls) == 0 {
		return 0, time.Time{}, time.Time{}
	}
	return len(s.calls), s.calls[0], s.dl
}

type fakeLister map[string][]*fakeSession

func (f fakeLister) Endpoints() []string {
	var out []string
	for k := range f {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (f fakeLister) Sessions(ep string) []Session {
	var out []Session
	for _, s := range f[ep] {
		out = append(out, s)
	}
	return out
}

type fakePools struct {
	mu      sync.Mutex
	drained map[string]int
}

func (p *fakePools) DrainEndpoint(ctx context.Context, addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drained == nil {
		p.drained = map[string]int{}
	}
	p.drained[addr]++
}

func snap(t *testing.T, eps ...discovery.Endpoint) *discovery.Snapshot {
	t.Helper()
	s, err := discovery.NewSnapshot("svc", eps)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var (
	readyA = discovery.Endpoint{Address: "192.0.2.1:80", Ready: true, Serving: true}
	readyB = discovery.Endpoint{Address: "192.0.2.2:80", Ready: true, Serving: true}
	termB  = discovery.Endpoint{Address: "192.0.2.2:80", Serving: true, Terminating: true}
	termA  = discovery.Endpoint{Address: "192.0.2.1:80", Serving: true, Terminating: true}
)

func sessions(n int) []*fakeSession {
	out := make([]*fakeSession, n)
	for i := range out {
		out[i] = &fakeSession{}
	}
	return out
}

func waitMigrated(t *testing.T, ss []*fakeSession, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		all := true
		for _, s := range ss {
			if n, _, _ := s.migrated(); n == 0 {
				all = false
			}
		}
		if all {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("not every session was asked to migrate within %v", within)
}

func TestTerminatingEndpointSessionsMove(t *testing.T) {
	onA, onB := sessions(20), sessions(20)
	l := fakeLister{readyA.Address: onA, readyB.Address: onB}
	pools := &fakePools{}
	c := &Controller{Timeout: 2 * time.Second, Window: 400 * time.Millisecond, Lister: l, Pools: pools}
	start := time.Now()
	if n := c.Update(snap(t, readyA, termB)); n != 20 {
		t.Fatalf("scheduled %d, want 20", n)
	}
	// A second snapshot with the same state schedules nothing new.
	if n := c.Update(snap(t, readyA, termB)); n != 0 {
		t.Fatalf("re-scheduled %d sessions, want 0", n)
	}
	waitMigrated(t, onB, 2*time.Second)
	var first, last time.Time
	for _, s := range onB {
		n, at, dl := s.migrated()
		if n != 1 {
			t.Errorf("migrated %d times, want once", n)
		}
		if d := dl.Sub(start); d < 1900*time.Millisecond || d > 2500*time.Millisecond {
			t.Errorf("deadline %v after the change, want the 2s timeout", d)
		}
		if first.IsZero() || at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
		}
	}
	if spread := last.Sub(first); spread < 100*time.Millisecond {
		t.Errorf("migrations spread over %v, want them paced over the 400ms window", spread)
	}
	for _, s := range onA {
		if n, _, _ := s.migrated(); n != 0 {
			t.Fatal("a session on a ready endpoint was migrated")
		}
	}
	c.Wait()
	if pools.drained[readyB.Address] != 1 || pools.drained[readyA.Address] != 0 {
		t.Errorf("pools drained %v, want only %s once", pools.drained, readyB.Address)
	}
}

func TestGoneEndpointDrainsPools(t *testing.T) {
	pools := &fakePools{}
	c := &Controller{Timeout: time.Second, Lister: fakeLister{}, Pools: pools}
	c.Update(snap(t, readyA, readyB))
	c.Update(snap(t, readyA))
	c.Wait()
	if pools.drained[readyB.Address] != 1 {
		t.Fatalf("pools drained %v, want %s once", pools.drained, readyB.Address)
	}
	// Back, then gone again: drained again.
	c.Update(snap(t, readyA, readyB))
	c.Update(snap(t, readyA))
	c.Wait()
	if pools.drained[readyB.Address] != 2 {
		t.Fatalf("pools drained %v, want %s twice", pools.drained, readyB.Address)
	}
}

// TestFallbackKeepsSessions: when every endpoint is terminating, the
// serving ones stay in use and their sessions are not moved.
func TestFallbackKeepsSessions(t *testing.T) {
	onA := sessions(3)
	c := &Controller{Timeout: 100 * time.Millisecond, Lister: fakeLister{termA.Address: onA}}
	if n := c.Update(snap(t, termA)); n != 0 {
		t.Fatalf("scheduled %d sessions of the only serving endpoint, want 0", n)
	}
}

func TestRateCap(t *testing.T) {
	ss := sessions(10)
	c := &Controller{Timeout: 5 * time.Second, Window: time.Millisecond, Rate: 20, Lister: fakeLister{readyB.Address: ss}}
	c.Update(snap(t, readyA, termB))
	waitMigrated(t, ss, 3*time.Second)
	var times []time.Time
	for _, s := range ss {
		_, at, _ := s.migrated()
		times = append(times, at)
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	if span := times[9].Sub(times[0]); span < 350*time.Millisecond {
		t.Errorf("10 migrations at 20/s took %v, want about 450ms", span)
	}
}

func TestEligible(t *testing.T) {
	cases := []struct {
		name string
		eps  []discovery.Endpoint
		want []string
	}{
		{"ready only", []discovery.Endpoint{readyA, termB}, []string{readyA.Address}},
		{"fallback", []discovery.Endpoint{termA, termB}, []string{readyA.Address, readyB.Address}},
		{"none", []discovery.Endpoint{{Address: "192.0.2.9:80", Terminating: true}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Eligible(snap(t, c.eps...))
			if len(got) != len(c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
			for _, w := range c.want {
				if !got[w] {
					t.Errorf("got %v, want %s in it", got, w)
				}
			}
		})
	}
}

// migratedBy checks that every session was asked to move once, with a
// deadline within tol of want, and returns the latest start.
func checkDeadlines(t *testing.T, ss []*fakeSession, want time.Time, tol time.Duration) (lastStart time.Time) {
	t.Helper()
	for _, s := range ss {
		n, at, dl := s.migrated()
		if n != 1 {
			t.Errorf("migrated %d times, want once", n)
		}
		if d := dl.Sub(want); d < -tol || d > tol {
			t.Errorf("deadline %v from the expected one, want within %v", d, tol)
		}
		if at.After(dl) {
			t.Errorf("asked to move %v after its deadline", at.Sub(dl))
		}
		if at.After(lastStart) {
			lastStart = at
		}
	}
	return lastStart
}

// TestKillTimeBoundsDeadline: the deadline is the earlier of Timeout and
// the kill time minus the margin, and the pacing shrinks to fit.
func TestKillTimeBoundsDeadline(t *testing.T) {
	ss := sessions(20)
	c := &Controller{Timeout: 10 * time.Second, Window: 5 * time.Second, KillMargin: 500 * time.Millisecond,
		Lister: fakeLister{readyB.Address: ss}}
	now := time.Now()
	dying := termB
	dying.KillTime = now.Add(2 * time.Second)
	if n := c.Update(snap(t, readyA, dying)); n != 20 {
		t.Fatalf("scheduled %d, want 20", n)
	}
	waitMigrated(t, ss, 2*time.Second)
	want := now.Add(1500 * time.Millisecond)
	if last := checkDeadlines(t, ss, want, 50*time.Millisecond); last.After(want) {
		t.Errorf("last migration started %v after the deadline", last.Sub(want))
	} else {
		t.Logf("20 migrations started within %v of a 1.5s deadline (kill in 2s, margin 0.5s)", last.Sub(now).Round(time.Millisecond))
	}
}

// TestKillTimeLaterThanTimeout: a distant kill time changes nothing.
func TestKillTimeLaterThanTimeout(t *testing.T) {
	ss := sessions(5)
	c := &Controller{Timeout: time.Second, Window: 100 * time.Millisecond, KillMargin: 2 * time.Second,
		Lister: fakeLister{readyB.Address: ss}}
	now := time.Now()
	dying := termB
	dying.KillTime = now.Add(time.Minute)
	c.Update(snap(t, readyA, dying))
	waitMigrated(t, ss, time.Second)
	checkDeadlines(t, ss, now.Add(time.Second), 50*time.Millisecond)
}

// TestKillTimePastMovesAtOnce: a kill time minus margin already past gives
// sessions MinLeft, and every migration starts within it.
func TestKillTimePastMovesAtOnce(t *testing.T) {
	ss := sessions(20)
	c := &Controller{Timeout: 10 * time.Second, Rate: 5, KillMargin: 2 * time.Second,
		Lister: fakeLister{readyB.Address: ss}}
	now := time.Now()
	dying := termB
	dying.KillTime = now.Add(time.Second) // minus the margin: a second ago
	c.Update(snap(t, readyA, dying))
	waitMigrated(t, ss, time.Second)
	want := now.Add(MinLeft)
	if last := checkDeadlines(t, ss, want, 50*time.Millisecond); last.After(want) {
		t.Errorf("last migration started %v after the deadline: the rate cap must yield to it", last.Sub(want))
	}
}

// TestKillTimeArrivesLater: the kill time comes in a snapshot after the one
// that made the endpoint terminating (the pod is read afterwards).
// Migrations not started yet take the earlier deadline and are brought
// forward; the pools end at it too.
func TestKillTimeArrivesLater(t *testing.T) {
	ss := sessions(20)
	pools := &blockingPools{ended: make(chan time.Time, 1)}
	c := &Controller{Timeout: 10 * time.Second, Window: 8 * time.Second, KillMargin: 500 * time.Millisecond,
		Lister: fakeLister{readyB.Address: ss}, Pools: pools}
	start := time.Now()
	c.Update(snap(t, readyA, termB))
	time.Sleep(20 * time.Millisecond)
	now := time.Now()
	dying := termB
	dying.KillTime = now.Add(1500 * time.Millisecond)
	if n := c.Update(snap(t, readyA, dying)); n != 0 {
		t.Fatalf("the kill time scheduled %d sessions again", n)
	}
	want := now.Add(time.Second)
	waitMigrated(t, ss, 1500*time.Millisecond)
	early := 0
	for _, s := range ss {
		_, at, dl := s.migrated()
		switch {
		case at.Before(now):
			early++ // asked before the kill time was known: keeps its deadline
			if d := dl.Sub(start.Add(10 * time.Second)); d < -50*time.Millisecond || d > 50*time.Millisecond {
				t.Errorf("early migration's deadline off by %v", d)
			}
		case dl.Sub(want) > 50*time.Millisecond || want.Sub(dl) > 50*time.Millisecond:
			t.Errorf("deadline %v from the kill time's", dl.Sub(want))
		case at.After(dl):
			t.Errorf("asked to move %v after its deadline", at.Sub(dl))
		}
	}
	if early > 2 {
		t.Errorf("%d of 20 migrations started in the first 20ms of an 8s window", early)
	}
	select {
	case at := <-pools.ended:
		if d := at.Sub(want); d < -50*time.Millisecond || d > 100*time.Millisecond {
			t.Errorf("pool drain ended %v from the kill time's deadline", d)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("pool drain still running 3s later: the kill time did not end it")
	}
	c.Wait()
}

// blockingPools drains until its context ends and reports when.
type blockingPools struct{ ended chan time.Time }

func (p *blockingPools) DrainEndpoint(ctx context.Context, addr string) {
	<-ctx.Done()
	p.ended <- time.Now()
}

// TestKillTimeForgottenWhenEligible: an endpoint that is ready again (its
// pod replaced at the same address) loses its old kill time.
func TestKillTimeForgottenWhenEligible(t *testing.T) {
	ss := sessions(3)
	c := &Controller{Timeout: 300 * time.Millisecond, Window: time.Millisecond, KillMargin: time.Second,
		Lister: fakeLister{readyB.Address: ss}}
	dying := termB
	dying.KillTime = time.Now().Add(-time.Hour)
	c.Update(snap(t, readyA, dying))
	waitMigrated(t, ss, time.Second)
	c.Update(snap(t, readyA, readyB))
	c.mu.Lock()
	_, kept := c.killAt[readyB.Address]
	c.mu.Unlock()
	if kept {
		t.Error("the kill time of an endpoint ready again is kept")
	}
}
