package main

// The rollout-scale workload: the rollout workload (rollout.go) at a size
// one process cannot hold under this machine's open-files limit. longhaul
// runs as scaleReplicas processes, as a Deployment of replicas would, each
// on its own ports and all watching the same endpoints files; the
// WebSocket clients run in child processes (scalechild.go), one per
// replica, each dialling its replica; the pods, the gRPC and HTTP loops
// and the rollout controller stay in the harness. Every process then holds
// about one socket per WebSocket (the pods, the children) or two per
// WebSocket of its share (a replica).

import (
	"context"
	"fmt"
	"io"
	"log"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/longhaul-proxy/longhaul/benchmarks/internal/proc"
	"github.com/longhaul-proxy/longhaul/benchmarks/internal/procstat"
)

const (
	// scaleReplicas is how many longhaul processes share the clients.
	scaleReplicas = 2
	// scaleRampConc is how many first dials are under way at once, over
	// all the children.
	scaleRampConc = 64
	// scaleStatusEvery is the period of the children's status lines and
	// of the proxies' memory samples.
	scaleStatusEvery = 200 * time.Millisecond
)

// Metric names of rollout-scale (besides the rollout's).
const (
	mSClients    = "ws clients"
	mSUpPeak     = "ws up peak"
	mSUpMin      = "ws up min during rollout"
	mSOpened     = "ws opened"
	mSRamp       = "ramp s"
	mSSent       = "ws sent"
	mSReconn     = "ws reconnects"
	mSRollout    = "rollout s"
	mSCPU        = "proxy CPU s"
	mSRampCPU    = "proxy CPU s ramp"
	mSRSSPeak    = "proxy peak RSS MiB"
	mSKiBPerWS   = "proxy RSS KiB/ws"
	mSConnected  = "ws connected after ramp"
	mSPodKilled  = "pod conns at kill"
	mSLeftAtKill = "longhaul ws left at kill"
	mSMoved      = "longhaul ws moved"
	mSForced     = "longhaul ws forced"
	mSClosed     = "longhaul ws closed"
)

// replicaMetric is a per-replica metric's name (replica i, from 0).
func replicaMetric(name string, i int) string { return fmt.Sprintf("%s r%d", name, i+1) }

func rolloutScaleColumns() []column {
	cols := []column{
		{"WebSocket clients", mSClients, value, 0},
		{"connected after the ramp-up", mSConnected, value, 0},
		{"ramp-up s (every client connected; 64 first dials at a time)", mSRamp, value, 1},
		{"proxy CPU s during the ramp-up, summed", mSRampCPU, value, 2},
		{"connected at peak (sampled every 200 ms)", mSUpPeak, value, 0},
		{"fewest connected during the rollout (sampled)", mSUpMin, value, 0},
		{"WebSockets opened (first ones and reconnects)", mSOpened, value, 0},
		{"WS dial failed", mWSDialFail, value, 0},
		{"WS msgs sent", mSSent, value, 0},
		{"WS msgs echoed", mWSEchoed, value, 0},
		{"WS msgs lost (resent)", mWSLost, value, 0},
		{"WS out of sequence", mWSSeqErr, value, 0},
		{"WS closes graceful (1012/1001)", mWSGraceful, value, 0},
		{"WS closes dropped (1006/EOF/reset)", mWSDropped, value, 0},
		{"WS other ends", mWSOther, value, 0},
		{"WS reconnects", mSReconn, value, 0},
		{"WS reconnect peak /s", mReconnPeak, value, 0},
		{"gRPC ok", mGrpcOK, value, 0}, {"gRPC failed", mGrpcFail, value, 0},
		{"gRPC streams cut: UNAVAILABLE", mStreamUnav, value, 0}, {"gRPC streams cut: other code", mStreamOther, value, 0},
		{"HTTP ok", mHTTPOK, value, 0}, {"HTTP failed", mHTTPFail, value, 0},
		{"longhaul drain ledger, web listener, both replicas: sessions moved (ended before their deadline)", mSMoved, value, 0},
		{"longhaul drain ledger: sessions forced (closed by their deadline)", mSForced, value, 0},
		{"longhaul drain ledger: sessions closed at once by policy", mSClosed, value, 0},
		{"longhaul sessions still on a pod just before its kill (drain ledger, summed over the 3 kills)", mSLeftAtKill, value, 0},
		{"connections the pods still had open when killed (summed)", mSPodKilled, value, 0},
		{"rollout s (first terminating to 2 s after the last pod added)", mSRollout, value, 1},
		{"proxy CPU s during the rollout, summed", mSCPU, value, 2},
	}
	for i := range scaleReplicas {
		cols = append(cols, column{fmt.Sprintf("proxy CPU s during the rollout, replica %d", i+1), replicaMetric(mSCPU, i), value, 2})
	}
	cols = append(cols, column{"proxy peak RSS MiB, summed", mSRSSPeak, value, 1})
	for i := range scaleReplicas {
		cols = append(cols, column{fmt.Sprintf("proxy peak RSS MiB, replica %d", i+1), replicaMetric(mSRSSPeak, i), value, 1})
	}
	return append(cols, column{"proxy RSS growth KiB per WebSocket (peak less before the ramp-up)", mSKiBPerWS, value, 1})
}

