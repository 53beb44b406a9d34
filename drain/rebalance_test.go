package drain

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/discovery"
)

func TestRebalanceMovesExcessAfterSustain(t *testing.T) {
	clk := newFakeClock()
	busy, light := sessions(clk, 10), sessions(clk, 1)
	rec := &recorder{}
	c := &Controller{Timeout: time.Second, Window: 10 * time.Millisecond, Clock: clk, OnMigrate: rec.on,
		Lister: newLister(map[string][]*fakeSession{readyA.Address: busy, readyB.Address: light})}
	start(t, c)
	c.Update(snap(t, readyA, readyB, readyC)) // a scale-up: C is new and empty
	r := Rebalance{Factor: 1.5, Sustain: 10 * time.Second, MaxPerRound: 4, PerMinute: 60}
	if n := c.RebalanceOnce(r, clk.Now()); n != 0 {
		t.Fatalf("first check moved %d, want 0", n)
	}
	clk.Advance(5 * time.Second)
	if n := c.RebalanceOnce(r, clk.Now()); n != 0 {
		t.Fatalf("moved %d before the imbalance lasted Sustain", n)
	}
	clk.Advance(5 * time.Second)
	round := clk.Now()
	// mean 11/3, trigger max(1.5 × 3.67, 4 + 1) = 5.5 < 10: active. The
	// budget, 60 a minute per session capped at 4 a round, moves 4.
	if n := c.RebalanceOnce(r, round); n != 4 {
		t.Fatalf("moved %d, want MaxPerRound = 4", n)
	}
	clk.Advance(10 * time.Millisecond)
	for _, s := range busy[:4] {
		n, at, dl := s.migrated()
		if n != 1 || at.Sub(round) > 10*time.Millisecond || !dl.Equal(round.Add(time.Second)) {
			t.Errorf("asked %d times, at +%v with deadline +%v; want once within the 10ms window and the 1s timeout", n, at.Sub(round), dl.Sub(round))
		}
		if reason, ep := rec.reason(s); reason != ReasonRebalance || ep != readyA.Address {
			t.Errorf("OnMigrate(%q, %q), want (%q, %q)", ep, reason, readyA.Address, ReasonRebalance)
		}
	}
	// Active now: the next round needs no new Sustain. The 4 asked no
	// longer count on A: A 6, B 1, C 0, mean 11/3, target
	// max(floor(1.1 × 3.67), ceil(3.67)) = 4, so 2 more move.
	clk.Advance(time.Second)
	if n := c.RebalanceOnce(r, clk.Now()); n != 2 {
		t.Fatalf("second round moved %d, want 2 down to the target", n)
	}
	clk.Advance(time.Second)
	if n := c.RebalanceOnce(r, clk.Now()); n != 0 {
		t.Fatalf("moved %d once at the target", n)
	}
	moved := 0
	for i, s := range busy {
		n, _, _ := s.migrated()
		if n > 1 {
			t.Errorf("session %d asked to move %d times", i, n)
		}
		moved += n
	}
	if moved != 6 {
		t.Errorf("%d of A's sessions moved, want 6", moved)
	}
	if n, _, _ := light[0].migrated(); n != 0 {
		t.Error("a session of a lightly loaded endpoint was moved")
	}
}

func TestRebalanceLeavesBalancedAndSmallAlone(t *testing.T) {
	clk := newFakeClock()
	c := &Controller{Timeout: time.Second, Clock: clk, Lister: newLister(map[string][]*fakeSession{
		readyA.Address: sessions(clk, 5), readyB.Address: sessions(clk, 4), readyC.Address: sessions(clk, 3)})}
	c.Update(snap(t, readyA, readyB, readyC))
	r := Rebalance{Factor: 1.2, Sustain: time.Nanosecond}
	for i := range 3 {
		if n := c.RebalanceOnce(r, epoch.Add(time.Duration(i)*time.Second)); n != 0 {
			t.Fatalf("moved %d sessions of a spread within ceil(mean)+1", n)
		}
	}
	// One endpoint: nowhere to move to.
	c2 := &Controller{Timeout: time.Second, Clock: clk, Lister: newLister(map[string][]*fakeSession{readyA.Address: sessions(clk, 50)})}
	c2.Update(snap(t, readyA))
	if n := c2.RebalanceOnce(r, epoch); n != 0 {
		t.Fatalf("moved %d sessions with a single endpoint", n)
	}
}

// pinned is a session that cannot move without loss.
type pinned struct{ *fakeSession }

