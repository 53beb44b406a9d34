package tcpproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/internal/proxytest"
)

const testPark = 10 * time.Millisecond

// TestIdleSessionsPark: idle TCP sessions park both directions and hold
// no goroutine; bytes either way wake them, are relayed, and they park
// again; the client's half-close wakes its direction and travels on.
func TestIdleSessionsPark(t *testing.T) {
	pk := proxytest.NewPoller(t)
	backend := proxytest.StartServer(t, proxytest.Echo)
	p := startProxy(t, Config{Parker: pk, Park: testPark}, balancer.Policy{Kind: balancer.Maglev}, backend.Addr())
	const n = 10
	var cs []*net.TCPConn
	for range n {
		c := proxytest.Dial(t, p.addr)
		if err := proxytest.EchoRound(c, "hello"); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	proxytest.AwaitParked(t, pk, 2*n, proxytest.TCPHalf)
	for round := range 3 {
		for i, c := range cs {
			if err := proxytest.EchoRound(c, strings.Repeat("x", 1+round*3000)); err != nil {
				t.Fatalf("round %d session %d: %v", round, i, err)
			}
		}
		proxytest.AwaitParked(t, pk, 2*n, proxytest.TCPHalf)
	}
	// The echo server answers a half-close with its own: both FINs
	// travel through the parked directions, and the sessions end.
	for _, c := range cs {
		c.CloseWrite()
	}
	for _, c := range cs {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
			t.Fatalf("after the half-close: %q, %v; want EOF", b, err)
		}
	}
	waitSessionsEnded(t, p)
	if got := pk.Parked(); got != 0 {
		t.Errorf("parked after the sessions ended: %d", got)
	}
}

// TestParkedSessionTimers: the timers of a parked session still end it:
// the idle timeout, a drain's deadline, and Shutdown's.
func TestParkedSessionTimers(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		pk := proxytest.NewPoller(t)
		backend := proxytest.StartServer(t, proxytest.Echo)
		p := startProxy(t, Config{Parker: pk, Park: testPark, IdleTimeout: 300 * time.Millisecond}, balancer.Policy{Kind: balancer.Maglev}, backend.Addr())
		c := proxytest.Dial(t, p.addr)
		if err := proxytest.EchoRound(c, "a"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		proxytest.AwaitParked(t, pk, 2, proxytest.TCPHalf)
		took := proxytest.WaitClosed(t, c, c, start)
		proxytest.AssertWithin(t, "the idle parked session closed", took, 250*time.Millisecond, 2*time.Second)
	})
	t.Run("drain deadline", func(t *testing.T) {
		pk := proxytest.NewPoller(t)
		backend := proxytest.StartServer(t, proxytest.Echo)
		p := startProxy(t, Config{Parker: pk, Park: testPark}, balancer.Policy{Kind: balancer.Maglev}, backend.Addr())
		c := proxytest.Dial(t, p.addr)
		if err := proxytest.EchoRound(c, "a"); err != nil {
			t.Fatal(err)
		}
		proxytest.AwaitParked(t, pk, 2, proxytest.TCPHalf)
		start := time.Now()
		for _, s := range p.reg.Endpoint(backend.Addr()) {
			s.Migrate(start.Add(200 * time.Millisecond))
		}
		took := proxytest.WaitClosed(t, c, c, start)
		proxytest.AssertWithin(t, "the parked session closed at its drain deadline", took, 150*time.Millisecond, 2*time.Second)
		waitSessionsEnded(t, p)
	})
	t.Run("shutdown", func(t *testing.T) {
		pk := proxytest.NewPoller(t)
		backend := proxytest.StartServer(t, proxytest.Echo)
		p := startProxy(t, Config{Parker: pk, Park: testPark}, balancer.Policy{Kind: balancer.Maglev}, backend.Addr())
		for range 5 {
			if err := proxytest.EchoRound(proxytest.Dial(t, p.addr), "a"); err != nil {
				t.Fatal(err)
			}
		}
		proxytest.AwaitParked(t, pk, 10, proxytest.TCPHalf)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		if err := p.l.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown: %v, want its deadline (the clients stay)", err)
		}
		proxytest.AssertWithin(t, "Shutdown with parked sessions", time.Since(start), 150*time.Millisecond, 3*time.Second)
		if got := pk.Parked(); got != 0 {
			t.Errorf("parked after Shutdown: %d", got)
		}
	})
}

// TestParkedKeepAlive: a session that parks before keepAliveAfter turns
// its endpoint's keep-alive probes on as it parks (no goroutine is left
// to do it at the threshold).
func TestParkedKeepAlive(t *testing.T) {
	sessions := captureSessions(t)
	pk := proxytest.NewPoller(t)
	backend := proxytest.StartServer(t, proxytest.Echo)
	p := startProxy(t, Config{Parker: pk, Park: testPark, KeepAlive: 7 * time.Second}, balancer.Policy{Kind: balancer.Maglev}, backend.Addr())
	c := proxytest.Dial(t, p.addr)
	if err := proxytest.EchoRound(c, "a"); err != nil {
		t.Fatal(err)
	}
	s := nextSession(t, sessions)
	proxytest.AwaitParked(t, pk, 2, proxytest.TCPHalf)
	if got := keepAliveOpts(t, s.backendTCP); got[0] != 1 || got[1] != 7 {
		t.Errorf("parked session's endpoint socket: keep-alive, idle, interval, count %v, want on with 7s", got)
	}
}

// TestBulkDoesNotPark: a direction that turned to splicing keeps its
// goroutine (bulk transfers are busy), and the data arrives whole.
func TestBulkDoesNotPark(t *testing.T) {
	pk := proxytest.NewPoller(t)
	backend := proxytest.StartServer(t, proxytest.Echo)
	p := startProxy(t, Config{Parker: pk, Park: testPark}, balancer.Policy{Kind: balancer.Maglev}, backend.Addr())
	c := proxytest.Dial(t, p.addr)
	const size = 4 << 20
	go func() { io.Copy(c, proxytest.Stream(1, size)) }()
	got := make([]byte, size)
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if want, err := io.ReadAll(proxytest.Stream(1, size)); err != nil || !bytes.Equal(got, want) {
		t.Fatal("bulk data changed through the proxy")
	}
	// Both directions spliced (the echo sends the bulk back); idle now
	// for many times the park wait, they stay on their goroutines.
	time.Sleep(10 * testPark)
	if got, running := pk.Parked(), proxytest.Goroutines(t, proxytest.TCPHalf); got != 0 || running != 2 {
		t.Errorf("parked %d sockets, %d directions running; want 0 and 2 (spliced directions do not park)", got, running)
	}
}