// maxScaleWS is how many WebSockets rollout-scale can hold under an
// open-files limit of noFile per process: the harness holds one socket per
// WebSocket (the pods' side) and each replica two per WebSocket of its
// share, plus some spare; a quarter more is kept for the sockets of a
// drained pod that are not closed yet while their clients reconnect (a
// pod holds a third of the WebSockets).
func maxScaleWS(noFile uint64) int {
	const spare = 1024
	if noFile < 2*spare {
		return 0
	}
	return int(noFile-spare) * 3 / 4
}

// longhaulReplicas is longhaul run as several processes in front of the
// same pods, told of them by the same endpoints files.
type longhaulReplicas struct {
	dir               string
	webFile, grpcFile string
	reps              []*rolloutProxy
	// leftAtKill sums what killing saw.
	leftAtKill int
}

func newLonghaulReplicas(n int, bin, work string, drain time.Duration) (*longhaulReplicas, error) {
	dir, err := os.MkdirTemp(work, "rollout-scale-")
	if err != nil {
		return nil, err
	}
	ports, err := proc.FreePorts(3 * n)
	if err != nil {
		return nil, err
	}
	c := &longhaulReplicas{dir: dir, webFile: filepath.Join(dir, "web-endpoints.yaml"), grpcFile: filepath.Join(dir, "grpc-endpoints.yaml")}
	for i := range n {
		rdir := filepath.Join(dir, fmt.Sprintf("replica-%d", i+1))
		if err := os.Mkdir(rdir, 0o755); err != nil {
			return nil, err
		}
		l := rolloutLayout{Dir: rdir, Web: proc.Loopback(ports[3*i]), GRPC: proc.Loopback(ports[3*i+1]), Admin: proc.Loopback(ports[3*i+2]),
			WebFile: c.webFile, GRPCFile: c.grpcFile, DrainTimeout: longhaulDrainTimeout(drain).String()}
		c.reps = append(c.reps, longhaulRolloutProxy(fmt.Sprintf("longhaul-%d", i+1), bin, l))
	}
	return c, nil
}

func (c *longhaulReplicas) publish(pods []*rolloutPod, term *rolloutPod) error {
	return publishEndpoints(c.webFile, c.grpcFile, pods, term)
}

// start writes the endpoints files and runs every replica.
func (c *longhaulReplicas) start(ctx context.Context, pods []*rolloutPod) error {
	if err := c.publish(pods, nil); err != nil {
		return err
	}
	for _, r := range c.reps {
		if err := r.writeConfig(); err != nil {
			return err
		}
		if err := r.t.start(ctx); err != nil {
			c.stop()
			return err
		}
	}
	return nil
}

func (c *longhaulReplicas) terminating(p *rolloutPod, live []*rolloutPod) error {
	return c.publish(live, p)
}
func (c *longhaulReplicas) removed(_ *rolloutPod, live []*rolloutPod) error {
	return c.publish(live, nil)
}
func (c *longhaulReplicas) added(_ *rolloutPod, live []*rolloutPod) error {
	return c.publish(live, nil)
}