func (pinned) Movable() bool { return false }

// TestRebalanceMovesOnlyMovable: sessions whose Movable reports false, and
// those Rebalance.Movable refuses, stay; the others move.
func TestRebalanceMovesOnlyMovable(t *testing.T) {
	clk := newFakeClock()
	ss := sessions(clk, 12)
	refused := ss[4]
	l := newLister(map[string][]*fakeSession{readyA.Address: ss, readyB.Address: sessions(clk, 1)})
	var fixed []pinned
	for _, s := range ss[:4] {
		fixed = append(fixed, pinned{s})
	}
	lister := &pinningLister{fakeLister: l, pinned: fixed}
	c := &Controller{Timeout: time.Second, Window: 10 * time.Millisecond, Clock: clk, Lister: lister}
	start(t, c)
	c.Update(snap(t, readyA, readyB, readyC))
	r := Rebalance{Factor: 1.5, Sustain: time.Nanosecond, MaxPerRound: 20, PerMinute: 600,
		Movable: func(s Session) bool { return s != Session(refused) }}
	c.RebalanceOnce(r, clk.Now())
	clk.Advance(time.Second)
	if n := c.RebalanceOnce(r, clk.Now()); n == 0 {
		t.Fatal("nothing moved")
	}
	clk.Advance(time.Second)
	for i, s := range ss[:5] {
		if n, _, _ := s.migrated(); n != 0 {
			t.Errorf("unmovable session %d was moved", i)
		}
	}
}

// pinningLister lists its pinned sessions in place of the fakeSessions
// they wrap.
type pinningLister struct {
	*fakeLister
	pinned []pinned
}

func (l *pinningLister) Sessions(ep string) []Session {
	out := l.fakeLister.Sessions(ep)
	for i, s := range out {
		for _, p := range l.pinned {
			if s == Session(p.fakeSession) {
				out[i] = p
			}
		}
	}
	return out
}

// TestRunRebalances: Run makes a round every Interval; once the imbalance
// lasted Sustain, rounds move sessions without a new Sustain; Run's end
// stops the rounds.
func TestRunRebalances(t *testing.T) {
	clk := newFakeClock()
	busy := sessions(clk, 10)
	l := newLister(map[string][]*fakeSession{readyA.Address: busy, readyB.Address: sessions(clk, 1)})
	l.endOnMigrate()
	c := &Controller{Timeout: time.Second, Window: 10 * time.Millisecond, Clock: clk, Lister: l,
		Rebalance: Rebalance{Factor: 1.5, Sustain: 2 * time.Second, MaxPerRound: 2, PerMinute: 60, Interval: time.Second}}
	c.Update(snap(t, readyA, readyB, readyC))
	stop := start(t, c)
	// Noted at the first round, 1s in; lasted Sustain at 3s, when 2 move
	// (MaxPerRound); 2 more at 4s.
	for _, step := range []struct {
		to   time.Duration // since the epoch
		want int
	}{
		{2*time.Second + 999*time.Millisecond, 0},
		{3*time.Second + 20*time.Millisecond, 2},
		{3*time.Second + 999*time.Millisecond, 2},
		{4*time.Second + 20*time.Millisecond, 4},
	} {
		clk.AdvanceTo(epoch.Add(step.to))
		if n := asked(busy); n != step.want {
			t.Fatalf("%d moved by %v, want %d", n, step.to, step.want)
		}
	}
	stop()
	if n := clk.Pending(); n != 0 {
		t.Errorf("%d timers armed after Run, want none", n)
	}
}

func TestRebalanceOff(t *testing.T) {
	clk := newFakeClock()
	c := &Controller{Timeout: time.Second, Clock: clk, Lister: newLister(nil)}
	start(t, c)
	if n := clk.Pending(); n != 0 {
		t.Errorf("%d timers armed with rebalancing off, want none", n)
	}
}

// sim is a Lister whose sessions reconnect through a real picker: a session
// asked to move leaves its endpoint (Release) and, after a delay on the
// fake clock, its client comes back as a new session wherever the picker
// sends it (Pick, Acquire).
type sim struct {
	clk   *fakeClock
	rnd   *rand.Rand
	fresh string // the endpoint the scale-up added
	// stable: each client keeps its key (a hash of client-ip), so a hash
	// policy sends it back where its key lives; otherwise a new key each
	// connection (client-ip-port).
	stable bool

	mu         sync.Mutex
	picker     balancer.Picker
	eps        map[string][]*simSession
	on         map[*simSession]*balancer.Target
	moves      map[int][]time.Time // by client
	reconnects map[int64]int       // by second since the epoch
	toFresh    int
}

