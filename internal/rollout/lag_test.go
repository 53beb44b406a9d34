package rollout_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/longhaul-proxy/longhaul/internal/app"
)

// l4 plays a Kubernetes Service (kube-proxy) for one port of longhaul: a
// loopback listener that sends each new connection to the next of its
// current backends, round-robin, and copies bytes both ways (half-closes
// passed on). Its backend list changes only when the test says so, which is
// how a lagging endpoints update is played. Connections already forwarded
// stay forwarded after their backend leaves the list, as conntrack keeps
// them.
//
// Lock order: mu only. Every goroutine it starts is counted in wg and ends
// by close at the latest; at most maxL4Conns connections are forwarded at
// once.
type l4 struct {
	ln  net.Listener
	sem chan struct{} // one token per forwarded connection
	wg  sync.WaitGroup

	mu       sync.Mutex
	backends []l4Backend
	next     int
	conns    map[net.Conn]struct{} // both sides of every forwarded connection
	routes   map[string]string     // client address -> backend name
	times    []time.Time           // when each connection was forwarded
	closed   bool
	failures []string // first connections the balancer could not forward

	forwarded, failed atomic.Int64
}

type l4Backend struct{ name, addr string }

const maxL4Conns = 4096

func newL4(t *testing.T) *l4 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &l4{ln: ln, sem: make(chan struct{}, maxL4Conns), conns: map[net.Conn]struct{}{}, routes: map[string]string{}}
	b.wg.Go(b.accept)
	t.Cleanup(b.close)
	return b
}

func (b *l4) addr() string { return b.ln.Addr().String() }

// add puts a backend into the list.
func (b *l4) add(name, addr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.backends = append(b.backends, l4Backend{name, addr})
}

// remove takes a backend out of the list; its connections stay.
func (b *l4) remove(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.backends = slices.DeleteFunc(b.backends, func(e l4Backend) bool { return e.name == name })
}

// route returns the backend a client connection (by the client's address)
// was sent to, or "".
func (b *l4) route(client string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.routes[client]
}

// forwardedBetween returns the times of the connections forwarded in
// [from, to].
func (b *l4) forwardedBetween(from, to time.Time) []time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []time.Time
	for _, at := range b.times {
		if !at.Before(from) && !at.After(to) {
			out = append(out, at)
		}
	}
	return out
}

func (b *l4) fail(format string, args ...any) {
	b.failed.Add(1)
	b.mu.Lock()
	if len(b.failures) < 5 {
		b.failures = append(b.failures, fmt.Sprintf(format, args...))
	}
	b.mu.Unlock()
}

func (b *l4) accept() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return // closed
		}
		select {
		case b.sem <- struct{}{}:
		default:
			b.fail("more than %d connections", maxL4Conns)
			c.Close()
			continue
		}
		b.wg.Go(func() {
			defer func() { <-b.sem }()
			b.forward(c)
		})
	}
}

// track registers conns to be closed by close; it reports false (and
// closes them) once the balancer is closed.
func (b *l4) track(cs ...net.Conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		b.conns[c] = struct{}{}
	}
	return true
}

func (b *l4) untrack(cs ...net.Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range cs {
		c.Close()
		delete(b.conns, c)
	}
}

func (b *l4) forward(c net.Conn) {
	if !b.track(c) {
		return
	}
	defer b.untrack(c)
	b.mu.Lock()
	var to l4Backend
	if n := len(b.backends); n > 0 {
		to = b.backends[b.next%n]
		b.next++
	}
	b.mu.Unlock()
	if to.addr == "" {
		b.fail("no backend for %s", c.RemoteAddr())
		return
	}
	up, err := net.DialTimeout("tcp", to.addr, 5*time.Second)
	if err != nil {
		b.fail("%s: %s: %v", time.Now().Format("15:04:05.000"), to.name, err)
		return
	}
	if !b.track(up) {
		return
	}
	defer b.untrack(up)
	b.mu.Lock()
	b.routes[c.RemoteAddr().String()] = to.name
	b.times = append(b.times, time.Now())
	b.mu.Unlock()
	b.forwarded.Add(1)
	done := make(chan struct{})
	go func() { // owned by forward, which waits for it
		defer close(done)
		pipe(up, c)
	}()
	pipe(c, up)
	<-done
}

