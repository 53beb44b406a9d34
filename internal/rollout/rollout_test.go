package rollout_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/drain"
	"github.com/longhaul-proxy/longhaul/internal/testnet"
)

const (
	drainTimeout = 3 * time.Second
	// pickTolerance allows for picks already in flight when longhaul applied
	// a terminating state (and for the accept loop's own delay).
	pickTolerance = 200 * time.Millisecond
)

var listeners = []string{"tcp", "web", "grpc"}

// rolloutConfig is the App's configuration; window is the drain window
// ("" for the default, half the drain timeout).
func rolloutConfig(t *testing.T, src endpointSource, window string) string {
	if window == "" {
		window = "0s"
	}
	return src.rewrite(strings.ReplaceAll(fmt.Sprintf(`
admin: {address: %q}
log: {level: warn}
listeners:
  - name: tcp
    address: %q
    protocol: tcp
    endpoints: {file: %q}
    balance: {policy: least-connections}
    timeouts: {connect: 1s, idle: 1m}
    drain: {timeout: %s, tcp: immediate}
  - name: web
    address: %q
    protocol: http
    endpoints: {file: %q}
    balance: {policy: least-connections}
    timeouts: {connect: 1s, idle: 1m}
    drain: {timeout: %s}
    http: {webSocket: {closeCode: 1012}}
  - name: grpc
    address: %q
    protocol: grpc
    endpoints: {file: %q}
    balance: {policy: least-connections}
    timeouts: {connect: 1s, idle: 1m}
    drain: {timeout: %s}
`, testnet.FreeAddr(t), testnet.FreeAddr(t), src.path("tcp"), drainTimeout, testnet.FreeAddr(t), src.path("web"), drainTimeout,
		testnet.FreeAddr(t), src.path("grpc"), drainTimeout), "drain: {timeout: "+drainTimeout.String(),
		"drain: {window: "+window+", timeout: "+drainTimeout.String()))
}

// waitSnapshots waits until cond holds for the snapshot of every listener
// and returns, per listener, when it was first seen to hold.
func waitSnapshots(t *testing.T, in *instance, limit time.Duration, what string, cond func(listener string, s snapshotView) bool) map[string]time.Time {
	t.Helper()
	return waitSnapshotsOf(t, in, listeners, limit, what, cond)
}

