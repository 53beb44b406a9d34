package rollout_test

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/drain"
	"github.com/longhaul-proxy/longhaul/internal/testnet"
)

// envScaleUpFull makes TestScaleUpRebalances run to +120s after the
// scale-up (the full table) instead of +60s.
const envScaleUpFull = "LONGHAUL_SCALEUP_FULL"

// Figures of the scale-up: 300 WebSocket sessions on three pods, a fourth
// added, rebalancing with its default budget (perMinute 1: 5 a second).
const (
	scaleUpSessions = 300
	scaleUpBudget   = 1.0 * scaleUpSessions / 60 // sessions moved a second
	scaleUpTarget   = drain.DefaultRebalanceTarget
)

// scaleUpSource gives each WebSocket client a loopback address of its own
// (127.0.1.1 on), so that a client-ip key tells the clients apart as it
// would tell real clients apart.
func scaleUpSource(id int) *net.TCPAddr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, byte(1+id/250), byte(1+id%250))}
}

// TestScaleUpRebalances: one longhaul with an http listener, 300 long-lived
// WebSocket sessions carrying sequence numbers on three pods, then a fourth
// pod. Rebalancing moves sessions off the busiest pods (close 1012, the
// client reconnects through longhaul's picker). Sessions are counted per pod
// as the pods see them.
//
// least-connections (rebalancing on by default): the spread (busiest over
// mean) is at most 1.1 by +60s. Maglev on client-ip with bounded loads 1.25
// and drain.rebalance.factor 1.25: a client comes back through its key, so
// rebalancing moves only sessions whose key leads to another pod; the
// spread it can reach is the keys' own (computed from an unloaded picker
// over the four pods), and by +60s the busiest pod holds no more than the
// larger of that and the target's load, and no pod is above its
// bounded-load cap. Both: sessions on the new pod, no failed reconnect, no
// message lost or duplicated, at most twice the budget's rate of reconnects
// in any second and no more moves than the budget.
func TestScaleUpRebalances(t *testing.T) {
	until := 60 * time.Second
	if os.Getenv(envScaleUpFull) != "" {
		until = 120 * time.Second
	}
	for _, tc := range []struct {
		name, balance, drainYAML string
		maglev                   bool
	}{
		{name: "least-connections", balance: "{policy: least-connections}", drainYAML: "{}"},
		{name: "maglev-bounded", balance: "{policy: maglev, key: client-ip, boundedLoad: 1.25}",
			drainYAML: "{rebalance: {factor: 1.25}}", maglev: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := scaleUp(t, tc.balance, tc.drainYAML, until)
			t.Logf("%s: %s", tc.name, r)
			r.check(t, tc.maglev)
		})
	}
}

// scaleUpRun is what one scale-up measured.
type scaleUpRun struct {
	until                 time.Duration
	start                 spreadAt      // just before the fourth pod joined
	marks                 []spreadAt    // at +10s, +30s, +60s (and +120s)
	reached               time.Duration // when the spread was first at most the target
	moved, toNew          int64
	movedAgain, mostMoves int // clients moved more than once; the most moves of one client
	peak                  int // reconnects in one wall-clock second, at most
	dialFail, unclean     int64
	lost, dup             int64
	sessions, maxLoadCap  int   // at the end: sessions on the pods, the bounded-load cap (maglev)
	homes                 []int // maglev: the clients' keys by the pod their slot names, over four pods
}

type spreadAt struct {
	at     time.Duration
	spread float64
	loads  []int
}

func (s spreadAt) String() string { return fmt.Sprintf("+%v %.2f %v", s.at, s.spread, s.loads) }