type simSession struct {
	sim *sim
	id  int
	key uint64
}

func (s *simSession) Migrate(time.Time) { s.sim.migrate(s) }

// Misplaced is upstream.Lease's: whether a new session of its client
// would go elsewhere now; with a new key per connection, always.
func (s *simSession) Misplaced() bool {
	m := s.sim
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.stable {
		return true
	}
	t, on := m.picker.Pick(s.key, nil), m.on[s]
	return t == nil || on == nil || t.Endpoint.Address != on.Endpoint.Address
}

func (m *sim) connect(s *simSession, again bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s.key = m.rnd.Uint64() // a new client port each time
	if m.stable {
		s.key = balancer.HashString(fmt.Sprint("client-", s.id))
	}
	t := m.picker.Pick(s.key, nil)
	t.Acquire()
	m.on[s] = t
	m.eps[t.Endpoint.Address] = append(m.eps[t.Endpoint.Address], s)
	if again {
		m.reconnects[int64(m.clk.Now().Sub(epoch)/time.Second)]++
		if t.Endpoint.Address == m.fresh {
			m.toFresh++
		}
	}
}

func (m *sim) migrate(s *simSession) {
	m.mu.Lock()
	t := m.on[s]
	if t == nil {
		m.mu.Unlock()
		return // already away
	}
	delete(m.on, s)
	t.Release()
	ep := t.Endpoint.Address
	m.eps[ep] = slices.DeleteFunc(m.eps[ep], func(x *simSession) bool { return x == s })
	if len(m.eps[ep]) == 0 {
		delete(m.eps, ep)
	}
	m.moves[s.id] = append(m.moves[s.id], m.clk.Now())
	delay := 50*time.Millisecond + time.Duration(m.rnd.Int64N(int64(450*time.Millisecond))) // close handshake and redial
	m.mu.Unlock()
	// The client reconnects: a new session, the same client.
	next := &simSession{sim: m, id: s.id}
	m.clk.AfterFunc(delay, func() { m.connect(next, true) })
}

func (m *sim) Endpoints() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.eps)) // endpoints left empty are deleted
}

func (m *sim) Sessions(ep string) []Session {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Collect(func(yield func(Session) bool) {
		for _, s := range m.eps[ep] {
			if !yield(s) {
				return
			}
		}
	})
}

func (m *sim) Wait(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }

// spread returns the busiest over the mean of eps and the loads.
func (m *sim) spread(eps []string) (float64, []int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	total, busiest := 0, 0
	var loads []int
	for _, ep := range eps {
		n := len(m.eps[ep])
		loads = append(loads, n)
		total += n
		busiest = max(busiest, n)
	}
	return float64(busiest) * float64(len(eps)) / float64(total), loads
}

