package drain

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/discovery"
)

var readyC = discovery.Endpoint{Address: "192.0.2.3:80", Ready: true, Serving: true}

func TestRebalanceMovesExcessAfterSustain(t *testing.T) {
	busy := sessions(10)
	lister := fakeLister{readyA.Address: busy, readyB.Address: sessions(1)}
	var mu sync.Mutex
	var reasons []string
	c := &Controller{Timeout: time.Second, Window: 10 * time.Millisecond, Lister: lister,
		OnMigrate: func(_ string, _ Session, reason string) {
			mu.Lock()
			reasons = append(reasons, reason)
			mu.Unlock()
		}}
	c.Update(snap(t, readyA, readyB, readyC)) // a scale-up: C is new and empty
	r := Rebalance{Factor: 1.5, Sustain: 10 * time.Second, MaxPerRound: 4}
	var since time.Time
	now := time.Now()
	if n := c.RebalanceOnce(r, now, &since); n != 0 || since != now {
		t.Fatalf("first check moved %d (since %v), want 0 and the imbalance noted", n, since)
	}
	if n := c.RebalanceOnce(r, now.Add(5*time.Second), &since); n != 0 {
		t.Fatalf("moved %d before the imbalance lasted Sustain", n)
	}
	// mean 11/3 = 3.67, limit max(1.5*3.67, 5.67) = 5.67 < 10: move the
	// excess over ceil(mean) = 4, that is 6, capped at 4 a round.
	if n := c.RebalanceOnce(r, now.Add(10*time.Second), &since); n != 4 {
		t.Fatalf("moved %d, want MaxPerRound = 4", n)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		moved := 0
		for _, s := range busy {
			if n, _, _ := s.migrated(); n > 0 {
				moved++
			}
		}
		if moved == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions asked to move, want 4", moved)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, s := range lister[readyB.Address] {
		if n, _, _ := s.migrated(); n != 0 {
			t.Error("a session of a lightly loaded endpoint was moved")
		}
	}
	// Sessions already asked to move are not asked again.
	if n := c.RebalanceOnce(r, now.Add(30*time.Second), &since); n != 4 {
		t.Fatalf("second round moved %d, want 4 others", n)
	}
	time.Sleep(50 * time.Millisecond)
	for i, s := range busy {
		if n, _, _ := s.migrated(); n > 1 {
			t.Errorf("session %d asked to move %d times", i, n)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, r := range reasons {
		if r != ReasonRebalance {
			t.Errorf("reason %q, want %q", r, ReasonRebalance)
		}
	}
}

func TestRebalanceLeavesBalancedAndSmallAlone(t *testing.T) {
	c := &Controller{Timeout: time.Second, Lister: fakeLister{
		readyA.Address: sessions(5), readyB.Address: sessions(4), readyC.Address: sessions(3)}}
	c.Update(snap(t, readyA, readyB, readyC))
	r := Rebalance{Factor: 1.2, Sustain: time.Nanosecond}
	var since time.Time
	now := time.Now()
	for i := range 3 {
		if n := c.RebalanceOnce(r, now.Add(time.Duration(i)*time.Second), &since); n != 0 {
			t.Fatalf("moved %d sessions of a spread within mean+2", n)
		}
	}
	// One endpoint: nowhere to move to.
	c2 := &Controller{Timeout: time.Second, Lister: fakeLister{readyA.Address: sessions(50)}}
	c2.Update(snap(t, readyA))
	if n := c2.RebalanceOnce(r, now, &since); n != 0 {
		t.Fatalf("moved %d sessions with a single endpoint", n)
	}
}

func TestRunRebalanceOffAndStops(t *testing.T) {
	c := &Controller{Timeout: time.Second, Lister: fakeLister{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.RunRebalance(ctx, Rebalance{Factor: 2, Interval: time.Millisecond}); close(done) }()
	time.Sleep(10 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("RunRebalance did not return after cancel")
	}
	c.RunRebalance(context.Background(), Rebalance{}) // Factor 0: returns at once
}