func (r scaleUpRun) String() string {
	var marks []string
	for _, m := range r.marks {
		marks = append(marks, m.String())
	}
	reached := "not reached"
	if r.reached > 0 {
		reached = "at +" + r.reached.String()
	}
	homes := ""
	if r.homes != nil {
		homes = fmt.Sprintf("; the keys' own slots %v (spread %.2f)", r.homes, spreadOf(r.homes))
	}
	return fmt.Sprintf("start %.2f %v; %s; spread <= %v %s; moved %d, %d to the new pod (%d clients moved more than once, at most %d times); reconnect peak %d/s (budget %.0f/s); "+
		"%d failed reconnects, %d other closes, %d lost, %d duplicated%s",
		r.start.spread, r.start.loads, strings.Join(marks, "; "), scaleUpTarget, reached, r.moved, r.toNew, r.movedAgain, r.mostMoves, r.peak, scaleUpBudget,
		r.dialFail, r.unclean, r.lost, r.dup, homes)
}

// keyHomes returns, for a Maglev listener, how many of the clients' keys
// each pod's slots hold in the table over pods (a picker with no load, so
// that no cap applies): where the sessions go when each reconnects, and
// so the spread rebalancing can reach. nil for another policy.
func keyHomes(t *testing.T, in *instance, yaml string, pods []*pod) []int {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.Listeners[0].Balance
	pol := b.BalancerPolicy()
	if pol.Kind != balancer.Maglev {
		return nil
	}
	p, err := balancer.Build(in.a.Upstream("web").Snapshot(), pol, balancer.NewLoads())
	if err != nil {
		t.Fatalf("maglev table: %v", err)
	}
	homes := make([]int, len(pods))
	for id := range scaleUpSessions {
		h, err := b.KeySpec().HashValue(scaleUpSource(id).IP.String())
		if err != nil {
			t.Fatal(err)
		}
		addr := p.Pick(h, nil).Endpoint.Address
		homes[slices.IndexFunc(pods, func(p *pod) bool { return podAddr(p, "web") == addr })]++
	}
	return homes
}

// spreadOf is the largest of loads over their mean.
func spreadOf(loads []int) float64 {
	return float64(slicesMax(loads)) * float64(len(loads)) / float64(max(sum(loads), 1))
}

// podLoads returns the WebSocket sessions each pod serves and the busiest
// over their mean.
func podLoads(pods []*pod) (float64, []int) {
	loads := make([]int, len(pods))
	total, busiest := 0, 0
	for i, p := range pods {
		loads[i] = int(p.wsLive.Load())
		total += loads[i]
		busiest = max(busiest, loads[i])
	}
	if total == 0 {
		return 0, loads
	}
	return float64(busiest) * float64(len(pods)) / float64(total), loads
}

// scaleUp runs one scale-up to until after the fourth pod joined.
func scaleUp(t *testing.T, balance, drainYAML string, until time.Duration) scaleUpRun {
	var pods []*pod
	for i := range 3 {
		pods = append(pods, startPod(t, fmt.Sprintf("pod-%d", i)))
	}
	src := newEndpointsFiles(t, "web")
	src.write(pods, nil)
	yaml := fmt.Sprintf(`
admin: {address: %q}
log: {level: warn}
listeners:
  - name: web
    address: %q
    protocol: http
    endpoints: {file: %q}
    balance: %s
    drain: %s
`, testnet.FreeAddr(t), testnet.FreeAddr(t), src.path("web"), balance, drainYAML)
	in := startApp(t, yaml, src.options())

	st := &stats{wsMovesOf: make([]atomic.Int32, scaleUpSessions)}
	spec := loadSpec{ws: scaleUpSessions, wsInterval: time.Second, wsSource: scaleUpSource, limit: until + time.Minute}
	stopLoad := runLoad(context.Background(), t, &fixed{in: in}, spec, st)
	t.Cleanup(stopLoad)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, loads := podLoads(pods); st.wsUp.Load() == scaleUpSessions && sum(loads) == scaleUpSessions {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d WebSocket clients connected: %s", st.wsUp.Load(), scaleUpSessions, st.Errors())
		}
	}

	np := startPod(t, "pod-3")
	r := scaleUpRun{until: until}
	r.start.spread, r.start.loads = podLoads(pods)
	pods = append(pods, np)
	src.write(pods, nil)
	waitSnapshotsOf(t, in, []string{"web"}, 5*time.Second, np.name+" added", func(l string, v snapshotView) bool {
		found, ready, _ := v.state(podAddr(np, l))
		return found && ready
	})
	added := time.Now()
	r.homes = keyHomes(t, in, yaml, pods)

	marks := []time.Duration{10 * time.Second, 30 * time.Second, 60 * time.Second, 120 * time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for len(marks) > 0 && marks[0] <= until {
		<-tick.C
		at := time.Since(added)
		sp, loads := podLoads(pods)
		if r.reached == 0 && sp <= scaleUpTarget {
			r.reached = at.Round(100 * time.Millisecond)
		}
		if at >= marks[0] {
			r.marks = append(r.marks, spreadAt{marks[0], sp, loads})
			marks = marks[1:]
		}
	}
	_, loads := podLoads(pods)
	r.sessions = sum(loads)
	// The bounded-load cap with the default loadFloor (16), for the pods'
	// sessions: ceil(1.25 × total / 4) + 16.
	r.maxLoadCap = (125*r.sessions+399)/400 + 16
	r.moved, r.toNew = st.wsMoved.Load(), int64(np.http.count())
	r.peak = st.ReconnectPeak(time.Second)
	for i := range st.wsMovesOf {
		n := int(st.wsMovesOf[i].Load())
		r.mostMoves = max(r.mostMoves, n)
		if n > 1 {
			r.movedAgain++
		}
	}
	stopLoad()
	r.dialFail, r.unclean, r.lost, r.dup = st.wsDialFail.Load(), st.wsUnclean.Load(), st.wsLost.Load(), st.wsDup.Load()
	if e := st.Errors(); e != "" {
		t.Logf("first errors by kind:%s", e)
	}
	return r
}

