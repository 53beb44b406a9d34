package upstream

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/discovery"
)

// raceSession is a session that records whether it was asked to move.
type raceSession struct {
	info  SessionInfo
	asked atomic.Bool
}

func (s *raceSession) Info() SessionInfo    { return s.info }
func (s *raceSession) Migrate(time.Time)    { s.asked.Store(true) }
func (s *raceSession) Close()               {}
func (s *raceSession) leased(l *Lease) bool { return l.Attach(s) }

func leaseSnap(t testing.TB, aTerminating bool, addrs ...string) *discovery.Snapshot {
	t.Helper()
	eps := make([]discovery.Endpoint, len(addrs))
	for i, a := range addrs {
		eps[i] = discovery.Endpoint{Address: a, Ready: true, Serving: true}
	}
	if aTerminating {
		eps[0].Ready, eps[0].Terminating = false, true
	}
	s, err := discovery.NewSnapshot("t", eps)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestLeaseRacesDrain races session leases against the drain of the
// endpoint they pick, many times: every session that lands on the drained
// endpoint must be found and asked to move. The drain is what app and
// drain do with a snapshot: swap the picker in (Update), then list the
// endpoint's sessions in the registry and ask each to migrate.
func TestLeaseRacesDrain(t *testing.T) {
	const (
		a, b    = "192.0.2.1:80", "192.0.2.2:80"
		trials  = 2000
		leasers = 4
		perRun  = 24 // leases per leaser per trial
	)
	var missed, onDrained, total int
	for trial := range trials {
		reg := NewRegistry()
		up := NewUpstream("t", balancer.Policy{Kind: balancer.Maglev, TableSize: 251}, reg, nil)
		if err := up.Update(leaseSnap(t, false, a, b)); err != nil {
			t.Fatal(err)
		}
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			sessions []*raceSession
			leases   []*Lease
		)
		start := make(chan struct{})
		for g := range leasers {
			wg.Go(func() {
				<-start
				for i := range perRun {
					l, err := up.Lease(uint64(trial*7919+g*131+i)*0x9e3779b97f4a7c15, "", nil,
						&SessionInfo{Protocol: "tcp"})
					if err != nil {
						t.Error(err)
						return
					}
					runtime.Gosched() // the dial
					s := &raceSession{info: l.info}
					s.leased(l)
					mu.Lock()
					sessions, leases = append(sessions, s), append(leases, l)
					mu.Unlock()
				}
			})
		}
		close(start)
		for range trial % 5 {
			runtime.Gosched()
		}
		if err := up.Update(leaseSnap(t, true, a, b)); err != nil {
			t.Fatal(err)
		}
		for _, s := range reg.Endpoint(a) {
			s.Migrate(time.Now().Add(time.Second))
		}
		wg.Wait()
		for _, s := range sessions {
			total++
			if s.info.Endpoint == a {
				onDrained++
				if !s.asked.Load() {
					missed++
				}
			}
		}
		for _, l := range leases {
			l.Release()
		}
		if n := reg.Len(); n != 0 {
			t.Fatalf("trial %d: %d sessions registered after every lease was released", trial, n)
		}
	}
	t.Logf("%d trials, %d sessions, %d on the drained endpoint, %d of them missed by the drain", trials, total, onDrained, missed)
	if missed != 0 {
		t.Fatalf("%d sessions on the drained endpoint were never asked to move", missed)
	}
	if onDrained == 0 {
		t.Fatal("no session landed on the drained endpoint: the race was never run")
	}
}

