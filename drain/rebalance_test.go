package drain

import (
	"testing"
	"time"
)

func TestRebalanceMovesExcessAfterSustain(t *testing.T) {
	clk := newFakeClock()
	busy, light := sessions(clk, 10), sessions(clk, 1)
	rec := &recorder{}
	c := &Controller{Timeout: time.Second, Window: 10 * time.Millisecond, Clock: clk, OnMigrate: rec.on,
		Lister: newLister(map[string][]*fakeSession{readyA.Address: busy, readyB.Address: light})}
	start(t, c)
	c.Update(snap(t, readyA, readyB, readyC)) // a scale-up: C is new and empty
	r := Rebalance{Factor: 1.5, Sustain: 10 * time.Second, MaxPerRound: 4}
	var since time.Time
	if n := c.RebalanceOnce(r, clk.Now(), &since); n != 0 || !since.Equal(epoch) {
		t.Fatalf("first check moved %d (since %v), want 0 and the imbalance noted", n, since)
	}
	clk.Advance(5 * time.Second)
	if n := c.RebalanceOnce(r, clk.Now(), &since); n != 0 {
		t.Fatalf("moved %d before the imbalance lasted Sustain", n)
	}
	clk.Advance(5 * time.Second)
	round := clk.Now()
	// mean 11/3 = 3.67, limit max(1.5*3.67, 5.67) = 5.67 < 10: move the
	// excess over ceil(mean) = 4, that is 6, capped at 4 a round.
	if n := c.RebalanceOnce(r, round, &since); n != 4 {
		t.Fatalf("moved %d, want MaxPerRound = 4", n)
	}
	clk.Advance(10 * time.Millisecond)
	var moved []*fakeSession
	for _, s := range busy {
		if n, at, dl := s.migrated(); n > 0 {
			moved = append(moved, s)
			if at.Sub(round) > 10*time.Millisecond || !dl.Equal(round.Add(time.Second)) {
				t.Errorf("moved at +%v with deadline +%v, want within the 10ms window and the 1s timeout", at.Sub(round), dl.Sub(round))
			}
			if reason, ep := rec.reason(s); reason != ReasonRebalance || ep != readyA.Address {
				t.Errorf("OnMigrate(%q, %q), want (%q, %q)", ep, reason, readyA.Address, ReasonRebalance)
			}
		}
	}
	if len(moved) != 4 {
		t.Fatalf("%d sessions asked to move, want 4", len(moved))
	}
	if n, _, _ := light[0].migrated(); n != 0 {
		t.Error("a session of a lightly loaded endpoint was moved")
	}
	// Sessions already asked to move are not asked again.
	clk.Advance(20 * time.Second)
	if n := c.RebalanceOnce(r, clk.Now(), &since); n != 4 {
		t.Fatalf("second round moved %d, want 4 others", n)
	}
	clk.Advance(10 * time.Millisecond)
	for i, s := range busy {
		if n, _, _ := s.migrated(); n > 1 {
			t.Errorf("session %d asked to move %d times", i, n)
		}
	}
}

func TestRebalanceLeavesBalancedAndSmallAlone(t *testing.T) {
	clk := newFakeClock()
	c := &Controller{Timeout: time.Second, Clock: clk, Lister: newLister(map[string][]*fakeSession{
		readyA.Address: sessions(clk, 5), readyB.Address: sessions(clk, 4), readyC.Address: sessions(clk, 3)})}
	c.Update(snap(t, readyA, readyB, readyC))
	r := Rebalance{Factor: 1.2, Sustain: time.Nanosecond}
	var since time.Time
	for i := range 3 {
		if n := c.RebalanceOnce(r, epoch.Add(time.Duration(i)*time.Second), &since); n != 0 {
			t.Fatalf("moved %d sessions of a spread within mean+2", n)
		}
	}
	// One endpoint: nowhere to move to.
	c2 := &Controller{Timeout: time.Second, Clock: clk, Lister: newLister(map[string][]*fakeSession{readyA.Address: sessions(clk, 50)})}
	c2.Update(snap(t, readyA))
	if n := c2.RebalanceOnce(r, epoch, &since); n != 0 {
		t.Fatalf("moved %d sessions with a single endpoint", n)
	}
}

// TestRunRebalances: Run checks every Interval; a round needs the imbalance
// to last Sustain, and the next round a new Sustain; Run's end stops the
// checks.
func TestRunRebalances(t *testing.T) {
	clk := newFakeClock()
	busy := sessions(clk, 10)
	l := newLister(map[string][]*fakeSession{readyA.Address: busy, readyB.Address: sessions(clk, 1)})
	l.endOnMigrate()
	c := &Controller{Timeout: time.Second, Window: 10 * time.Millisecond, Clock: clk, Lister: l,
		Rebalance: Rebalance{Factor: 1.5, Sustain: 10 * time.Second, MaxPerRound: 4, Interval: time.Second}}
	c.Update(snap(t, readyA, readyB, readyC))
	stop := start(t, c)
	moved := func() int {
		n := 0
		for _, s := range busy {
			if m, _, _ := s.migrated(); m > 0 {
				n++
			}
		}
		return n
	}
	// The imbalance is noted at the first check, 1s in; it has lasted
	// Sustain at 11s, when 4 move. Then A=6, B=1, C=0: still over
	// max(1.5*7/3, 7/3+2); noted anew at 12s, the excess over ceil(7/3) = 3
	// moves at 22s.
	for _, step := range []struct {
		to   time.Duration // since the epoch
		want int
	}{
		{10*time.Second + 999*time.Millisecond, 0},
		{11*time.Second + 999*time.Millisecond, 4},
		{21*time.Second + 998*time.Millisecond, 4},
		{22*time.Second + 998*time.Millisecond, 7},
	} {
		clk.AdvanceTo(epoch.Add(step.to))
		if n := moved(); n != step.want {
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
