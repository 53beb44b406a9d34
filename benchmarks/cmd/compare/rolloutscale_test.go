package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/config"
)

func TestParseFlagsRolloutScale(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.rolloutScaleWS != 10000 || o.rolloutScaleInterval != 5*time.Second || !slices.Contains(o.workloads, "rollout-scale") {
		t.Errorf("defaults: %d WebSockets every %v, workloads %v", o.rolloutScaleWS, o.rolloutScaleInterval, o.workloads)
	}
	if o, _ := parseFlags([]string{"-quick"}, io.Discard); o.rolloutScaleWS != 500 {
		t.Errorf("-quick: %d WebSockets, want 500", o.rolloutScaleWS)
	}
	o, err = parseFlags([]string{"-quick", "-rollout-scale-ws", "700", "-rollout-scale-interval", "2s", "-workloads", "rollout-scale"}, io.Discard)
	if err != nil || o.rolloutScaleWS != 700 || o.rolloutScaleInterval != 2*time.Second || len(o.workloads) != 1 {
		t.Errorf("explicit: %d every %v, %v, %v", o.rolloutScaleWS, o.rolloutScaleInterval, o.workloads, err)
	}
	for _, bad := range [][]string{{"-rollout-scale-ws", "0"}, {"-rollout-scale-interval", "0s"}, {"-rollout-scale-ws", "x"}} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) succeeded", bad)
		}
	}
}

func TestScaleSizing(t *testing.T) {
	if got := maxScaleWS(20000); got != 14232 {
		t.Errorf("maxScaleWS(20000) = %d", got)
	}
	if got := maxScaleWS(1024); got != 0 {
		t.Errorf("maxScaleWS(1024) = %d", got)
	}
	for _, c := range []struct {
		n, parts int
		want     []int
	}{{10000, 2, []int{5000, 5000}}, {7, 2, []int{4, 3}}, {5, 3, []int{2, 2, 1}}, {1, 2, []int{1, 0}}} {
		if got := splitEven(c.n, c.parts); !slices.Equal(got, c.want) {
			t.Errorf("splitEven(%d, %d) = %v, want %v", c.n, c.parts, got, c.want)
		}
	}
}