// TestRebalanceFollowsScaleUp: 300 long-lived sessions on 3 endpoints, a
// 4th added; with the defaults (Factor as the config's for
// least-connections), reconnects through a real picker bring the spread
// to at most 1.1 within 60s, with at most twice the budget's rate of
// reconnects in any second.
func TestRebalanceFollowsScaleUp(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy balancer.Policy
		stable bool          // keys per client (client-ip) rather than per connection
		within time.Duration // when the spread must be at most 1.1; 0: as the hash spreads keys
	}{
		{"least-connections", balancer.Policy{Kind: balancer.LeastConnections}, false, 60 * time.Second},
		{"maglev-bounded", balancer.Policy{Kind: balancer.Maglev, BoundedLoad: 1.25}, false, 120 * time.Second},
		{"maglev-bounded-client-ip", balancer.Policy{Kind: balancer.Maglev, BoundedLoad: 1.25}, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock()
			m := &sim{clk: clk, rnd: rand.New(rand.NewPCG(1, 2)), fresh: readyD.Address, stable: tc.stable,
				eps: map[string][]*simSession{}, on: map[*simSession]*balancer.Target{},
				moves: map[int][]time.Time{}, reconnects: map[int64]int{}}
			loads := balancer.NewLoads()
			build := func(s *discovery.Snapshot) {
				p, err := balancer.Build(s, tc.policy, loads)
				if err != nil {
					t.Fatal(err)
				}
				m.mu.Lock()
				m.picker = p
				m.mu.Unlock()
			}
			before := snap(t, readyA, readyB, readyC)
			build(before)
			var all []*simSession
			for i := range 300 {
				s := &simSession{sim: m, id: i}
				all = append(all, s)
				m.connect(s, false)
			}
			r := Rebalance{Factor: 1.25}
			c := &Controller{Timeout: 25 * time.Second, Clock: clk, Lister: m, Rebalance: r}
			c.Update(before)
			start(t, c)
			after := snap(t, readyA, readyB, readyC, readyD)
			build(after)
			c.Update(after)
			eps := []string{readyA.Address, readyB.Address, readyC.Address, readyD.Address}
			s0, l0 := m.spread(eps)
			var row []string
			var reached time.Duration
			for at := 100 * time.Millisecond; at <= 120*time.Second; at += 100 * time.Millisecond {
				clk.AdvanceTo(epoch.Add(at))
				sp, l := m.spread(eps)
				if reached == 0 && sp <= 1.1 {
					reached = at
				}
				if at%(10*time.Second) == 0 && slices.Contains([]time.Duration{10, 30, 60, 120}, at/time.Second) {
					row = append(row, fmt.Sprintf("+%v %.2f %v", at, sp, l))
				}
			}
			rate := r.withDefaults().PerMinute * 300 / 60
			peak := 0
			for _, n := range m.reconnects {
				peak = max(peak, n)
			}
			moved, twice := 0, 0
			cooldown := r.withDefaults().Cooldown
			for _, s := range all {
				ts := m.moves[s.id]
				moved += len(ts)
				for i := 1; i < len(ts); i++ {
					if ts[i].Sub(ts[i-1]) < cooldown {
						twice++
					}
				}
			}
			t.Logf("%s: start %.2f %v; %s; moved %d, %d to the new endpoint; reconnect peak %d/s (budget %.1f/s); spread <= 1.1 at +%v (0: never)",
				tc.name, s0, l0, strings.Join(row, "; "), moved, m.toFresh, peak, rate, reached)
			if tc.within > 0 && (reached == 0 || reached > tc.within) {
				t.Errorf("spread at most 1.1 at +%v, want within %v", reached, tc.within)
			}
			if sp, l := m.spread(eps); tc.within > 0 && sp > 1.1 {
				t.Errorf("spread %.2f %v at the end, want at most 1.1", sp, l)
			}
			if tc.policy.Kind == balancer.LeastConnections && m.toFresh < moved*9/10 {
				t.Errorf("moved %d, %d to the new endpoint: least-connections takes the least loaded of few endpoints, want nearly every move there", moved, m.toFresh)
			}
			if tc.stable {
				// The keys' own spread over the four: what the hash gives.
				home := map[string]int{}
				for _, s := range all {
					home[m.picker.Pick(s.key, nil).Endpoint.Address]++
				}
				many := 0
				for _, s := range all {
					if len(m.moves[s.id]) > 1 {
						many++
					}
				}
				t.Logf("%s: keys' homes %v; %d clients moved more than once", tc.name, home, many)
				if many > 0 {
					t.Errorf("%d clients moved more than once, want none: a client whose key brings it back is not moved", many)
				}
				if moved == 0 || m.toFresh < moved*9/10 {
					t.Errorf("moved %d, %d to the new endpoint: want the moves to go there", moved, m.toFresh)
				}
			}
			if float64(peak) > 2*rate {
				t.Errorf("reconnect peak %d a second, want at most twice the budget's %.1f", peak, rate)
			}
			if twice > 0 {
				t.Logf("%d clients moved twice within the cool-down (as new sessions)", twice)
			}
		})
	}
}

// TestRebalanceCooldown: a session moved is not moved again within the
// cool-down, even when it is listed again (the same identity) on the
// busiest endpoint; after the cool-down it may be.
func TestRebalanceCooldown(t *testing.T) {
	clk, busy, l, c := scaledUp(t)
	start(t, c)
	r := Rebalance{Factor: 1.5, Sustain: time.Nanosecond, MaxPerRound: 1, Cooldown: time.Minute}
	c.RebalanceOnce(r, clk.Now())
	clk.Advance(time.Second)
	if n := c.RebalanceOnce(r, clk.Now()); n != 1 {
		t.Fatalf("moved %d, want 1", n)
	}
	clk.Advance(10 * time.Millisecond)
	first := busy[0]
	if n, _, _ := first.migrated(); n != 1 {
		t.Fatalf("the first session was asked %d times, want once", n)
	}
	// It leaves, and comes back as the same identity on A.
	l.end(first)
	c.RebalanceOnce(r, clk.Now())
	l.mu.Lock()
	l.eps[readyA.Address] = append([]*fakeSession{first}, l.eps[readyA.Address]...)
	l.mu.Unlock()
	for range 5 {
		clk.Advance(time.Second)
		c.RebalanceOnce(r, clk.Now())
	}
	clk.Advance(10 * time.Millisecond)
	if n, _, _ := first.migrated(); n != 1 {
		t.Fatalf("asked to move %d times within the cool-down, want once", n)
	}
	clk.Advance(time.Minute)
	c.RebalanceOnce(r, clk.Now())
	clk.Advance(10 * time.Millisecond)
	if n, _, _ := first.migrated(); n != 2 {
		t.Fatalf("asked to move %d times after the cool-down, want twice", n)
	}
}

