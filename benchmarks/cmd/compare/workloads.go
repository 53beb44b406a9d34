package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/longhaul-proxy/longhaul/benchmarks/internal/stats"
)

// metrics are one measurement's figures by name.
type metrics map[string]float64

// Metric names.
const (
	mGBps       = "GB/s"
	mCPUPerGB   = "CPU s/GB"
	mCPUPerConn = "CPU us/conn"
	mCPUPerReq  = "CPU us/req"
	mCPUPerMsg  = "CPU us/msg"
	mRate       = "per s"
	mP50        = "p50 us"
	mP99        = "p99 us"
	mFailed     = "failed"
	mKiBPerConn = "KiB/conn"
)

// env is what every workload may use.
type env struct {
	opts  options
	tools toolSet
	be    *backends
	// workDir is the run's temporary directory.
	workDir string
}

// workload is one kind of traffic, measured the same way on every target.
type workload struct {
	name, title string
	about       func(o options) string
	columns     []column
	// proxiesOnly skips direct (there is no proxy process to measure).
	proxiesOnly bool
	// fresh restarts a proxy before each measurement (memory figures).
	fresh bool
	// only, if set, is the targets it runs on (others are skipped).
	only []string
	// transpose writes the table with a row per figure and a column per
	// target (for many figures and few targets).
	transpose bool
	// baseFigures are the main figures compared between longhaul and
	// longhaul-base (CPU per unit of work, throughput, added latency,
	// memory per connection); none for rollout, which counts failures.
	baseFigures []baseFigure
	run         func(ctx context.Context, e *env, t *target) (metrics, error)
}