// waitSnapshotsOf is waitSnapshots for the listeners ls.
func waitSnapshotsOf(t *testing.T, in *instance, ls []string, limit time.Duration, what string, cond func(listener string, s snapshotView) bool) map[string]time.Time {
	t.Helper()
	seen := map[string]time.Time{}
	deadline := time.Now().Add(limit)
	for len(seen) < len(ls) {
		for _, l := range ls {
			if _, ok := seen[l]; ok {
				continue
			}
			if cond(l, snapshotView{in, l}) {
				seen[l] = time.Now()
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("longhaul did not apply %s within %v (applied on %v)", what, limit, seen)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return seen
}

type snapshotView struct {
	in       *instance
	listener string
}

// state returns the endpoint's conditions, or found false.
func (v snapshotView) state(addr string) (found, ready, terminating bool) {
	s := v.in.a.Upstream(v.listener).Snapshot()
	if s == nil {
		return false, false, false
	}
	e, ok := s.Find(addr)
	return ok, e.Ready, e.Terminating
}

// sessionsOn counts the registered sessions on any port of p.
func sessionsOn(in *instance, p *pod) int {
	n := 0
	for _, l := range listeners {
		n += len(in.a.Sessions().Endpoint(podAddr(p, l)))
	}
	return n
}

// TestRollingReplacement replaces every pod in turn under load, with
// migrations paced over the default window (half the drain timeout).
func TestRollingReplacement(t *testing.T) { rollingReplacement(t, "", nil) }

// TestRollingReplacementUnpaced is the same rollout with every migration
// started at once (a 1ms window): still no failure, but the reconnect peak
// it logs is what pacing spares the remaining pods.
func TestRollingReplacementUnpaced(t *testing.T) {
	if testing.Short() {
		t.Skip("the paced rollout covers the behaviour; this one measures the contrast")
	}
	rollingReplacement(t, "1ms", nil)
}

// rollingReplacement runs the rollout as a Deployment does it with three
// replicas and the default maxSurge and maxUnavailable of 25% (1 and 0):
// for each old pod in turn a new one joins and is ready, then the old one
// turns terminating, is drained and removed. The original pods run one
// revision and their replacements another, when src publishes revisions.
// src publishes the pods' endpoints; nil means watched endpoints files.
func rollingReplacement(t *testing.T, window string, src endpointSource) {
	began := time.Now()
	ws, streams := rolloutSize(t)
	spec := loadSpec{unary: 4, streams: streams, http: 4, ws: ws, tcp: 50,
		wsInterval: time.Second, tcpInterval: 200 * time.Millisecond}

	if src == nil {
		src = newEndpointsFiles(t, listeners...)
	}
	withRevisions := src.revisions() && os.Getenv(envRevisions) != "off"
	revision := func(r string) string {
		if withRevisions {
			return r
		}
		return ""
	}
	var pods []*pod
	for i := range 3 {
		p := startPod(t, fmt.Sprintf("pod-%d", i))
		p.revision = revision("r1")
		pods = append(pods, p)
	}
	src.write(pods, nil)
	in := startApp(t, rolloutConfig(t, src, window), src.options())
	tg := &fixed{in: in}
	// A client connection carries at most 50 of the streams, well within
	// any server's limit of concurrent streams.
	for range max(2, (streams+49)/50) {
		tg.conns = append(tg.conns, grpcDial(t, in.a.ListenerAddr("grpc").String()))
	}

	st := new(stats)
	stopLoad := runLoad(context.Background(), t, tg, spec, st)
	t.Cleanup(stopLoad)
	// Every WebSocket client connected, and the load ran a moment.
	for deadline := time.Now().Add(30 * time.Second); st.wsUp.Load() < int64(spec.ws); {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d WebSocket clients connected: %s", st.wsUp.Load(), spec.ws, st.Errors())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("load up after %v: %d WebSocket clients connected", time.Since(began).Round(time.Millisecond), st.wsUp.Load())
	time.Sleep(time.Second)

	var drainTimes []time.Duration
	var burst streamBurst
	onRemoved := 0 // sessions on the pods when they were removed
	generation := len(pods)
	for step := range 3 {
		// A new pod joins.
		np := startPod(t, fmt.Sprintf("pod-%d", generation))
		np.revision = revision("r2")
		generation++
		pods = append(pods, np)
		src.write(pods, nil)
		waitSnapshots(t, in, 5*time.Second, np.name+" added", func(l string, v snapshotView) bool {
			found, ready, _ := v.state(podAddr(np, l))
			return found && ready
		})

		old := pods[0]
		wsBefore := len(in.a.Sessions().Endpoint(podAddr(old, "web")))
		tcpBefore := len(in.a.Sessions().Endpoint(podAddr(old, "tcp")))
		terminating := map[*pod]bool{old: true}
		marked := time.Now()
		t.Logf("step %d: %s joined; %s marked terminating at %s", step, np.name, old.name, marked.Format("15:04:05.000"))
		src.write(pods, terminating)
		applied := waitSnapshots(t, in, 5*time.Second, old.name+" terminating", func(l string, v snapshotView) bool {
			found, ready, term := v.state(podAddr(old, l))
			return found && !ready && term
		})
		last := marked
		for _, at := range applied {
			if at.After(last) {
				last = at
			}
		}
		// Its sessions leave: WebSocket and TCP sessions (in longhaul's
		// registry) and gRPC streams (ended with UNAVAILABLE, paced over the
		// drain window after a short grace) by the deadline.
		deadline := last.Add(drainTimeout)
		var sessionsGone time.Time
		for time.Now().Before(deadline.Add(500 * time.Millisecond)) {
			if sessionsGone.IsZero() && sessionsOn(in, old) == 0 {
				sessionsGone = time.Now()
			}
			if !sessionsGone.IsZero() && old.watches.Load() == 0 && old.wsLive.Load() == 0 && old.tcpLive.Load() == 0 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		drained := time.Now()
		switch {
		case sessionsGone.IsZero():
			t.Errorf("step %d: %d sessions still registered on %s %v after it turned terminating (drain timeout %v): %v",
				step, sessionsOn(in, old), old.name, drained.Sub(last).Round(time.Millisecond), drainTimeout, describe(in, old))
		case sessionsGone.After(deadline):
			t.Errorf("step %d: the sessions of %s left %v after it turned terminating, after its deadline (%v)",
				step, old.name, sessionsGone.Sub(last).Round(time.Millisecond), drainTimeout)
		default:
			drainTimes = append(drainTimes, sessionsGone.Sub(last))
		}
		if old.watches.Load() > 0 || old.wsLive.Load() > 0 || old.tcpLive.Load() > 0 {
			t.Errorf("step %d: %s still has %d gRPC streams, %d WebSockets, %d TCP connections %v after it turned terminating",
				step, old.name, old.watches.Load(), old.wsLive.Load(), old.tcpLive.Load(), drained.Sub(last).Round(time.Millisecond))
		}
		burst.add(old)

		// Removed from the files, then killed.
		pods = pods[1:]
		src.write(pods, nil)
		waitSnapshots(t, in, 5*time.Second, old.name+" removed", func(l string, v snapshotView) bool {
			found, _, _ := v.state(podAddr(old, l))
			return !found
		})
		if n := sessionsOn(in, old); n > 0 {
			onRemoved += n
			t.Errorf("step %d: %d sessions on %s when it was removed", step, n, old.name)
		}
		old.stop()
		if old.killed > 0 {
			t.Errorf("step %d: %s still had %d connections (TCP or WebSocket) when it was stopped, %s", step, old.name, old.killed, time.Now().Format("15:04:05.000"))
		}
		for l, ln := range map[string]*acceptLog{"tcp": old.tcp, "web": old.http, "grpc": old.grpc} {
			if n, first := ln.after(applied[l].Add(pickTolerance)); n > 0 {
				t.Errorf("step %d: %s accepted %d %s connections after longhaul applied its terminating state, the first %v after",
					step, old.name, n, l, first.Sub(applied[l]).Round(time.Millisecond))
			}
		}
		t.Logf("step %d: %s terminating applied %v after the write; sessions gone in %v (%d WebSocket, %d TCP sessions); accepted %d/%d/%d tcp/http/grpc connections in its life",
			step, old.name, (last.Sub(marked)).Round(time.Millisecond), sessionsGone.Sub(last).Round(time.Millisecond),
			wsBefore, tcpBefore, old.tcp.count(), old.http.count(), old.grpc.count())
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(time.Second)
	stopLoad()
	// Every session that is left is a new pod's.
	for _, s := range in.a.Sessions().Infos() {
		if !slices.ContainsFunc(pods, func(p *pod) bool { return s.Endpoint == podAddr(p, "tcp") || s.Endpoint == podAddr(p, "web") }) {
			t.Errorf("session %d on %s outlived its pod", s.ID, s.Endpoint)
		}
	}

	reportAndCheck(t, st, in.mig, time.Since(began))
	slices.Sort(drainTimes)
	t.Logf("pod drain, terminating applied to last WebSocket/TCP session gone: %v", drainTimes)
	for _, p := range pods {
		t.Logf("%s (new): %d TCP, %d WebSocket sessions live at the end; %d HTTP requests, %d gRPC checks served",
			p.name, p.tcpLive.Load(), p.wsLive.Load(), p.requests.Load(), p.checks.Load())
	}
	if got := in.mig.outcome("websocket", "forced"); got > 0 {
		t.Errorf("%d WebSocket sessions were closed at their deadline instead of moving before it", got)
	}
	if got := in.mig.outcome("tcp", "forced"); got > 0 {
		t.Errorf("%d TCP sessions were closed at their deadline (drain mode immediate closes them at their paced turn)", got)
	}
	if st.wsMoved.Load() < int64(spec.ws)/2 {
		t.Errorf("only %d WebSocket sessions moved in a rollout of every pod", st.wsMoved.Load())
	}

	// The summary. A session moves at least once in a rollout of every
	// pod; with the revision rule, once: off the old pod onto a new one.
	wsMoves := float64(st.wsMoved.Load()) / float64(spec.ws)
	streamMoves := float64(st.streamResumed.Load()) / float64(spec.streams)
	t.Logf("summary: %d WebSockets, %d gRPC streams, revisions %v: moves per session WebSocket %.3f (%d/%d), gRPC stream %.3f (%d/%d); "+
		"largest share of a pod's gRPC streams ended within %v %s; sessions on a pod when removed %d; failed unary %d; WebSocket lost %d, duplicated %d",
		spec.ws, spec.streams, withRevisions, wsMoves, st.wsMoved.Load(), spec.ws, streamMoves, st.streamResumed.Load(), spec.streams,
		burstWidth, burst, onRemoved, st.unaryFail.Load(), st.wsLost.Load(), st.wsDup.Load())
	if src.revisions() && wsMoves > maxMovesPerSession {
		t.Errorf("%.3f WebSocket moves per session (revisions in the endpoints: %v), want at most %v: sessions moved from one old pod to another",
			wsMoves, withRevisions, maxMovesPerSession)
	}
	if _, files := src.(*endpointsFiles); window == "" && files {
		// The default window: the plan's bound holds. Not asserted with
		// EndpointSlices: the API server and etcd share the cores and
		// stall the test process for longer than the bound allows for
		// (a 750ms gap, then 5 of a pod's 7 streams ended in the same
		// millisecond, was seen).
		for _, b := range burst.pods {
			if b.share() > b.bound() {
				t.Errorf("%s: %d of its %d gRPC streams ended within %v, more than the %d its drain's pacing allows",
					b.name, b.most, b.n, burstWidth, b.allowed)
			}
		}
	}
}

// maxMovesPerSession bounds the WebSocket reconnects per client in the
// rollout: each session moves once, off its old pod onto a new one, but for
// a few that raced a terminating state or were rebalanced.
const maxMovesPerSession = 1.05

// Sizes of the rollout's load, and the switch that leaves the revisions
// out of the endpoints files (see the package documentation).
const (
	envWebSockets = "LONGHAUL_ROLLOUT_WEBSOCKETS"
	envStreams    = "LONGHAUL_ROLLOUT_STREAMS"
	envRevisions  = "LONGHAUL_ROLLOUT_REVISIONS"
)

// rolloutSize returns the rollout's WebSocket clients and gRPC streams:
// 1000 and 16, or what envWebSockets and envStreams say.
func rolloutSize(t *testing.T) (ws, streams int) {
	return envCount(t, envWebSockets, 1000), envCount(t, envStreams, 16)
}

// envCount returns the count in the environment variable name, or def
// when it is unset.
func envCount(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 5000 {
		t.Fatalf("%s=%q: want a count from 1 to 5000", name, v)
	}
	return n
}

// burstWidth is the interval within which streamBurst counts stream ends.
const burstWidth = 100 * time.Millisecond

// streamBurst is, per drained pod, the most of its gRPC streams that ended
// within any burstWidth, and what its drain's pacing allows.
type streamBurst struct{ pods []podBurst }

type podBurst struct {
	name             string
	n, most, allowed int
}

// add records p's stream ends (all of them drain ends: the load's streams
// end only when a drain ends them, until the load stops).
//
// The bound. With the default window W (half the drain timeout) and grace
// G (drain.streamPlan: W/4 within [MinStreamGrace, MaxStreamGrace]), the
// n ends of an endpoint's streams fall one in each of n equal strata of
// S = W - G, uniformly within it (drain.Controller.starts; no rate cap is
// configured). An interval of length d meets at most ceil(d·n/S)+1
// strata. The ends are seen at the pod, after the reset crossed longhaul
// and the loopback, and a stalled process fires the ends it owes back to
// back: d is burstWidth plus 200ms for those delays (stalls of the test
// process of 80 to 270ms were seen on two loaded cores).
func (b *streamBurst) add(p *pod) {
	ends := p.streamEnds()
	pb := podBurst{name: p.name, n: len(ends)}
	for i := range ends {
		j, _ := slices.BinarySearchFunc(ends, ends[i].Add(burstWidth), time.Time.Compare)
		pb.most = max(pb.most, j-i)
	}
	w := drainTimeout / 2
	s := w - max(min(w/4, drain.MaxStreamGrace), drain.MinStreamGrace)
	d := burstWidth + 200*time.Millisecond
	pb.allowed = int(math.Ceil(float64(d)*float64(pb.n)/float64(s))) + 1
	b.pods = append(b.pods, pb)
}

func (p podBurst) share() float64 { return float64(p.most) / float64(max(p.n, 1)) }
func (p podBurst) bound() float64 { return min(float64(p.allowed)/float64(max(p.n, 1)), 1) }

// String is the largest share over the pods, with its pod and counts.
func (b streamBurst) String() string {
	if len(b.pods) == 0 {
		return "(no pod drained)"
	}
	top := b.pods[0]
	for _, p := range b.pods[1:] {
		if p.share() > top.share() {
			top = p
		}
	}
	return fmt.Sprintf("%.2f (%s: %d of %d; pacing allows %d, %.2f)", top.share(), top.name, top.most, top.n, top.allowed, top.bound())
}

// reportAndCheck logs the clients' figures and asserts the pass criteria
// common to both scenarios.
func reportAndCheck(t *testing.T, st *stats, mig *migrations, took time.Duration) {
	t.Helper()
	t.Logf("run took %v", took.Round(time.Millisecond))
	t.Logf("gRPC unary:   %d ok, %d failed", st.unaryOK.Load(), st.unaryFail.Load())
	t.Logf("gRPC streams: %d opened, %d messages, %d resumed after UNAVAILABLE, %d failed", st.streamOpened.Load(),
		st.streamMsgs.Load(), st.streamResumed.Load(), st.streamFail.Load())
	t.Logf("HTTP/1.1:     %d ok, %d failed", st.httpOK.Load(), st.httpFail.Load())
	t.Logf("WebSocket:    %d connections (peak %d live), %d messages echoed in order, %d moved on 1012/1001, %d other closes, %d failed dials, %d lost, %d duplicated",
		st.wsConnected.Load(), st.wsMaxConcurrent.Load(), st.wsMsgs.Load(), st.wsMoved.Load(), st.wsUnclean.Load(), st.wsDialFail.Load(),
		st.wsLost.Load(), st.wsDup.Load())
	t.Logf("TCP:          %d connections, %d lines echoed in order, %d reconnects, %d failed dials, %d lost, %d duplicated",
		st.tcpConnected.Load(), st.tcpLines.Load(), st.tcpReconnect.Load(), st.tcpDialFail.Load(), st.tcpLost.Load(), st.tcpDup.Load())
	t.Logf("reconnects (WebSocket, TCP, gRPC stream resumes): %d; peak %d per 100ms, %d per second",
		st.Reconnects(), st.ReconnectPeak(100*time.Millisecond), st.ReconnectPeak(time.Second))
	mig.report(t)
	if e := st.Errors(); e != "" {
		t.Logf("first errors by kind:%s", e)
	}

	zero := []struct {
		what string
		n    int64
	}{
		{"failed gRPC unary calls", st.unaryFail.Load()},
		{"gRPC streams ended with a code other than UNAVAILABLE", st.streamFail.Load()},
		{"failed HTTP requests", st.httpFail.Load()},
		{"lost WebSocket messages", st.wsLost.Load()},
		{"duplicated WebSocket messages", st.wsDup.Load()},
		{"WebSocket connections closed other than by 1012/1001", st.wsUnclean.Load()},
		{"failed WebSocket dials", st.wsDialFail.Load()},
		{"lost TCP lines", st.tcpLost.Load()},
		{"duplicated TCP lines", st.tcpDup.Load()},
		{"failed TCP dials", st.tcpDialFail.Load()},
	}
	for _, z := range zero {
		if z.n != 0 {
			t.Errorf("%d %s, want 0", z.n, z.what)
		}
	}
	for _, nz := range []struct {
		what string
		n    int64
	}{{"gRPC unary calls", st.unaryOK.Load()}, {"HTTP requests", st.httpOK.Load()},
		{"WebSocket messages", st.wsMsgs.Load()}, {"TCP lines", st.tcpLines.Load()}, {"gRPC stream messages", st.streamMsgs.Load()}} {
		if nz.n == 0 {
			t.Errorf("no %s succeeded: the load did not run", nz.what)
		}
	}
}

// describe lists the sessions still on a pod.
func describe(in *instance, p *pod) string {
	var b strings.Builder
	for _, l := range listeners {
		for i, s := range in.a.Sessions().Endpoint(podAddr(p, l)) {
			if i == 5 {
				b.WriteString(" ...")
				break
			}
			in := s.Info()
			fmt.Fprintf(&b, " [%s %s started %s migrating %v deadline %s]", in.Protocol, in.Client,
				in.Started.Format("15:04:05.000"), in.Migrating, in.Deadline.Format("15:04:05.000"))
		}
	}
	return b.String()
}