// pipe copies src to dst; at src's end it half-closes dst, and on an error
// closes both, so that the other direction ends too.
func pipe(dst, src net.Conn) {
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		src.Close()
		return
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

// close stops accepting, closes every forwarded connection and waits for
// every goroutine.
func (b *l4) close() {
	b.ln.Close()
	b.mu.Lock()
	b.closed = true
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// viaBalancers sends every client to the balancer of its listener.
type viaBalancers struct {
	lb    map[string]*l4
	conns []*grpc.ClientConn
}

func (v *viaBalancers) addr(listener string, _ int) string   { return v.lb[listener].addr() }
func (v *viaBalancers) grpcConn(client int) *grpc.ClientConn { return v.conns[client%len(v.conns)] }

// streamEnd is how one gRPC stream ended, and on which replica.
type streamEnd struct {
	at      time.Time
	replica string
	code    codes.Code
	err     string
}

// streamLog is a streamObserver: it records gRPC stream ends, and how many
// streams are open on each replica (by the stream's connection, as the
// balancer routed it).
type streamLog struct {
	lb   *l4
	mu   sync.Mutex
	ends []streamEnd
	live map[string]int // by replica
}

func (l *streamLog) open(ctx context.Context) func(error) {
	replica := "unknown"
	if p, ok := peer.FromContext(ctx); ok && p.LocalAddr != nil {
		if r := l.lb.route(p.LocalAddr.String()); r != "" {
			replica = r
		}
	}
	l.mu.Lock()
	l.live[replica]++
	l.mu.Unlock()
	return func(err error) {
		l.mu.Lock()
		l.live[replica]--
		l.ends = append(l.ends, streamEnd{at: time.Now(), replica: replica, code: status.Code(err), err: err.Error()})
		l.mu.Unlock()
	}
}

// liveOn returns how many streams are open on replica, and in all.
func (l *streamLog) liveOn(replica string) (on, all int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for r, n := range l.live {
		all += n
		if r == replica {
			on += n
		}
	}
	return on, all
}

// on returns the ends on replica, in time order.
func (l *streamLog) on(replica string) []streamEnd {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []streamEnd
	for _, e := range l.ends {
		if e.replica == replica {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b streamEnd) int { return a.at.Compare(b.at) })
	return out
}

// byCode counts ends by code, for a log line: "Unavailable 12, Internal 1".
func byCode(ends []streamEnd) (string, map[codes.Code]int) {
	n := map[codes.Code]int{}
	for _, e := range ends {
		n[e.code]++
	}
	var parts []string
	for c, k := range n {
		parts = append(parts, fmt.Sprintf("%v %d", c, k))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", "), n
}

// watchConnectivity counts the times cc went into TRANSIENT_FAILURE: a
// failed connect.
func watchConnectivity(ctx context.Context, cc *grpc.ClientConn, failures *atomic.Int64) {
	for range maxIterations {
		s := cc.GetState()
		if s == connectivity.TransientFailure {
			failures.Add(1)
		}
		if !cc.WaitForStateChange(ctx, s) {
			return
		}
	}
}

// TestRollingReplicasLaggingBalancer rolls two longhaul replicas behind an
// L4 balancer whose endpoints update lags each SIGTERM by 2 s, under gRPC
// and WebSocket load, with longhaul's default shutdown delay covering the
// lag: no connection fails, no call fails, no WebSocket message is lost or
// duplicated, every WebSocket moves on 1012, and the gRPC streams of a
// stopping replica end with UNAVAILABLE, spread over its drain window.
func TestRollingReplicasLaggingBalancer(t *testing.T) {
	began := time.Now()
	const (
		lag          = 2 * time.Second // SIGTERM to the balancer's update
		timeout      = 4 * time.Second // drain timeout
		drainWindow  = timeout / 2     // the default drain window
		clientConns  = 12
		exitBound    = app.DefaultShutdownDelay + timeout + 3*time.Second
		reconnectMax = 30 * time.Second
	)
	const streams = 24

	pods := []*pod{startPod(t, "pod-0"), startPod(t, "pod-1")}
	lb := map[string]*l4{"grpc": newL4(t), "web": newL4(t)}
	replica := func(name string) *instance {
		// WebSocket clients get close 1012 (the default) when they move.
		in := startApp(t, staticConfig(t, pods, timeout, "web", "grpc"),
			app.Options{ShutdownDelay: app.DefaultShutdownDelay})
		for l, b := range lb {
			b.add(name, in.a.ListenerAddr(l).String())
		}
		return in
	}
	replicas := map[string]*instance{"A": replica("A"), "B": replica("B")}

	tg := &viaBalancers{lb: lb}
	for range clientConns {
		tg.conns = append(tg.conns, grpcDial(t, lb["grpc"].addr()))
	}
	st := new(stats)
	sl := &streamLog{lb: lb["grpc"], live: map[string]int{}}
	spec := loadSpec{unary: 6, streams: streams, ws: 300, wsInterval: 500 * time.Millisecond, streamWatch: sl}
	var connectFail atomic.Int64
	loadCtx, cancelLoad := context.WithTimeout(context.Background(), 2*time.Minute)
	var extra sync.WaitGroup
	for _, cc := range tg.conns {
		extra.Go(func() { watchConnectivity(loadCtx, cc, &connectFail) })
	}
	stopLoad := runLoad(loadCtx, t, tg, spec, st)
	stopAll := sync.OnceFunc(func() { cancelLoad(); stopLoad(); extra.Wait() })
	t.Cleanup(stopAll)

	// waitLoad waits until every WebSocket client is connected and every
	// stream open (again).
	// stream open (again), none on gone.
	waitLoad := func(gone string) {
		t.Helper()
		deadline := time.Now().Add(reconnectMax)
		for {
			on, all := sl.liveOn(gone)
			if st.wsUp.Load() == int64(spec.ws) && on == 0 && all == streams {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d WebSocket clients and %d of %d streams up, %d on %q: %s", st.wsUp.Load(), spec.ws,
					all, streams, on, gone, st.Errors())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitLoad("")

	replicaMoves := 0 // WebSocket sessions the stopped replicas recorded moved
	// roll starts next, stops old through SIGTERM and takes old out of the
	// balancers lag later.
	roll := func(oldName, nextName string) {
		t.Helper()
		replicas[nextName] = replica(nextName)
		old := replicas[oldName]
		ws := 0
		for _, s := range old.a.Sessions().Infos() {
			if s.Protocol == "websocket" {
				ws++
			}
		}
		onOld, _ := sl.liveOn(oldName)
		if ws == 0 || onOld == 0 {
			t.Errorf("%s had %d WebSocket sessions and %d gRPC streams to move, want some of each", oldName, ws, onOld)
		}
		unaryBefore, movedBefore := st.unaryOK.Load(), st.wsRestart.Load()
		sigterm := time.Now()
		t.Logf("%s: SIGTERM to %s with %d WebSocket sessions and %d gRPC streams; %s joined the balancers",
			sigterm.Format("15:04:05.000"), oldName, ws, onOld, nextName)
		exited := make(chan error, 1)
		go func() { exited <- old.stop(30 * time.Second) }() // joined below
		lagged := time.NewTimer(lag)
		select {
		case <-lagged.C:
		case err := <-exited:
			t.Errorf("%s's Run returned before the balancer's update (%v): %v", oldName, time.Since(sigterm), err)
			exited <- err
		}
		lagged.Stop()
		for _, b := range lb {
			b.remove(oldName)
		}
		t.Logf("%s: %s out of the balancers", time.Now().Format("15:04:05.000"), oldName)
		if err := <-exited; err != nil {
			t.Fatalf("%s: %v", oldName, err)
		}
		t.Logf("%s: %s's Run returned %v after SIGTERM (shutdown delay %v, drain timeout %v)",
			time.Now().Format("15:04:05.000"), oldName, old.took.Round(time.Millisecond), app.DefaultShutdownDelay, timeout)
		if old.took > exitBound {
			t.Errorf("%s took %v to exit, more than %v", oldName, old.took, exitBound)
		}
		if n := old.a.Sessions().Len(); n != 0 {
			t.Errorf("%d sessions left on %s after Run returned: %v", n, oldName, old.a.Sessions().Infos())
		}
		old.mig.report(t)
		moved, forced, closed := old.mig.outcome("websocket", "moved"), old.mig.outcome("websocket", "forced"), old.mig.outcome("websocket", "closed")
		replicaMoves += moved
		if moved < ws || forced != 0 || closed != 0 {
			t.Errorf("%s's WebSocket migrations: %d moved, %d forced, %d closed; want at least %d moved and none forced or closed",
				oldName, moved, forced, closed, ws)
		}
		waitLoad(oldName)
		ends := sl.on(oldName)
		codesLine, n := byCode(ends)
		var spread time.Duration
		if len(ends) > 0 {
			spread = ends[len(ends)-1].at.Sub(ends[0].at)
			t.Logf("%s: %d gRPC streams ended (%s) from %v to %v after SIGTERM, spread %v; %d unary calls and %d WebSocket moves on 1012 during the step",
				oldName, len(ends), codesLine, ends[0].at.Sub(sigterm).Round(time.Millisecond),
				ends[len(ends)-1].at.Sub(sigterm).Round(time.Millisecond), spread.Round(time.Millisecond),
				st.unaryOK.Load()-unaryBefore, st.wsRestart.Load()-movedBefore)
		}
		// The GOAWAYs' spread: when the gRPC clients opened their next
		// connections (each at its next call after its first GOAWAY).
		if re := lb["grpc"].forwardedBetween(sigterm, sigterm.Add(exitBound)); len(re) > 0 {
			after := make([]string, len(re))
			for i, at := range re {
				after[i] = at.Sub(sigterm).Round(time.Millisecond).String()
			}
			t.Logf("%s: %d gRPC connections opened through the balancer after SIGTERM, at %s", oldName, len(re), strings.Join(after, " "))
		}
		switch {
		case len(ends) < onOld:
			t.Errorf("%d gRPC streams ended on %s, want at least the %d open at SIGTERM", len(ends), oldName, onOld)
		case n[codes.Unavailable] != len(ends):
			t.Errorf("%s's gRPC streams ended %s, want all UNAVAILABLE; first: %s", oldName, codesLine, ends[0].err)
		case spread < drainWindow/4:
			t.Errorf("%s's %d gRPC streams all ended within %v, want spread over at least %v of its %v drain window",
				oldName, len(ends), spread, drainWindow/4, drainWindow)
		}
		if len(ends) > 0 && ends[0].at.Sub(sigterm) < app.DefaultShutdownDelay {
			t.Errorf("a gRPC stream on %s ended %v after SIGTERM, within the shutdown delay", oldName, ends[0].at.Sub(sigterm))
		}
	}
	roll("A", "C")
	roll("B", "D")

	// Every WebSocket move reconnected once, and no other connect was made.
	connected, moved := st.wsConnected.Load(), st.wsMoved.Load()
	stopAll()
	var wg sync.WaitGroup // C and D stop at once, so the cleanup has nothing to wait for
	for _, n := range []string{"C", "D"} {
		wg.Go(func() {
			if err := replicas[n].stop(30 * time.Second); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	t.Logf("run took %v", time.Since(began).Round(time.Millisecond))
	t.Logf("gRPC unary:   %d ok, %d failed; %d connects failed (TRANSIENT_FAILURE)", st.unaryOK.Load(), st.unaryFail.Load(), connectFail.Load())
	all, _ := byCode(sl.ends)
	t.Logf("gRPC streams: %d opened, %d messages, ends by code: %s; %d failed", st.streamOpened.Load(), st.streamMsgs.Load(), all, st.streamFail.Load())
	t.Logf("WebSocket:    %d connections, %d messages echoed in order, %d moved (%d on 1012), %d other closes, %d failed dials, %d lost, %d duplicated",
		connected, st.wsMsgs.Load(), moved, st.wsRestart.Load(), st.wsUnclean.Load(), st.wsDialFail.Load(), st.wsLost.Load(), st.wsDup.Load())
	for l, b := range lb {
		b.mu.Lock()
		t.Logf("balancer %-4s: %d connections forwarded, %d not forwarded %v", l, b.forwarded.Load(), b.failed.Load(), b.failures)
		b.mu.Unlock()
	}
	if e := st.Errors(); e != "" {
		t.Logf("first errors by kind:%s", e)
	}
	for _, e := range sl.ends {
		if e.code != codes.Unavailable || (e.replica != "A" && e.replica != "B") {
			t.Errorf("gRPC stream on %q ended %s: %s", e.replica, e.at.Format("15:04:05.000"), e.err)
		}
	}
	for _, z := range []struct {
		what string
		n    int64
	}{
		{"failed gRPC unary calls", st.unaryFail.Load()},
		{"gRPC streams failed or ended with a code other than UNAVAILABLE", st.streamFail.Load()},
		{"failed gRPC connects", connectFail.Load()},
		{"connections the balancers could not forward", lb["grpc"].failed.Load() + lb["web"].failed.Load()},
		{"failed WebSocket dials", st.wsDialFail.Load()},
		{"WebSocket connections closed other than by 1012", st.wsUnclean.Load() + moved - st.wsRestart.Load()},
		{"lost WebSocket messages", st.wsLost.Load()},
		{"duplicated WebSocket messages", st.wsDup.Load()},
	} {
		if z.n != 0 {
			t.Errorf("%d %s, want 0", z.n, z.what)
		}
	}
	if st.wsRestart.Load() != int64(replicaMoves) {
		t.Errorf("the clients saw %d closes 1012, the stopped replicas moved %d WebSocket sessions", st.wsRestart.Load(), replicaMoves)
	}
	if connected != int64(spec.ws)+moved {
		t.Errorf("%d WebSocket connections for %d clients and %d moves: not every move reconnected once", connected, spec.ws, moved)
	}
	if st.unaryOK.Load() == 0 || st.wsMsgs.Load() == 0 || st.streamMsgs.Load() == 0 {
		t.Error("the load did not run")
	}
	if errors.Is(loadCtx.Err(), context.DeadlineExceeded) {
		t.Error("the load's time bound ended it before the rollout did")
	}
}