// TestSetRebalance: SetRebalance starts the rounds of a controller that had
// none, and Factor 0 stops them.
func TestSetRebalance(t *testing.T) {
	clk, busy, _, c := scaledUp(t)
	start(t, c)
	if n := clk.Pending(); n != 0 {
		t.Fatalf("%d timers armed with rebalancing off", n)
	}
	c.SetRebalance(Rebalance{Factor: 1.5, Sustain: time.Nanosecond, MaxPerRound: 1})
	c.SetRebalance(Rebalance{Factor: 1.5, Sustain: time.Nanosecond, MaxPerRound: 1}) // still one chain
	clk.Advance(2*time.Second + 20*time.Millisecond)                                 // noted at 1s, one moved at 2s
	if moved := asked(busy); moved != 1 {
		t.Fatalf("%d moved by 2s, want 1 (one chain of rounds, one a round)", moved)
	}
	c.SetRebalance(Rebalance{})
	if n := clk.Pending(); n != 0 {
		t.Errorf("%d timers armed once rebalancing is off again", n)
	}
}

// scaledUp returns a controller, not yet run, of A with 10 sessions and B
// with 1 after C was added empty.
func scaledUp(t *testing.T) (*fakeClock, []*fakeSession, *fakeLister, *Controller) {
	t.Helper()
	clk := newFakeClock()
	busy := sessions(clk, 10)
	l := newLister(map[string][]*fakeSession{readyA.Address: busy, readyB.Address: sessions(clk, 1)})
	c := &Controller{Timeout: time.Second, Window: 10 * time.Millisecond, Clock: clk, Lister: l}
	c.Update(snap(t, readyA, readyB, readyC))
	return clk, busy, l, c
}

// asked returns how many of ss were asked to move at least once.
func asked(ss []*fakeSession) int {
	n := 0
	for _, s := range ss {
		if m, _, _ := s.migrated(); m > 0 {
			n++
		}
	}
	return n
}

// TestRebalanceDuringRollout: while an endpoint of the old revision is
// leaving, rebalancing moves sessions only off the other old endpoints
// (they will move once anyway), never off the new ones, however busy.
func TestRebalanceDuringRollout(t *testing.T) {
	clk := newFakeClock()
	rev := func(e discovery.Endpoint, r string) discovery.Endpoint { e.Revision = r; return e }
	old, fresh := sessions(clk, 10), sessions(clk, 12)
	l := newLister(map[string][]*fakeSession{readyA.Address: old, readyB.Address: fresh})
	c := &Controller{Timeout: time.Second, Window: 10 * time.Millisecond, Clock: clk, Lister: l}
	c.Update(snap(t, rev(readyA, "r1"), rev(readyB, "r2"), rev(readyC, "r2"), rev(termD, "r1")))
	start(t, c)
	r := Rebalance{Factor: 1.25, Sustain: time.Nanosecond, MaxPerRound: 2}
	for range 6 {
		c.RebalanceOnce(r, clk.Now())
		clk.Advance(time.Second)
	}
	if n := asked(fresh); n != 0 {
		t.Errorf("%d sessions moved off the new, busiest endpoint during the rollout, want 0", n)
	}
	if n := asked(old); n == 0 {
		t.Error("no session moved off the old endpoint, want some")
	}
	// Once the rollout is over (the old revision gone), the new endpoint's
	// excess may move again.
	l.mu.Lock()
	delete(l.eps, readyA.Address)
	l.mu.Unlock()
	c.Update(snap(t, rev(readyB, "r2"), rev(readyC, "r2")))
	for range 4 {
		c.RebalanceOnce(r, clk.Now())
		clk.Advance(time.Second)
	}
	if n := asked(fresh); n == 0 {
		t.Error("after the rollout no session moved off the busiest endpoint, want some")
	}
}