// check asserts what the scale-up must show.
func (r scaleUpRun) check(t *testing.T, maglev bool) {
	t.Helper()
	for _, z := range []struct {
		what string
		n    int64
	}{
		{"failed WebSocket reconnects", r.dialFail},
		{"WebSocket connections closed other than by 1012/1001", r.unclean},
		{"lost WebSocket messages", r.lost},
		{"duplicated WebSocket messages", r.dup},
	} {
		if z.n != 0 {
			t.Errorf("%d %s, want 0", z.n, z.what)
		}
	}
	if float64(r.peak) > 2*scaleUpBudget {
		t.Errorf("reconnect peak %d a second, want at most twice the budget's %.0f", r.peak, scaleUpBudget)
	}
	if r.toNew == 0 {
		t.Errorf("no session moved to the new pod (%d moved)", r.moved)
	}
	// The budget is a token bucket from when rebalancing turned active
	// (Sustain after the first round that saw the imbalance), holding one
	// round's worth.
	if most := scaleUpBudget * ((r.until - drain.DefaultRebalanceSustain).Seconds() + 1); float64(r.moved) > most {
		t.Errorf("%d sessions moved by +%v, more than the budget's %.0f", r.moved, r.until, most)
	}
	end := r.marks[len(r.marks)-1]
	if !maglev {
		if end.spread > scaleUpTarget {
			t.Errorf("spread %.2f %v at +%v, want at most %v", end.spread, end.loads, end.at, scaleUpTarget)
		}
		return
	}
	// Rebalancing moves only sessions whose key leads elsewhere, until the
	// busiest is at the target: it ends with the busiest at the larger of
	// the target's load and the most keys one pod's slots hold (their
	// sessions stay), one more for a session counted twice as it moves.
	mean := float64(sum(end.loads)) / float64(len(end.loads))
	reach := max(slicesMax(r.homes), int(math.Floor(scaleUpTarget*mean)), int(math.Ceil(mean))) + 1
	if busiest := slicesMax(end.loads); busiest > reach {
		t.Errorf("the busiest pod has %d sessions at +%v %v, want at most %d (its keys' own slots %v, the target %v × mean %.1f)",
			busiest, end.at, end.loads, reach, r.homes, scaleUpTarget, mean)
	}
	if busiest := slicesMax(end.loads); busiest > r.maxLoadCap {
		t.Errorf("a pod carries %d sessions at +%v, above the bounded-load cap %d", busiest, end.at, r.maxLoadCap)
	}
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

func slicesMax(xs []int) int {
	m := 0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}