func allWorkloads() []workload {
	return []workload{
		{
			name: "tcp-bulk", title: "TCP bulk, one stream",
			about: func(o options) string {
				return fmt.Sprintf("One connection sends %s to a sink that counts the bytes and answers with the count; time from connect to the count.", bytesLabel(o.bulkBytes))
			},
			columns: []column{
				{"GB/s", mGBps, value, 2}, {"throughput / direct", mGBps, vsDirect, 2}, {"throughput / HAProxy", mGBps, vsHAProxy, 2},
				{"proxy CPU s/GB", mCPUPerGB, value, 3}, {"CPU / HAProxy", mCPUPerGB, vsHAProxy, 2},
			},
			baseFigures: []baseFigure{{column{"proxy CPU s/GB", mCPUPerGB, value, 3}, true}, {column{"GB/s", mGBps, value, 2}, false}},
			run:         runBulk,
		},
		{
			name: "tcp-connrate", title: "TCP connection rate",
			about: func(o options) string {
				return fmt.Sprintf("%d connections, 4 at a time: connect, 1 byte each way, the server closes, then the client. Latency from connect to the echoed byte.", o.conns)
			},
			columns: []column{
				{"proxy CPU us/conn", mCPUPerConn, value, 1}, {"CPU / HAProxy", mCPUPerConn, vsHAProxy, 2},
				{"p50 us", mP50, value, 0}, {"added p50 us", mP50, minusDirect, 0}, {"conn/s", mRate, value, 0}, {"failed", mFailed, value, 0},
			},
			baseFigures: []baseFigure{{column{"proxy CPU us/conn", mCPUPerConn, value, 1}, true}, {column{"added p50 us", mP50, minusDirect, 0}, true}},
			run:         runConnRate,
		},
		{
			name: "tcp-pingpong", title: "TCP ping-pong latency",
			about: func(o options) string {
				return fmt.Sprintf("One connection, %d round trips of 1 byte, one at a time.", o.pings)
			},
			columns: []column{
				{"p50 us", mP50, value, 1}, {"added p50 us", mP50, minusDirect, 1}, {"p99 us", mP99, value, 1}, {"added p99 us", mP99, minusDirect, 1},
			},
			baseFigures: []baseFigure{{column{"added p50 us", mP50, minusDirect, 1}, true}, {column{"added p99 us", mP99, minusDirect, 1}, true}},
			run:         runPingPong,
		},
		{
			name: "grpc-sat", title: "gRPC unary, saturated (ghz)",
			about: func(o options) string {
				return fmt.Sprintf("ghz: %d calls of grpc.health.v1.Health/Check, 50 concurrent, one HTTP/2 connection, as fast as it goes (ghz itself takes much of the 2 cores).", o.grpcN)
			},
			columns: []column{
				{"req/s", mRate, value, 0}, {"req/s / direct", mRate, vsDirect, 2}, {"req/s / HAProxy", mRate, vsHAProxy, 2},
				{"proxy CPU us/req", mCPUPerReq, value, 1}, {"CPU / HAProxy", mCPUPerReq, vsHAProxy, 2}, {"failed", mFailed, value, 0},
			},
			baseFigures: []baseFigure{{column{"proxy CPU us/req", mCPUPerReq, value, 1}, true}, {column{"req/s", mRate, value, 0}, false}},
			run:         runGrpcSat,
		},
		{
			name: "grpc-rps", title: "gRPC unary at a fixed 1000 rps (ghz)",
			about: func(o options) string {
				return fmt.Sprintf("ghz --rps 1000: %d calls of grpc.health.v1.Health/Check, one HTTP/2 connection; latency below saturation.", o.grpcRateN)
			},
			columns: []column{
				{"p50 us", mP50, value, 0}, {"added p50 us", mP50, minusDirect, 0}, {"p99 us", mP99, value, 0}, {"added p99 us", mP99, minusDirect, 0},
				{"proxy CPU us/req", mCPUPerReq, value, 1}, {"failed", mFailed, value, 0},
			},
			baseFigures: []baseFigure{{column{"proxy CPU us/req", mCPUPerReq, value, 1}, true}, {column{"added p50 us", mP50, minusDirect, 0}, true}, {column{"added p99 us", mP99, minusDirect, 0}, true}},
			run:         runGrpcRate,
		},
		{
			name: "http", title: "HTTP/1.1 keep-alive, saturated",
			about: func(o options) string {
				return fmt.Sprintf("Own generator: %d GET requests over 8 keep-alive connections, one request at a time each; %d-byte responses.", o.httpN, len(httpBody))
			},
			columns: []column{
				{"req/s", mRate, value, 0}, {"req/s / direct", mRate, vsDirect, 2}, {"req/s / HAProxy", mRate, vsHAProxy, 2},
				{"proxy CPU us/req", mCPUPerReq, value, 1}, {"CPU / HAProxy", mCPUPerReq, vsHAProxy, 2}, {"failed", mFailed, value, 0},
			},
			baseFigures: []baseFigure{{column{"proxy CPU us/req", mCPUPerReq, value, 1}, true}, {column{"req/s", mRate, value, 0}, false}},
			run:         runHTTP,
		},
		{
			name: "ws", title: "WebSocket echo at a fixed message rate",
			about: func(o options) string {
				return fmt.Sprintf("%d WebSocket clients (gorilla/websocket), each sending a 64-byte message every 100 ms and waiting for its echo, %d messages each (%d msg/s in all). CPU per message is per round trip (one message each way).", o.wsClients, o.wsMsgs, o.wsClients*10)
			},
			columns: []column{
				{"p50 us", mP50, value, 0}, {"added p50 us", mP50, minusDirect, 0}, {"p99 us", mP99, value, 0}, {"added p99 us", mP99, minusDirect, 0},
				{"proxy CPU us/msg", mCPUPerMsg, value, 1}, {"CPU / HAProxy", mCPUPerMsg, vsHAProxy, 2}, {"failed", mFailed, value, 0},
			},
			baseFigures: []baseFigure{{column{"proxy CPU us/msg", mCPUPerMsg, value, 1}, true}, {column{"added p50 us", mP50, minusDirect, 0}, true}, {column{"added p99 us", mP99, minusDirect, 0}, true}},
			run:         runWS,
		},
		{
			name: "idle", title: "Idle WebSocket connections: memory",
			about: func(o options) string {
				return fmt.Sprintf("%d WebSocket connections opened through a freshly started proxy and held; memory per connection = growth of the RSS summed over the proxy's processes / connections (after 2 s).", o.idleConns)
			},
			columns: []column{
				{"KiB/conn", mKiBPerConn, value, 1}, {"/ HAProxy", mKiBPerConn, vsHAProxy, 2}, {"failed", mFailed, value, 0},
			},
			proxiesOnly: true, fresh: true,
			baseFigures: []baseFigure{{column{"KiB/conn", mKiBPerConn, value, 1}, true}},
			run:         runIdle,
		},
		{
			name: "idle-tcp", title: "Idle TCP connections: memory",
			about: func(o options) string {
				return fmt.Sprintf("%d raw TCP connections to the echo server opened through a freshly started proxy, one byte echoed on each, and held; memory per connection = growth of the RSS summed over the proxy's processes / connections (after 2 s).", o.idleConns)
			},
			columns: []column{
				{"KiB/conn", mKiBPerConn, value, 1}, {"/ HAProxy", mKiBPerConn, vsHAProxy, 2}, {"failed", mFailed, value, 0},
			},
			proxiesOnly: true, fresh: true,
			baseFigures: []baseFigure{{column{"KiB/conn", mKiBPerConn, value, 1}, true}},
			run:         runIdleTCP,
		},
		{
			name: "rollout", title: "Rolling replacement",
			about: rolloutAbout,
			columns: []column{
				{"gRPC ok", mGrpcOK, value, 0}, {"gRPC failed", mGrpcFail, value, 0},
				{"gRPC streams cut: UNAVAILABLE", mStreamUnav, value, 0}, {"gRPC streams cut: other code", mStreamOther, value, 0},
				{"HTTP ok", mHTTPOK, value, 0}, {"HTTP failed", mHTTPFail, value, 0},
				{"WS msgs echoed", mWSEchoed, value, 0}, {"WS msgs lost (resent)", mWSLost, value, 0},
				{"WS out of sequence", mWSSeqErr, value, 0},
				{"WS closes graceful (1012/1001)", mWSGraceful, value, 0}, {"WS closes dropped (1006/EOF/reset)", mWSDropped, value, 0},
				{"WS other ends", mWSOther, value, 0}, {"WS dial failed", mWSDialFail, value, 0},
				{"WS reconnect peak /s", mReconnPeak, value, 0},
			},
			proxiesOnly: true,
			run:         runRollout,
		},
		{
			name: "rollout-scale", title: "Rolling replacement at scale, two longhaul replicas",
			about:       rolloutScaleAbout,
			columns:     rolloutScaleColumns(),
			proxiesOnly: true, only: []string{longhaul}, transpose: true,
			run: runRolloutScale,
		},
	}
}