// killing records the sessions the replicas still have on p, and logs
// each replica's drain of p when some were left or forced.
func (c *longhaulReplicas) killing(p *rolloutPod) {
	for _, r := range c.reps {
		st, err := scrapeDrain(r.l.Admin, "web", p.httpAddr)
		if err != nil {
			log.Printf("rollout-scale: %s: %v", r.t.name, err)
			continue
		}
		c.leftAtKill += int(st["left"])
		if st["left"] > 0 || st["forced"] > 0 {
			log.Printf("rollout-scale: %s's drain of %s just before its kill: %v moved, %v forced by the deadline, %v closed, %v still open",
				r.t.name, p.name, st["moved"], st["forced"], st["closed"], st["left"])
		}
	}
}

// drainStates sums the web listener's drain ledger over the replicas.
func (c *longhaulReplicas) drainStates() (map[string]float64, error) {
	sum := map[string]float64{}
	for _, r := range c.reps {
		st, err := scrapeDrain(r.l.Admin, "web", "")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.t.name, err)
		}
		for k, v := range st {
			sum[k] += v
		}
	}
	return sum, nil
}

// scrapeDrain reads longhaul's longhaul_drain_sessions on its admin
// listener at addr, summed by state over listener's drains (of endpoint
// only, unless empty).
func scrapeDrain(addr, listener, endpoint string) (map[string]float64, error) {
	cli := http.Client{Timeout: 2 * time.Second}
	resp, err := cli.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("drain metrics: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("drain metrics: status %d: %v", resp.StatusCode, err)
	}
	return parseDrainSessions(string(b), listener, endpoint), nil
}

// parseDrainSessions sums the longhaul_drain_sessions samples of a
// Prometheus text exposition by state, for listener and, unless empty,
// endpoint.
func parseDrainSessions(text, listener, endpoint string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(line, "longhaul_drain_sessions{")
		if !ok {
			continue
		}
		labels, val, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		l := map[string]string{}
		for _, kv := range strings.Split(labels, ",") {
			k, v, _ := strings.Cut(kv, "=")
			l[k] = strings.Trim(v, `"`)
		}
		if l["listener"] != listener || endpoint != "" && l["endpoint"] != endpoint {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[l["state"]] += v
		}
	}
	return out
}

func (c *longhaulReplicas) alive() error {
	for _, r := range c.reps {
		if err := r.t.Alive(); err != nil {
			return err
		}
	}
	return nil
}

// stop stops the replicas, all at once (each may take its shutdown's
// grace period).
func (c *longhaulReplicas) stop() {
	var wg sync.WaitGroup
	for _, r := range c.reps {
		wg.Go(r.stop)
	}
	wg.Wait()
}

func (c *longhaulReplicas) webAddrs() (out []string) {
	for _, r := range c.reps {
		out = append(out, r.l.Web)
	}
	return out
}

func (c *longhaulReplicas) grpcAddrs() (out []string) {
	for _, r := range c.reps {
		out = append(out, r.l.GRPC)
	}
	return out
}

