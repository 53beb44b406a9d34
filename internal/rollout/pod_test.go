package rollout_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/longhaul-proxy/longhaul/internal/wsload"
)

// acceptLog is a listener that records when each connection was accepted,
// so that a test can tell whether a pod got new connections after longhaul
// saw it terminating.
type acceptLog struct {
	net.Listener
	mu    sync.Mutex
	times []time.Time
}

func (l *acceptLog) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		now := time.Now()
		l.mu.Lock()
		l.times = append(l.times, now)
		l.mu.Unlock()
	}
	return c, err
}

// after returns how many connections were accepted after t, and the first.
func (l *acceptLog) after(t time.Time) (n int, first time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range l.times {
		if a.After(t) {
			if n == 0 {
				first = a
			}
			n++
		}
	}
	return n, first
}

func (l *acceptLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.times)
}

// pod is one backend replica: a raw TCP echo port, an HTTP/1.1 port that
// answers GETs and echoes WebSocket messages, and a gRPC port with the
// health service (Check for unary load, Watch for long-lived streams).
type pod struct {
	name                        string
	revision                    string // the version it runs, as its Deployment's pod-template-hash
	advertised                  string // the IP its EndpointSlices carry, if any
	tcp, http, grpc             *acceptLog
	tcpAddr, httpAddr, grpcAddr string

	httpSrv *http.Server
	grpcSrv *grpc.Server

	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]struct{} // raw TCP and hijacked WebSocket connections
	stopped bool

	watches   atomic.Int64 // live health Watch streams
	wsLive    atomic.Int64
	tcpLive   atomic.Int64
	requests  atomic.Int64 // HTTP GETs served
	checks    atomic.Int64 // gRPC Check calls served
	wsEchoed  atomic.Int64
	killed    int         // connections still open when the pod was stopped
	watchEnds []time.Time // when each health Watch stream ended, under mu
	stopOnce  sync.Once
	serveDone chan struct{}
}

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

func listenLog(t *testing.T) *acceptLog {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return &acceptLog{Listener: ln}
}

func startPod(t *testing.T, name string) *pod {
	t.Helper()
	p := &pod{name: name, tcp: listenLog(t), http: listenLog(t), grpc: listenLog(t),
		conns: map[net.Conn]struct{}{}, serveDone: make(chan struct{})}
	p.tcpAddr, p.httpAddr, p.grpcAddr = p.tcp.Addr().String(), p.http.Addr().String(), p.grpc.Addr().String()

	p.httpSrv = &http.Server{Handler: http.HandlerFunc(p.serveHTTP), ReadHeaderTimeout: 10 * time.Second}
	p.grpcSrv = grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(p.grpcSrv, &countingHealth{HealthServer: hs, p: p})

	var serving sync.WaitGroup
	serving.Add(3)
	go func() { defer serving.Done(); p.acceptTCP() }()
	go func() { defer serving.Done(); p.httpSrv.Serve(p.http) }()
	go func() { defer serving.Done(); p.grpcSrv.Serve(p.grpc) }()
	go func() { serving.Wait(); close(p.serveDone) }()
	t.Cleanup(p.stop)
	return p
}

func (p *pod) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *pod) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *pod) acceptTCP() {
	for {
		c, err := p.tcp.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			c.Close()
			continue
		}
		p.wg.Add(1)
		p.tcpLive.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.tcpLive.Add(-1)
			io.Copy(c, c)
			c.Close()
			p.untrack(c)
		}()
	}
}

func (p *pod) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		io.Copy(io.Discard, r.Body)
		p.requests.Add(1)
		fmt.Fprintf(w, "%s %s", p.name, r.URL.Query().Get("n"))
		return
	}
	p.wg.Add(1)
	defer p.wg.Done()
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	nc := c.NetConn()
	if !p.track(nc) {
		c.Close()
		return
	}
	p.wsLive.Add(1)
	defer p.wsLive.Add(-1)
	defer p.untrack(nc)
	defer c.Close()
	wsload.Echo(c, func() { p.wsEchoed.Add(1) })
}

// stop kills the pod: listeners and every connection closed at once.
func (p *pod) stop() {
	p.stopOnce.Do(func() {
		p.mu.Lock()
		p.stopped = true
		p.killed = len(p.conns)
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.tcp.Close()
		p.httpSrv.Close()
		p.grpcSrv.Stop()
		p.wg.Wait()
		<-p.serveDone
	})
}

// countingHealth counts live Watch streams and Check calls.
type countingHealth struct {
	healthpb.HealthServer
	p *pod
}

func (h *countingHealth) Check(ctx context.Context, in *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	h.p.checks.Add(1)
	return h.HealthServer.Check(ctx, in)
}

func (h *countingHealth) Watch(in *healthpb.HealthCheckRequest, s healthpb.Health_WatchServer) error {
	h.p.watches.Add(1)
	defer h.p.watches.Add(-1)
	defer func() {
		h.p.mu.Lock()
		h.p.watchEnds = append(h.p.watchEnds, time.Now())
		h.p.mu.Unlock()
	}()
	return h.HealthServer.Watch(in, s)
}

// streamEnds returns when the pod's Watch streams ended so far, in order.
func (p *pod) streamEnds() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.SortedFunc(slices.Values(p.watchEnds), time.Time.Compare)
}