// TestLonghaulReplicasConfig: every replica has its own ports and reads
// the same endpoints files.
func TestLonghaulReplicasConfig(t *testing.T) {
	ctl, err := newLonghaulReplicas(2, "/bin/false", t.TempDir(), 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range ctl.reps {
		b, err := r.render(r.l)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Parse(b)
		if err != nil {
			t.Fatalf("config.Parse: %v\n%s", err, b)
		}
		for _, l := range cfg.Listeners {
			if seen[l.Address] {
				t.Errorf("address %s used twice", l.Address)
			}
			seen[l.Address] = true
			if want := map[string]string{"web": ctl.webFile, "grpc": ctl.grpcFile}[l.Name]; l.Endpoints.File != want {
				t.Errorf("%s listener %s reads %q, want %q", r.t.name, l.Name, l.Endpoints.File, want)
			}
		}
		if seen[cfg.Admin.Address] {
			t.Errorf("admin address %s used twice", cfg.Admin.Address)
		}
		seen[cfg.Admin.Address] = true
	}
	if got := ctl.webAddrs(); len(got) != 2 || got[0] == got[1] {
		t.Errorf("web addresses %v", got)
	}
}

func TestParseDrainSessions(t *testing.T) {
	text := `# HELP longhaul_drain_sessions Sessions of a leaving endpoint's drain
# TYPE longhaul_drain_sessions gauge
longhaul_drain_sessions{endpoint="127.0.0.100:1",listener="web",state="left"} 3
longhaul_drain_sessions{endpoint="127.0.0.100:1",listener="web",state="moved"} 1664
longhaul_drain_sessions{endpoint="127.0.0.101:2",listener="web",state="moved"} 10
longhaul_drain_sessions{endpoint="127.0.0.101:2",listener="web",state="forced"} 2
longhaul_drain_sessions{endpoint="127.0.0.100:9",listener="grpc",state="moved"} 7
longhaul_sessions_active{listener="web"} 5000
`
	all := parseDrainSessions(text, "web", "")
	if all["moved"] != 1674 || all["forced"] != 2 || all["left"] != 3 || all["closed"] != 0 {
		t.Errorf("web, every endpoint: %v", all)
	}
	one := parseDrainSessions(text, "web", "127.0.0.100:1")
	if one["left"] != 3 || one["moved"] != 1664 || one["forced"] != 0 {
		t.Errorf("web, one endpoint: %v", one)
	}
}

func TestScaleFiguresMetrics(t *testing.T) {
	st := new(rolloutStats)
	st.grpcOK.Add(10)
	st.streamUnav.Add(3)
	f := scaleFigures{
		clients: 4, connected: 4, ramp: 1500 * time.Millisecond, rollout: 14 * time.Second, st: st,
		children: []*scaleClientResult{
			{Opened: 5, Sent: 40, Echoed: 38, Lost: 2, Closes: [3]int64{1, 0, 0}, Reconnects: map[int64]int{100: 1}},
			{Opened: 6, Sent: 30, Echoed: 30, DialFail: 1, Closes: [3]int64{3, 1, 0}, Reconnects: map[int64]int{100: 2, 101: 1}},
		},
		rampCPU: []time.Duration{time.Second, 2 * time.Second}, rolloutCPU: []time.Duration{3 * time.Second, 5 * time.Second},
		rssBefore: 10 << 20, rssPeak: []int64{8 << 20, 6 << 20}, rssSumPeak: 14 << 20, upPeak: 4, upMin: -1,
		podKilled: 7, leftAtKill: 5, drained: map[string]float64{"moved": 20, "forced": 5},
	}
	m := f.metrics()
	for k, want := range map[string]float64{
		mSOpened: 11, mSSent: 70, mWSEchoed: 68, mWSLost: 2, mWSDialFail: 1, mWSGraceful: 4, mWSDropped: 1,
		mSReconn: 4, mReconnPeak: 3, // second 100: one in the first child, two in the second
		mGrpcOK: 10, mStreamUnav: 3, mSRamp: 1.5, mSRollout: 14,
		mSCPU: 8, replicaMetric(mSCPU, 0): 3, replicaMetric(mSCPU, 1): 5, mSRampCPU: 3,
		mSRSSPeak: 14, replicaMetric(mSRSSPeak, 0): 8, replicaMetric(mSRSSPeak, 1): 6, mSKiBPerWS: 1024,
		mSPodKilled: 7, mSLeftAtKill: 5, mSMoved: 20, mSForced: 5, mSClosed: 0,
	} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
	if !math.IsNaN(m[mSUpMin]) {
		t.Errorf("fewest connected, never sampled: %v, want NaN", m[mSUpMin])
	}
	for _, c := range rolloutScaleColumns() {
		if _, ok := m[c.metric]; !ok {
			t.Errorf("column %q has no metric %q", c.title, c.metric)
		}
	}
}

func TestRolloutScaleSection(t *testing.T) {
	var wl workload
	for _, w := range allWorkloads() {
		if w.name == "rollout-scale" {
			wl = w
		}
	}
	if wl.run == nil || !wl.runsOn(longhaul) || wl.runsOn(haproxy) || wl.runsOn(longhaulBase) {
		t.Fatalf("rollout-scale workload: %+v", wl)
	}
	r := newResults(1)
	r.add(wl.name, longhaul, 0, metrics{mWSLost: 582, mSClients: 10000, mSRSSPeak: 344.25})
	o, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	writeReport(&b, reportInfo{reps: 1}, r, []workload{wl}, []string{direct, longhaul, haproxy, nginx}, o)
	out := b.String()
	for _, want := range []string{
		"## Rolling replacement at scale, two longhaul replicas (`rollout-scale`)",
		"10000 WebSocket clients", "longhaul only",
		"| figure | longhaul |\n|---|---|\n| WebSocket clients | 10000 |\n",
		"| WS msgs lost (resent) | 582 |\n", "| proxy peak RSS MiB, summed | 344.2 |\n", "| proxy CPU s during the rollout, replica 2 | – |\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "| figure | longhaul | haproxy") {
		t.Errorf("a column for a target rollout-scale does not run on:\n%s", out)
	}
}

// TestMeasureWorkloadOnly: a workload with only runs on those targets.
func TestMeasureWorkloadOnly(t *testing.T) {
	var ran []string
	wl := workload{name: "w", proxiesOnly: true, only: []string{longhaul}, run: func(_ context.Context, _ *env, t *target) (metrics, error) {
		ran = append(ran, t.name)
		return metrics{}, nil
	}}
	var targets []*target
	for _, n := range []string{direct, longhaul, haproxy} {
		tg := &target{name: n}
		if n != direct {
			tg.Argv = []string{"/bin/false"} // never started: Alive reports nothing
		}
		targets = append(targets, tg)
	}
	measureWorkload(context.Background(), &env{opts: options{reps: 2, limit: time.Second}}, wl, targets, newResults(2))
	if !slices.Equal(ran, []string{longhaul, longhaul}) {
		t.Errorf("ran on %v, want longhaul twice", ran)
	}
}

// TestScaleChildRead: the parent's side of the exchange reads statuses
// and the result, and skips what is not a JSON object.
func TestScaleChildRead(t *testing.T) {
	c := &scaleChild{}
	in := "=== RUN   TestSomething\n" +
		`{"up":3,"opened":3,"firstDials":4}` + "\n" +
		`{"up":2,"opened":5,"firstDials":4,"echoed":7,"result":{"Clients":4,"Echoed":9,"Closes":[1,2,0],"Reconnects":{"1700000000":2}}}` + "\n"
	res, err := c.read(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if res == nil || res.Clients != 4 || res.Echoed != 9 || res.Closes[closeDropped] != 2 || res.Reconnects[1700000000] != 2 {
		t.Errorf("result %+v", res)
	}
	if c.up.Load() != 2 || c.opened.Load() != 5 || c.firstDials.Load() != 4 || c.echoed.Load() != 7 {
		t.Errorf("last status: up %d opened %d first dials %d", c.up.Load(), c.opened.Load(), c.firstDials.Load())
	}
	if _, err := c.read(strings.NewReader("{not json\n")); err == nil {
		t.Error("a bad line was accepted")
	}
	if err := (scaleClientSpec{URL: "http://x", Clients: 1}).validate(); err == nil {
		t.Error("an http:// spec was accepted")
	}
}

const scaleHelperEnv = "LONGHAUL_COMPARE_SCALE_CHILD"

// TestScaleClientsHelper is the child of TestScaleChildProcess: this test
// binary in the child's role.
func TestScaleClientsHelper(t *testing.T) {
	if os.Getenv(scaleHelperEnv) != "1" {
		t.Skip("the child of TestScaleChildProcess")
	}
	if err := runScaleClients(os.Stdin, os.Stdout); err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	os.Exit(0)
}

// TestScaleChildProcess runs clients in a child process (this test binary)
// against a pod, with no proxy: they connect, exchange messages, stop, and
// the result comes back across the process boundary; then a child that
// is killed reports no result.
func TestScaleChildProcess(t *testing.T) {
	p, err := startRolloutPod(0)
	if err != nil {
		t.Skipf("no 127.0.0.x pod address here: %v", err)
	}
	defer p.kill()
	argv := []string{os.Args[0], "-test.run=^TestScaleClientsHelper$"}
	env := []string{scaleHelperEnv + "=1"}
	spec := scaleClientSpec{URL: "ws://" + p.httpAddr + "/ws", Clients: 20, FirstID: 5, Interval: 20 * time.Millisecond,
		RampConc: 4, Limit: 30 * time.Second, StatusEvery: 20 * time.Millisecond}
	dir := t.TempDir()
	c, err := startScaleChild("clients-1", argv, env, spec, filepath.Join(dir, "clients-1.log"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for c.up.Load() < int64(spec.Clients) || c.firstDials.Load() < int64(spec.Clients) {
		if e, ok := c.exited(); ok || time.Now().After(deadline) {
			c.kill()
			t.Fatalf("up %d of %d; exited %v: %v", c.up.Load(), spec.Clients, ok, e.err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for c.echoed.Load() < int64(2*spec.Clients) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	res, err := c.stop(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Clients != spec.Clients || res.Opened != int64(spec.Clients) || res.UpPeak != int64(spec.Clients) ||
		res.Echoed == 0 || res.Sent < res.Echoed || res.Lost != 0 || res.SeqErr != 0 || res.DialFail != 0 || res.Errors != "" {
		t.Errorf("result %+v", res)
	}

	c, err = startScaleChild("clients-2", argv, env, spec, filepath.Join(dir, "clients-2.log"))
	if err != nil {
		t.Fatal(err)
	}
	c.kill()
	if e, ok := c.exited(); !ok || e.err == nil || e.res != nil {
		t.Errorf("killed child: exited %v, %+v", ok, e)
	}
}

// podLog is a podEvents (and killWatcher) that records what it is told.
type podLog struct{ events []string }

func (l *podLog) terminating(p *rolloutPod, live []*rolloutPod) error {
	l.events = append(l.events, fmt.Sprintf("terminating %s of %d", p.name, len(live)))
	return nil
}
func (l *podLog) removed(p *rolloutPod, live []*rolloutPod) error {
	l.events = append(l.events, fmt.Sprintf("removed %s, %d left", p.name, len(live)))
	return nil
}
func (l *podLog) added(p *rolloutPod, live []*rolloutPod) error {
	l.events = append(l.events, fmt.Sprintf("added %s, %d", p.name, len(live)))
	return nil
}
func (l *podLog) killing(p *rolloutPod) { l.events = append(l.events, "killing "+p.name) }

// TestReplacePods: the steps in order, the kill hook just before each
// kill, and the connections open at the kills counted.
func TestReplacePods(t *testing.T) {
	pods := new(podSet)
	defer pods.killAll()
	if err := pods.start(3); err != nil {
		t.Skipf("no 127.0.0.x pod addresses here: %v", err)
	}
	c, err := net.Dial("tcp", pods.live[0].httpAddr) // open when pod-0 is killed
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err != nil { // accepted and served: tracked
		t.Fatal(err)
	}
	var l podLog
	killed, err := replacePods(context.Background(), &l, "test", func() error { return nil }, pods, 10*time.Millisecond, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{}
	for i := range rolloutSteps {
		old, np := fmt.Sprintf("pod-%d", i), fmt.Sprintf("pod-%d", i+3)
		want = append(want, "terminating "+old+" of 3", "killing "+old, "removed "+old+", 2 left", "added "+np+", 3")
	}
	if !slices.Equal(l.events, want) {
		t.Errorf("events:\n%s\nwant\n%s", strings.Join(l.events, "\n"), strings.Join(want, "\n"))
	}
	if killed != 1 {
		t.Errorf("%d connections open at the kills, want 1", killed)
	}
	if len(pods.live) != 3 || pods.live[0].name != "pod-3" || pods.gen != 6 {
		t.Errorf("live pods after the rollout: %d, first %s, next generation %d", len(pods.live), pods.live[0].name, pods.gen)
	}
}