// runsOn says whether the workload runs on target t (only, when set).
func (w workload) runsOn(t string) bool {
	return w.only == nil || slices.Contains(w.only, t)
}

// withCPU runs f and returns the proxy CPU it took (0 for direct).
func withCPU(t *target, f func() error) (time.Duration, error) {
	before, err := t.Sample()
	if err != nil {
		return 0, err
	}
	if err := f(); err != nil {
		return 0, err
	}
	after, err := t.Sample()
	if err != nil {
		return 0, err
	}
	return after.CPU - before.CPU, nil
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func runBulk(ctx context.Context, e *env, t *target) (metrics, error) {
	var took time.Duration
	cpu, err := withCPU(t, func() (err error) {
		took, err = bulk(ctx, t.addrs.TCPSink, e.opts.bulkBytes)
		return err
	})
	if err != nil {
		return nil, err
	}
	gb := float64(e.opts.bulkBytes) / 1e9
	m := metrics{mGBps: gb / took.Seconds()}
	if t.isProxy() {
		m[mCPUPerGB] = cpu.Seconds() / gb
	}
	return m, nil
}

func runConnRate(ctx context.Context, e *env, t *target) (metrics, error) {
	var (
		lat    *stats.Latencies
		failed int
		took   time.Duration
	)
	cpu, err := withCPU(t, func() (err error) {
		start := time.Now()
		lat, failed, err = connRate(ctx, t.addrs.TCPEcho, e.opts.conns, 4)
		took = time.Since(start)
		return err
	})
	if err != nil {
		return nil, err
	}
	if lat.Len() == 0 {
		return nil, fmt.Errorf("connection rate: all %d connections failed", failed)
	}
	m := metrics{mP50: us(lat.Percentile(50)), mRate: float64(lat.Len()) / took.Seconds(), mFailed: float64(failed)}
	if t.isProxy() {
		m[mCPUPerConn] = us(cpu) / float64(lat.Len())
	}
	return m, nil
}

func runPingPong(ctx context.Context, e *env, t *target) (metrics, error) {
	lat, err := pingPong(ctx, t.addrs.TCPEcho, e.opts.pings)
	if err != nil {
		return nil, err
	}
	return metrics{mP50: us(lat.Percentile(50)), mP99: us(lat.Percentile(99))}, nil
}

func runGrpcSat(ctx context.Context, e *env, t *target) (metrics, error) {
	var r ghzReport
	cpu, err := withCPU(t, func() (err error) {
		r, err = runGhz(ctx, e.tools.ghz, ghzArgs(t.addrs.GRPC, e.opts.grpcN, 50, 0))
		return err
	})
	if err != nil {
		return nil, err
	}
	m := metrics{mRate: r.RPS, mFailed: float64(r.failures())}
	if t.isProxy() {
		m[mCPUPerReq] = us(cpu) / float64(r.Count)
	}
	return m, nil
}

func runGrpcRate(ctx context.Context, e *env, t *target) (metrics, error) {
	var r ghzReport
	cpu, err := withCPU(t, func() (err error) {
		r, err = runGhz(ctx, e.tools.ghz, ghzArgs(t.addrs.GRPC, e.opts.grpcRateN, 20, 1000))
		return err
	})
	if err != nil {
		return nil, err
	}
	p50, err := r.percentile(50)
	if err != nil {
		return nil, err
	}
	p99, err := r.percentile(99)
	if err != nil {
		return nil, err
	}
	m := metrics{mP50: us(p50), mP99: us(p99), mFailed: float64(r.failures())}
	if t.isProxy() {
		m[mCPUPerReq] = us(cpu) / float64(r.Count)
	}
	return m, nil
}

func runHTTP(ctx context.Context, e *env, t *target) (metrics, error) {
	var r httpResult
	cpu, err := withCPU(t, func() (err error) {
		r, err = httpLoad(ctx, t.addrs.HTTP, e.opts.httpN, 8)
		return err
	})
	if err != nil {
		return nil, err
	}
	if r.ok == 0 {
		return nil, fmt.Errorf("http: every request failed (%d connection errors)", r.failed)
	}
	m := metrics{mRate: float64(r.ok) / r.took.Seconds(), mFailed: float64(r.failed)}
	if t.isProxy() {
		m[mCPUPerReq] = us(cpu) / float64(r.ok)
	}
	return m, nil
}

func runWS(ctx context.Context, e *env, t *target) (metrics, error) {
	conns, dialFailed, err := dialWS(ctx, []string{"ws://" + t.addrs.HTTP + "/ws"}, e.opts.wsClients, 16)
	defer closeAll(conns)
	if len(conns) == 0 {
		return nil, fmt.Errorf("websocket: no connection opened: %w", err)
	}
	var r wsResult
	cpu, err := withCPU(t, func() error {
		r = wsEcho(ctx, conns, 100*time.Millisecond, e.opts.wsMsgs, 64)
		return ctx.Err()
	})
	if err != nil {
		return nil, err
	}
	ok := r.lat.Len()
	if ok == 0 {
		return nil, fmt.Errorf("websocket: no message came back (%d sent)", r.sent)
	}
	m := metrics{mP50: us(r.lat.Percentile(50)), mP99: us(r.lat.Percentile(99)),
		mFailed: float64(dialFailed + r.failed + (e.opts.wsClients-dialFailed)*e.opts.wsMsgs - r.sent)}
	if t.isProxy() {
		m[mCPUPerMsg] = us(cpu) / float64(ok)
	}
	return m, nil
}

func runIdle(ctx context.Context, e *env, t *target) (metrics, error) {
	return holdIdle(t, "idle", func() (int, int, error, func(i int) error, func()) {
		conns, failed, err := dialWS(ctx, t.idleURLs, e.opts.idleConns, 64)
		return len(conns), failed, err, func(i int) error { return echoOnce(conns[i], []byte("still there?")) }, func() { closeAll(conns) }
	})
}

// runIdleTCP is runIdle over raw TCP: each connection echoes one byte.
func runIdleTCP(ctx context.Context, e *env, t *target) (metrics, error) {
	return holdIdle(t, "idle-tcp", func() (int, int, error, func(i int) error, func()) {
		conns, failed, err := dialTCPEcho(ctx, t.addrs.TCPEcho, e.opts.idleConns, 64)
		return len(conns), failed, err, func(i int) error { return tcpEchoByte(conns[i]) }, func() {
			for _, c := range conns {
				c.Close()
			}
		}
	})
}

// holdIdle opens connections through a freshly started proxy with open
// (their count, failures, the first error, an echo on the i-th, and how
// to close them all), holds them 2 s and reports the proxy's RSS growth
// per connection; a few of them must still echo afterwards.
func holdIdle(t *target, name string, open func() (int, int, error, func(i int) error, func())) (metrics, error) {
	time.Sleep(500 * time.Millisecond) // let the fresh proxy settle
	before, err := t.Sample()
	if err != nil {
		return nil, err
	}
	n, failed, dialErr, echo, closeAll := open()
	defer closeAll()
	if n == 0 {
		return nil, fmt.Errorf("%s: no connection opened: %w", name, dialErr)
	}
	time.Sleep(2 * time.Second)
	after, err := t.Sample()
	if err != nil {
		return nil, err
	}
	for i := 0; i < n; i += max(1, n/16) {
		if err := echo(i); err != nil {
			return nil, fmt.Errorf("%s: connection %d after holding: %w", name, i, err)
		}
	}
	return metrics{
		mKiBPerConn: float64(after.RSSBytes-before.RSSBytes) / 1024 / float64(n),
		mFailed:     float64(failed),
	}, nil
}

func bytesLabel(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}