// TestLeaseAskedWhileDialling: an endpoint asked to let go of its sessions
// while one is being connected is left before any byte: Try leases the
// next endpoint.
func TestLeaseAskedWhileDialling(t *testing.T) {
	const a, b = "192.0.2.1:80", "192.0.2.2:80"
	reg := NewRegistry()
	up := NewUpstream("t", balancer.Policy{Kind: balancer.Maglev, TableSize: 251}, reg, nil)
	if err := up.Update(leaseSnap(t, false, a, b)); err != nil {
		t.Fatal(err)
	}
	var addrs []string
	l, err := up.Try(Attempt{Key: 1, Prefer: a, Info: &SessionInfo{Protocol: "tcp"}}, func(ls *Lease) error {
		addrs = append(addrs, ls.Addr())
		if ls.Addr() == a {
			// Drain comes while the endpoint is dialled.
			if err := up.Update(leaseSnap(t, true, a, b)); err != nil {
				t.Fatal(err)
			}
			for _, s := range reg.Endpoint(a) {
				s.Migrate(time.Now().Add(time.Second))
			}
		}
		if ls.Asked() {
			return ErrLeaving
		}
		return nil
	}, RetryDial)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if len(addrs) != 2 || addrs[0] != a || addrs[1] != b || l.Addr() != b {
		t.Fatalf("attempts %v, leased %s: want %s then %s", addrs, l.Addr(), a, b)
	}
	if n := len(reg.Endpoint(a)); n != 0 {
		t.Fatalf("%d sessions left registered on the drained endpoint", n)
	}
}

// TestLeaveAsksNewSessions: once the upstream leaves (longhaul shuts down),
// a session leased is asked to move at once; a request is not.
func TestLeaveAsksNewSessions(t *testing.T) {
	reg := NewRegistry()
	up := NewUpstream("t", balancer.Policy{}, reg, nil)
	if err := up.Update(leaseSnap(t, false, "192.0.2.1:80")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	up.Leave(deadline)
	l, err := up.Lease(1, "", nil, &SessionInfo{Protocol: "tcp"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if in := l.Info(); !in.Migrating || !in.Deadline.Equal(deadline) {
		t.Fatalf("lease info %+v: want migrating by %v", in, deadline)
	}
	s := &raceSession{}
	if !s.leased(l) || !s.asked.Load() {
		t.Fatal("a session leased after Leave was not asked to move")
	}
	r, err := up.Lease(1, "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	if r.Asked() {
		t.Fatal("a request's lease was asked to move")
	}
}

// TestLeaseMisplaced: under Maglev a lease is misplaced once its key's
// pick is another endpoint (a fourth added that its key now belongs to),
// not while its key leads back to it; under least-connections always.
func TestLeaseMisplaced(t *testing.T) {
	three := []string{"192.0.2.1:80", "192.0.2.2:80", "192.0.2.3:80"}
	up := NewUpstream("t", balancer.Policy{Kind: balancer.Maglev}, nil, nil)
	if err := up.Update(leaseSnap(t, false, three...)); err != nil {
		t.Fatal(err)
	}
	var leases []*Lease
	for k := range uint64(400) {
		l, err := up.Lease(balancer.HashString(string(rune(k))), "", nil, &SessionInfo{})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Release()
		if l.Misplaced() {
			t.Fatalf("key %d misplaced on the endpoint its key picked", k)
		}
		leases = append(leases, l)
	}
	if err := up.Update(leaseSnap(t, false, append(three, "192.0.2.4:80")...)); err != nil {
		t.Fatal(err)
	}
	misplaced, toNew := 0, 0
	for _, l := range leases {
		if l.Misplaced() {
			misplaced++
			if up.Picker().Pick(l.key, nil).Endpoint.Address == "192.0.2.4:80" {
				toNew++
			}
		}
	}
	t.Logf("after a fourth endpoint: %d of %d leases misplaced, %d of them to the new one", misplaced, len(leases), toNew)
	if misplaced < 60 || misplaced > 140 || toNew < misplaced*9/10 {
		t.Errorf("%d of %d misplaced (%d to the new endpoint), want about a quarter, nearly all to the new one", misplaced, len(leases), toNew)
	}
	lc := NewUpstream("lc", balancer.Policy{Kind: balancer.LeastConnections}, nil, nil)
	if err := lc.Update(leaseSnap(t, false, three...)); err != nil {
		t.Fatal(err)
	}
	l, err := lc.Lease(1, "", nil, &SessionInfo{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if !l.Misplaced() {
		t.Error("least-connections: a lease is not misplaced, want any session movable")
	}
}