// sample reads each replica's CPU and RSS.
func (c *longhaulReplicas) sample() ([]procstat.Sample, error) {
	out := make([]procstat.Sample, len(c.reps))
	for i, r := range c.reps {
		s, err := r.t.Sample()
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

// splitEven splits n into parts shares that differ by at most one, the
// larger first.
func splitEven(n, parts int) []int {
	out := make([]int, parts)
	for i := range out {
		out[i] = n / parts
		if i < n%parts {
			out[i]++
		}
	}
	return out
}

// scaleWatch samples, every scaleStatusEvery, the replicas' RSS and the
// WebSockets the children have open, keeping the peaks (and the fewest
// open while minOn).
type scaleWatch struct {
	mu         sync.Mutex
	rssPeak    []int64
	rssSumPeak int64
	upPeak     int64
	upMin      int64 // -1 until sampled with minOn
	minOn      bool
	err        error
	stopc      chan struct{}
	done       chan struct{}
}

func startScaleWatch(ctl *longhaulReplicas, up func() int64) *scaleWatch {
	w := &scaleWatch{rssPeak: make([]int64, len(ctl.reps)), upMin: -1, stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(scaleStatusEvery)
		defer t.Stop()
		for {
			s, err := ctl.sample()
			u := up()
			w.mu.Lock()
			if err != nil && w.err == nil {
				w.err = err
			}
			var sum int64
			for i, x := range s {
				w.rssPeak[i] = max(w.rssPeak[i], x.RSSBytes)
				sum += x.RSSBytes
			}
			w.rssSumPeak = max(w.rssSumPeak, sum)
			w.upPeak = max(w.upPeak, u)
			if w.minOn && (w.upMin < 0 || u < w.upMin) {
				w.upMin = u
			}
			w.mu.Unlock()
			select {
			case <-w.stopc:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

func (w *scaleWatch) setMin(on bool) {
	w.mu.Lock()
	w.minOn = on
	w.mu.Unlock()
}

// stop ends the sampling (once) and waits for it.
func (w *scaleWatch) stop() {
	select {
	case <-w.stopc:
	default:
		close(w.stopc)
	}
	<-w.done
}

// scaleFigures is everything rollout-scale's metrics derive from.
type scaleFigures struct {
	clients             int
	connected           int64 // open when the ramp-up ended
	ramp, rollout       time.Duration
	children            []*scaleClientResult
	st                  *rolloutStats // this process's gRPC and HTTP loops
	rampCPU, rolloutCPU []time.Duration
	rssBefore           int64 // summed, before the ramp-up
	rssPeak             []int64
	rssSumPeak          int64
	upPeak, upMin       int64
	// podKilled is the connections the pods had open when killed;
	// leftAtKill the WebSocket sessions longhaul (all replicas) still had
	// on each pod just before its kill, summed; drained the web listener's
	// drain outcomes (moved, forced, closed) over every replica and pod.
	podKilled  int
	leftAtKill int
	drained    map[string]float64
}

// metrics sums the children's figures and the replicas'.
func (f scaleFigures) metrics() metrics {
	var r scaleClientResult
	reconnects := map[int64]int{}
	for _, c := range f.children {
		r.Opened += c.Opened
		r.Sent += c.Sent
		r.Echoed += c.Echoed
		r.Lost += c.Lost
		r.SeqErr += c.SeqErr
		r.DialFail += c.DialFail
		for k := range r.Closes {
			r.Closes[k] += c.Closes[k]
		}
		for sec, n := range c.Reconnects {
			reconnects[sec] += n
		}
	}
	total, peak := 0, 0
	for _, n := range reconnects {
		total += n
		peak = max(peak, n)
	}
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	m := metrics{
		mSClients: float64(f.clients), mSConnected: float64(f.connected), mSRamp: f.ramp.Seconds(),
		mSUpPeak: float64(f.upPeak), mSUpMin: float64(f.upMin), mSOpened: float64(r.Opened),
		mWSDialFail: float64(r.DialFail), mSSent: float64(r.Sent), mWSEchoed: float64(r.Echoed),
		mWSLost: float64(r.Lost), mWSSeqErr: float64(r.SeqErr),
		mWSGraceful: float64(r.Closes[closeGraceful]), mWSDropped: float64(r.Closes[closeDropped]), mWSOther: float64(r.Closes[closeOther]),
		mSReconn: float64(total), mReconnPeak: float64(peak),
		mGrpcOK: float64(f.st.grpcOK.Load()), mGrpcFail: float64(f.st.grpcFail.Load()),
		mStreamUnav: float64(f.st.streamUnav.Load()), mStreamOther: float64(f.st.streamOther.Load()),
		mHTTPOK: float64(f.st.httpOK.Load()), mHTTPFail: float64(f.st.httpFail.Load()),
		mSRollout: f.rollout.Seconds(), mSRSSPeak: mib(f.rssSumPeak),
		mSKiBPerWS: float64(f.rssSumPeak-f.rssBefore) / 1024 / float64(max(f.upPeak, 1)),
	}
	m[mSPodKilled], m[mSLeftAtKill] = float64(f.podKilled), float64(f.leftAtKill)
	m[mSMoved], m[mSForced], m[mSClosed] = f.drained["moved"], f.drained["forced"], f.drained["closed"]
	if f.upMin < 0 {
		m[mSUpMin] = math.NaN()
	}
	var rampCPU, cpu time.Duration
	for i, d := range f.rolloutCPU {
		m[replicaMetric(mSCPU, i)] = d.Seconds()
		cpu += d
	}
	for _, d := range f.rampCPU {
		rampCPU += d
	}
	m[mSCPU], m[mSRampCPU] = cpu.Seconds(), rampCPU.Seconds()
	for i, b := range f.rssPeak {
		m[replicaMetric(mSRSSPeak, i)] = mib(b)
	}
	return m
}

// scaleSpec is rollout-scale's load: spec.wsClients WebSockets in the
// children, spec's gRPC and HTTP loops in this process, spread over the
// replicas.
type scaleSpec struct {
	rolloutSpec
	rampLimit time.Duration
}

func runRolloutScale(ctx context.Context, e *env, t *target) (metrics, error) {
	ctl, err := newLonghaulReplicas(scaleReplicas, e.tools.longhaulBin(t.name), e.workDir, e.opts.rolloutDrain)
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("rollout-scale: this program's path, to start the clients: %w", err)
	}
	spec := scaleSpec{rolloutSpec: rolloutSpec{wsClients: e.opts.rolloutScaleWS, wsInterval: e.opts.rolloutScaleInterval,
		grpcConc: 4, streams: 16, httpConc: 4, drain: e.opts.rolloutDrain}, rampLimit: time.Minute}
	return rolloutScale(ctx, ctl, []string{exe, scaleClientsRole}, nil, spec, log.Printf)
}

// rolloutScale runs the scenario through the replicas, with the WebSocket
// clients in children started as childArgv (env added).
func rolloutScale(ctx context.Context, ctl *longhaulReplicas, childArgv, childEnv []string, spec scaleSpec, logf func(string, ...any)) (metrics, error) {
	pods := new(podSet)
	defer pods.killAll()
	if err := pods.start(3); err != nil {
		return nil, err
	}
	if err := ctl.start(ctx, pods.live); err != nil {
		return nil, err
	}
	defer ctl.stop()
	before, err := ctl.sample()
	if err != nil {
		return nil, err
	}
	f := scaleFigures{clients: spec.wsClients, st: new(rolloutStats)}
	for _, s := range before {
		f.rssBefore += s.RSSBytes
	}
	load := spec.rolloutSpec
	load.wsClients = 0 // in the children
	stopLoad, err := rolloutLoad(ctl.webAddrs(), ctl.grpcAddrs(), load, f.st)
	if err != nil {
		return nil, err
	}
	loadStopped := false
	defer func() {
		if !loadStopped {
			stopLoad()
		}
	}()
	var children []*scaleChild
	defer func() {
		for _, c := range children {
			c.kill()
		}
	}()
	limit := 5 * time.Minute
	if d, ok := ctx.Deadline(); ok {
		limit = time.Until(d) + 10*time.Second
	}
	up := func() (n int64) {
		for _, c := range children {
			n += c.up.Load()
		}
		return n
	}
	cpu0, err := ctl.sample()
	if err != nil {
		return nil, err
	}
	rampStart := time.Now()
	first := 0
	for i, n := range splitEven(spec.wsClients, len(ctl.reps)) {
		cs := scaleClientSpec{URL: "ws://" + ctl.reps[i].l.Web + "/ws", Clients: n, FirstID: first, Interval: spec.wsInterval,
			RampConc: max(1, scaleRampConc/len(ctl.reps)), Limit: limit, StatusEvery: scaleStatusEvery}
		first += n
		c, err := startScaleChild(fmt.Sprintf("clients-%d", i+1), childArgv, childEnv, cs, filepath.Join(ctl.dir, fmt.Sprintf("clients-%d.log", i+1)))
		if err != nil {
			return nil, err
		}
		children = append(children, c)
	}
	watch := startScaleWatch(ctl, up)
	defer watch.stop()
	for f.connected = up(); f.connected < int64(spec.wsClients); f.connected = up() {
		for _, c := range children {
			if e, ok := c.exited(); ok {
				return nil, fmt.Errorf("during the ramp-up: %w", e.err)
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if time.Since(rampStart) > spec.rampLimit {
			logf("rollout-scale: only %d of %d WebSockets connected after %v; going on", f.connected, spec.wsClients, spec.rampLimit)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	f.ramp = time.Since(rampStart)
	cpu1, err := ctl.sample()
	if err != nil {
		return nil, err
	}
	logf("rollout-scale: %d of %d WebSockets connected in %v", f.connected, spec.wsClients, f.ramp.Round(time.Millisecond))
	sleepCtx(ctx, 2*time.Second)
	cpu2, err := ctl.sample()
	if err != nil {
		return nil, err
	}
	rolloutStart := time.Now()
	watch.setMin(true)
	if f.podKilled, err = replacePods(ctx, ctl, fmt.Sprintf("longhaul x%d", len(ctl.reps)), ctl.alive, pods, spec.drain, logf); err != nil {
		return nil, err
	}
	sleepCtx(ctx, 2*time.Second)
	// The drain ledger keeps each endpoint's drain for drain.LedgerKeep
	// (a minute) after it finished: all three are there still.
	f.drained, err = ctl.drainStates()
	if err != nil {
		return nil, err
	}
	f.leftAtKill = ctl.leftAtKill
	watch.setMin(false)
	f.rollout = time.Since(rolloutStart)
	cpu3, err := ctl.sample()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for i := range ctl.reps {
		f.rampCPU = append(f.rampCPU, cpu1[i].CPU-cpu0[i].CPU)
		f.rolloutCPU = append(f.rolloutCPU, cpu3[i].CPU-cpu2[i].CPU)
	}
	watch.stop()
	f.rssPeak, f.rssSumPeak, f.upPeak, f.upMin = watch.rssPeak, watch.rssSumPeak, watch.upPeak, watch.upMin
	if watch.err != nil {
		return nil, watch.err
	}
	for _, c := range children {
		r, err := c.stop(30 * time.Second)
		if err != nil {
			return nil, err
		}
		f.children = append(f.children, r)
		if r.Errors != "" {
			logf("rollout-scale %s: first errors by kind:%s", c.name, r.Errors)
		}
	}
	children = nil
	stopLoad()
	loadStopped = true
	if s := f.st.Errors(); s != "" {
		logf("rollout-scale gRPC and HTTP: first errors by kind:%s", s)
	}
	return f.metrics(), nil
}

func rolloutScaleAbout(o options) string {
	return fmt.Sprintf("The `rollout` workload at scale: %d WebSocket clients, each keeping 2 sequence-numbered messages in flight every %v (jittered) and reconnecting on any close (resending what was not echoed), "+
		"plus the same 4 gRPC unary loops, 16 gRPC health Watch streams and 4 HTTP/1.1 GET loops, through longhaul run as %d replicas (two `longhaul run` processes, as a Deployment of 2 would be, each on its own ports, "+
		"both watching the same endpoints files, least-connections as in `rollout`); the clients are split evenly over the replicas, the gRPC and HTTP loops alternate between them. "+
		"The same three pods are replaced one at a time (terminating, %v grace period, killed, removed, a new pod added; drain timeout %v, WebSocket close code 1012). "+
		"The WebSocket clients run in %d child processes of the harness (one per replica, from source addresses 127.0.0.2 to 127.0.0.33), the pods in the harness, so that no process passes the open-files limit (20,000 here: one longhaul process would need 2 descriptors per WebSocket). "+
		"Ramp-up: %d first dials at a time over all clients, up to a minute. Connected counts are the children's, summed every 200 ms. "+
		"Proxy CPU is utime+stime of each replica over the rollout (and over the ramp-up); peak RSS is the most seen in those 200 ms samples, per replica and of the sum. "+
		"longhaul only: HAProxy and NGINX run here as one process each and their rollout controls drive one instance; at this size one process needs more descriptors than the limit allows.",
		o.rolloutScaleWS, o.rolloutScaleInterval, scaleReplicas, o.rolloutDrain, longhaulDrainTimeout(o.rolloutDrain), scaleReplicas, scaleRampConc)
}
