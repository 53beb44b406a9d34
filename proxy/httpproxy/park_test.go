package httpproxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/internal/proxytest"
	"github.com/longhaul-proxy/longhaul/proxy/readiness"
)

func dialWS(t testing.TB, addr string) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws", nil)
	if err != nil {
		t.Fatalf("dial: %v (resp %v)", err, resp)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func echoOnce(t testing.TB, c *websocket.Conn, msg string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	_, got, err := c.ReadMessage()
	if err != nil || string(got) != msg {
		t.Fatalf("echo: got %q, %v; want %q", got, err, msg)
	}
}

// TestParkedWebSockets: idle WebSockets through the listener hold no
// goroutine; they echo when a message comes, park again, and a drain
// moves them with 1012 while they are parked.
func TestParkedWebSockets(t *testing.T) {
	pk := proxytest.NewPoller(t)
	backend := startWSEcho(t)
	p := startHTTPProxy(t, Config{WebSocket: WebSocketConfig{Parker: pk, ParkAfter: 10 * time.Millisecond}},
		balancer.Policy{Kind: balancer.LeastConnections}, backend)
	const n = 20
	cs := make([]*websocket.Conn, n)
	for i := range cs {
		cs[i] = dialWS(t, p.addr)
		echoOnce(t, cs[i], fmt.Sprint("hello ", i))
	}
	proxytest.AwaitParked(t, pk, 2*n, proxytest.WSPump)
	for round := range 3 {
		for i, c := range cs {
			echoOnce(t, c, fmt.Sprintf("round %d client %d %s", round, i, strings.Repeat("x", round*5000)))
		}
		proxytest.AwaitParked(t, pk, 2*n, proxytest.WSPump)
	}
	for _, s := range p.reg.Endpoint(backend) {
		s.Migrate(time.Now().Add(5 * time.Second))
	}
	for i, c := range cs {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _, err := c.ReadMessage()
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseServiceRestart {
			t.Fatalf("client %d after the drain: got %v, want close 1012", i, err)
		}
		c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseServiceRestart, ""), time.Now().Add(time.Second))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.reg.Wait(ctx, nil); err != nil {
		t.Fatalf("sessions still registered after the drain: %v", err)
	}
	if n := pk.Parked(); n != 0 {
		t.Errorf("parked after every session ended: %d, want 0", n)
	}
}

// TestParkedWebSocketsShutdown: a listener shut down with parked sessions
// closes them at its deadline (the relay is aborted before its sockets
// close) and returns.
func TestParkedWebSocketsShutdown(t *testing.T) {
	pk := proxytest.NewPoller(t)
	backend := startWSEcho(t)
	p := startHTTPProxy(t, Config{WebSocket: WebSocketConfig{Parker: pk, ParkAfter: 10 * time.Millisecond}},
		balancer.Policy{Kind: balancer.LeastConnections}, backend)
	const n = 10
	for range n {
		echoOnce(t, dialWS(t, p.addr), "hello")
	}
	proxytest.AwaitParked(t, pk, 2*n, proxytest.WSPump)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := p.l.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: got %v, want the deadline (the clients never answer)", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Shutdown took %v with a 200ms deadline", d)
	}
	if n := pk.Parked(); n != 0 {
		t.Errorf("parked after Shutdown: %d, want 0", n)
	}
}

// BenchmarkIdleWebSocket reports the memory an idle WebSocket holds in
// the proxy, heap and goroutine stacks, with its directions parked
// (parked) or each on a goroutine (goroutines): 1,000 sessions opened
// through the listener, one echo each, then left idle. The process's
// memory includes the benchmark's clients and echo server (both with
// small buffers); their share is measured the same way without the proxy
// (direct), just before, and taken off. b.N is unused: the figure is per
// session, not per iteration.
func BenchmarkIdleWebSocket(b *testing.B) {
	const n = 1000
	var handlers sync.WaitGroup
	up := websocket.Upgrader{ReadBufferSize: 256, WriteBufferSize: 256}
	backend := startHTTPBackend(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handlers.Add(1)
		defer handlers.Done()
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			t, m, err := c.ReadMessage()
			if err != nil || c.WriteMessage(t, m) != nil {
				return
			}
		}
	}))
	dialer := websocket.Dialer{ReadBufferSize: 256, WriteBufferSize: 256}
	measure := func(b *testing.B, addr string, settle func()) float64 {
		before := memInUse()
		cs := make([]*websocket.Conn, n)
		for i := range cs {
			c, _, err := dialer.Dial("ws://"+addr+"/ws", nil)
			if err != nil {
				b.Fatal(err)
			}
			cs[i] = c
			echoOnce(b, c, "hello")
		}
		settle()
		after := memInUse()
		for _, c := range cs {
			c.Close()
		}
		handlers.Wait() // the echo server let go of them all
		return float64(int64(after)-int64(before)) / n
	}
	for range b.N {
		for _, mode := range []string{"parked", "goroutines"} {
			b.Run(mode, func(b *testing.B) {
				direct := measure(b, backend, func() {})
				cfg := Config{}
				var pk *readiness.Poller
				if mode == "parked" {
					pk = proxytest.NewPoller(b)
					cfg.WebSocket = WebSocketConfig{Parker: pk, ParkAfter: 10 * time.Millisecond}
				}
				p := startHTTPProxy(b, cfg, balancer.Policy{Kind: balancer.LeastConnections}, backend)
				per := measure(b, p.addr, func() {
					if pk != nil {
						proxytest.AwaitParked(b, pk, 2*n, proxytest.WSPump)
					}
				})
				b.ReportMetric(direct/1024, "KiB/direct-session")
				b.ReportMetric((per-direct)/1024, "KiB/session")
			})
		}
	}
}

// memInUse is the heap in use and the goroutine stacks after a GC.
func memInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc + m.StackInuse
}
