package tcpproxy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/internal/proxytest"
	"github.com/longhaul-proxy/longhaul/proxy/listen"
	"github.com/longhaul-proxy/longhaul/proxy/upstream"
)

// testProxy runs a TCP listener over the given endpoint addresses.
type testProxy struct {
	l      *Listener
	up     *upstream.Upstream
	reg    *upstream.Registry
	addr   string
	cancel context.CancelFunc
	done   chan error
}

func startProxy(t testing.TB, cfg Config, policy balancer.Policy, endpoints ...string) *testProxy {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "test"
	}
	reg := upstream.NewRegistry()
	up := upstream.NewUpstream(cfg.Name, policy, reg, nil)
	proxytest.SetEndpoints(t, up, endpoints...)
	l := New(cfg, up)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &testProxy{l: l, up: up, reg: reg, addr: ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- l.Serve(ctx, ln) }()
	t.Cleanup(func() {
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		l.Shutdown(sctx)
		cancel()
		if err := <-p.done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return p
}

// TestRelayBulkHalfClose pushes a large stream each way through the proxy,
// one direction after the other, so that each half-close must travel
// through the proxy before the other side starts: the backend only answers
// after it sees the client's EOF. Hashes prove no byte lost or reordered.
func TestRelayBulkHalfClose(t *testing.T) {
	size := int64(1 << 30)
	if testing.Short() {
		size = 64 << 20
	}
	wantUp, wantDown := proxytest.StreamHash(1, size), proxytest.StreamHash(2, size)
	var gotUp [32]byte
	var upN int64
	backend := proxytest.StartServer(t, func(c *net.TCPConn) {
		h := sha256.New()
		upN, _ = io.Copy(h, c) // until the client's FIN arrives through the proxy
		gotUp = [32]byte(h.Sum(nil))
		io.Copy(c, proxytest.Stream(2, size))
		c.CloseWrite()
	})
	p := startProxy(t, Config{IdleTimeout: time.Minute}, balancer.Policy{Kind: balancer.Maglev}, backend.Addr())
	c := proxytest.Dial(t, p.addr)
	errc := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, proxytest.Stream(1, size))
		if err == nil {
			err = c.CloseWrite()
		}
		errc <- err
	}()
	h := sha256.New()
	downN, err := io.Copy(h, c)
	if err != nil {
		t.Fatalf("read from proxy: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write to proxy: %v", err)
	}
	if upN != size || gotUp != wantUp {
		t.Errorf("upstream: got %d bytes hash %x, want %d bytes hash %x", upN, gotUp[:6], size, wantUp[:6])
	}
	if downN != size || [32]byte(h.Sum(nil)) != wantDown {
		t.Errorf("downstream: got %d bytes hash %x, want %d bytes hash %x", downN, h.Sum(nil)[:6], size, wantDown[:6])
	}
}

// TestRelayBothWaysAtOnce streams in both directions concurrently over
// several connections.
func TestRelayBothWaysAtOnce(t *testing.T) {
	const size = 32 << 20
	backend := proxytest.StartServer(t, func(c *net.TCPConn) {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); io.Copy(c, proxytest.Stream(4, size)); c.CloseWrite() }()
		h := sha256.New()
		io.Copy(h, c)
		if [32]byte(h.Sum(nil)) != proxytest.StreamHash(3, size) {
			t.Errorf("backend received a corrupted stream")
		}
		wg.Wait()
	})
	p := startProxy(t, Config{}, balancer.Policy{Kind: balancer.LeastConnections}, backend.Addr())
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", p.addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			// The client's upload may outlast its download: close only once
			// both are done, or the backend sees a cut stream.
			sent := make(chan struct{})
			go func() { defer close(sent); io.Copy(c, proxytest.Stream(3, size)); c.(*net.TCPConn).CloseWrite() }()
			defer func() { <-sent }()
			h := sha256.New()
			if n, err := io.Copy(h, c); err != nil || n != size || [32]byte(h.Sum(nil)) != proxytest.StreamHash(4, size) {
				t.Errorf("client: got %d bytes, err %v, hash ok %v", n, err, [32]byte(h.Sum(nil)) == proxytest.StreamHash(4, size))
			}
		}()
	}
	wg.Wait()
}

func TestDialRetryNextEndpoint(t *testing.T) {
	backend := proxytest.StartServer(t, proxytest.Echo)
	// A port with nothing listening: connect fails at once with ECONNREFUSED.
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	p := startProxy(t, Config{Key: KeyClientIPPort}, balancer.Policy{Kind: balancer.Maglev}, backend.Addr(), deadAddr)
	for i := range 20 {
		c := proxytest.Dial(t, p.addr)
		msg := fmt.Sprintf("hello %d", i)
		c.Write([]byte(msg))
		buf := make([]byte, len(msg))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
			t.Fatalf("connection %d: got %q, %v; want %q", i, buf, err, msg)
		}
		c.Close()
	}
	if backend.Accepted() != 20 {
		t.Errorf("backend saw %d connections, want 20", backend.Accepted())
	}
}

func TestNoEndpointsClosesClient(t *testing.T) {
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	p := startProxy(t, Config{}, balancer.Policy{Kind: balancer.Maglev}, deadAddr)
	c := proxytest.Dial(t, p.addr)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("got %d bytes, err %v; want the proxy to close the connection", n, err)
	}
}

// TestMaxConnectionsWait: at MaxConnections the listener stops accepting.
// Slow clients hold both slots; a well-behaved client that arrives waits
// in the backlog, neither answered nor reset, and is relayed as soon as a
// slot frees; the slow client left is not disturbed.
func TestMaxConnectionsWait(t *testing.T) {
	backend := proxytest.StartServer(t, proxytest.Echo)
	p := startProxy(t, Config{MaxConnections: 2}, balancer.Policy{Kind: balancer.Maglev}, backend.Addr())
	roundTrip := func(c net.Conn, msg string) error {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		defer c.SetDeadline(time.Time{})
		if _, err := io.WriteString(c, msg); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
			return fmt.Errorf("got %q, %v", buf, err)
		}
		return nil
	}
	slow := []*net.TCPConn{proxytest.Dial(t, p.addr), proxytest.Dial(t, p.addr)}
	for i, c := range slow {
		if err := roundTrip(c, "slow"); err != nil {
			t.Fatalf("slow client %d: %v", i, err)
		}
	}
	good := proxytest.Dial(t, p.addr)
	io.WriteString(good, "good")
	proxytest.ExpectWaiting(t, good, "a connection")
	freed := time.Now()
	slow[0].Close()
	good.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(good, buf); err != nil || string(buf) != "good" {
		t.Fatalf("the waiting client, once a slot freed: got %q, %v", buf, err)
	}
	took := time.Since(freed)
	t.Logf("relayed %v after a slot freed", took)
	if took > time.Second {
		t.Errorf("the waiting client was relayed %v after a slot freed, want within 1s", took)
	}
	if err := roundTrip(slow[1], "still"); err != nil {
		t.Errorf("the slow client that kept its slot: %v", err)
	}
	if n := p.l.Active(); n != 2 {
		t.Errorf("%d sessions active, want 2", n)
	}
}

func TestIdleTimeout(t *testing.T) {
	backend := proxytest.StartServer(t, proxytest.Echo)
	p := startProxy(t, Config{IdleTimeout: 300 * time.Millisecond}, balancer.Policy{Kind: balancer.Maglev}, backend.Addr())
	// Busy in one direction only (the backend keeps talking): not idle.
	talker := proxytest.StartServer(t, func(c *net.TCPConn) {
		for range 10 {
			if _, err := c.Write([]byte("t")); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	p2 := startProxy(t, Config{Name: "talker", IdleTimeout: 300 * time.Millisecond}, balancer.Policy{Kind: balancer.Maglev}, talker.Addr())
	c2 := proxytest.Dial(t, p2.addr)
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := io.ReadFull(c2, make([]byte, 10)); err != nil {
		t.Fatalf("one-way traffic was cut as idle after %d bytes: %v", n, err)
	}

	c := proxytest.Dial(t, p.addr)
	c.Write([]byte("a"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.ReadFull(c, make([]byte, 1))
	start := time.Now()
	_, err := c.Read(make([]byte, 1))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("got %v, want the idle connection closed", err)
	}
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Errorf("closed after %v, before the idle timeout", el)
	}
}

// TestCloseDeliversReadBytes: a session closed (by drain or shutdown) still
// delivers what it already read, and both sides see an orderly FIN.
func TestSessionCloseAndRegistry(t *testing.T) {
	got := make(chan string, 1)
	backend := proxytest.StartServer(t, func(c *net.TCPConn) {
		b, _ := io.ReadAll(c)
		got <- string(b)
	})
	p := startProxy(t, Config{}, balancer.Policy{Kind: balancer.Maglev}, backend.Addr())
	c := proxytest.Dial(t, p.addr)
	c.Write([]byte("last words"))
	var ss []upstream.Session
	deadline := time.Now().Add(5 * time.Second)
	for len(ss) == 0 && time.Now().Before(deadline) {
		ss = p.reg.Endpoint(backend.Addr())
		time.Sleep(5 * time.Millisecond)
	}
	if len(ss) != 1 {
		t.Fatalf("registry has %d sessions on %s, want 1", len(ss), backend.Addr())
	}
	if in := ss[0].Info(); in.Protocol != "tcp" || in.Endpoint != backend.Addr() || in.Listener != "test" {
		t.Errorf("got info %+v", in)
	}
	time.Sleep(50 * time.Millisecond) // let the bytes cross
	ss[0].Migrate(time.Now().Add(100 * time.Millisecond))
	if !ss[0].Info().Migrating {
		t.Errorf("Migrating not set after Migrate")
	}
	select {
	case s := <-got:
		if s != "last words" {
			t.Errorf("backend got %q, want %q", s, "last words")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("session not closed after its migrate deadline")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("client: got %v, want EOF", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.reg.Wait(ctx, nil); err != nil || p.reg.Len() != 0 {
		t.Errorf("registry still holds %d sessions: %v", p.reg.Len(), err)
	}
}

func TestProxyProtocolBothWays(t *testing.T) {
	hdrs := make(chan listen.ProxyHeader, 1)
	backend := proxytest.StartServer(t, func(c *net.TCPConn) {
		h, err := listen.ReadProxyHeader(c)
		if err != nil {
			t.Errorf("backend: %v", err)
			return
		}
		hdrs <- h
		io.Copy(c, c)
	})
	p := startProxy(t, Config{AcceptProxy: true, SendProxy: true, HeaderTimeout: time.Second},
		balancer.Policy{Kind: balancer.Maglev}, backend.Addr())
	c := proxytest.Dial(t, p.addr)
	client := netip.MustParseAddrPort("203.0.113.7:4242")
	c.Write(listen.AppendProxyV2(nil, client, netip.MustParseAddrPort("198.51.100.1:443")))
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("got %q, %v", buf, err)
	}
	if h := <-hdrs; h.Source != client {
		t.Errorf("backend saw source %v, want %v", h.Source, client)
	}

	// A client that sends no header, or garbage, is closed.
	for _, in := range []string{"", "GET / HTTP/1.1\r\n\r\n"} {
		c := proxytest.Dial(t, p.addr)
		c.Write([]byte(in))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("input %q: got %v, want the connection closed", in, err)
		}
	}
}

// TestShutdownWaitsThenCloses: Shutdown lets a session finish within its
// deadline, and closes one that does not.
func TestShutdownWaitsThenCloses(t *testing.T) {
	backend := proxytest.StartServer(t, proxytest.Echo)
	p := startProxy(t, Config{}, balancer.Policy{Kind: balancer.Maglev}, backend.Addr())
	c := proxytest.Dial(t, p.addr)
	c.Write([]byte("x"))
	io.ReadFull(c, make([]byte, 1))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := p.l.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: got %v, want deadline exceeded (a session was still open)", err)
	}
	if el := time.Since(start); el < 250*time.Millisecond || el > 5*time.Second {
		t.Errorf("Shutdown took %v, want about the 300ms deadline", el)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("client: got %v, want EOF after shutdown", err)
	}
	if _, err := net.DialTimeout("tcp", p.addr, time.Second); err == nil {
		t.Errorf("listener still accepting after Shutdown")
	}
}

// TestSessionsSpreadAcrossEndpoints: with client-ip-port keys, many
// connections from one IP spread over every endpoint.
func TestSessionsSpreadAcrossEndpoints(t *testing.T) {
	var addrs []string
	var servers []*proxytest.Server
	for range 3 {
		s := proxytest.StartServer(t, proxytest.Echo)
		servers = append(servers, s)
		addrs = append(addrs, s.Addr())
	}
	p := startProxy(t, Config{Key: KeyClientIPPort}, balancer.Policy{Kind: balancer.Maglev, BoundedLoad: 1.25, LoadFloor: balancer.NoLoadFloor}, addrs...)
	var conns []*net.TCPConn
	for range 30 {
		c := proxytest.Dial(t, p.addr)
		c.Write([]byte("x"))
		io.ReadFull(c, make([]byte, 1))
		conns = append(conns, c)
	}
	var got []string
	for _, s := range servers {
		got = append(got, fmt.Sprint(s.Accepted()))
		if n := s.Accepted(); n < 5 || n > 13 { // cap ceil(1.25*30/3)=13
			t.Errorf("endpoint got %d of 30 sessions", n)
		}
	}
	t.Logf("sessions per endpoint: %s", strings.Join(got, " "))
}

// TestMigrationOutcomes: a session that leaves before its deadline is
// "moved", one still open at the deadline is closed and "forced", and in
// immediate mode it is "closed" at once; each is reported once, with the
// time it took.
func TestMigrationOutcomes(t *testing.T) {
	backend := proxytest.StartServer(t, proxytest.Echo)
	for _, tc := range []struct {
		name      string
		immediate bool
		leave     bool // the client closes by itself before the deadline
		want      string
		minTook   time.Duration
	}{
		{"moved", false, true, upstream.OutcomeMoved, 0},
		{"forced", false, false, upstream.OutcomeForced, 300 * time.Millisecond},
		{"immediate", true, false, upstream.OutcomeClosed, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, Config{DrainImmediate: tc.immediate}, balancer.Policy{Kind: balancer.Maglev}, backend.Addr())
			ends := make(chan upstream.MigrationEnd, 4)
			p.reg.OnMigrationEnd = func(e upstream.MigrationEnd) { ends <- e }
			c := proxytest.Dial(t, p.addr)
			c.Write([]byte("x"))
			io.ReadFull(c, make([]byte, 1))
			ss := p.reg.Endpoint(backend.Addr())
			if len(ss) != 1 {
				t.Fatalf("%d sessions registered, want 1", len(ss))
			}
			ss[0].Migrate(time.Now().Add(300 * time.Millisecond))
			ss[0].Migrate(time.Now()) // a second request changes nothing
			if in := ss[0].Info(); !in.Migrating || in.Deadline.IsZero() {
				t.Errorf("info after Migrate: %+v", in)
			}
			if tc.leave {
				c.Close()
			} else {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Read(make([]byte, 1)); err != io.EOF {
					t.Errorf("client: got %v, want EOF from the proxy", err)
				}
			}
			select {
			case e := <-ends:
				if e.Outcome != tc.want || e.Took < tc.minTook || e.Info.Protocol != "tcp" {
					t.Errorf("got outcome %q after %v (%s), want %q after at least %v", e.Outcome, e.Took, e.Info.Protocol, tc.want, tc.minTook)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no migration end reported")
			}
			select {
			case e := <-ends:
				t.Errorf("a second end reported: %+v", e)
			case <-time.After(20 * time.Millisecond):
			}
		})
	}
}

// TestMaxConnectionsPerClient: above its per-client bound, a client's next
// connection is closed at once and counted; another address is served;
// the slot comes back when one of the client's connections ends.
func TestMaxConnectionsPerClient(t *testing.T) {
	hold := make(chan struct{})
	backend := proxytest.StartServer(t, func(c *net.TCPConn) { c.Write([]byte("x")); <-hold })
	defer close(hold)
	tp := startProxy(t, Config{MaxConnectionsPerClient: 2, HalfClosedTimeout: 200 * time.Millisecond}, balancer.Policy{Kind: balancer.Maglev}, backend.Addr())
	proxytest.CheckPerClientLimit(t, tp.addr, tp.l.metrics.Rejected.WithLabelValues(tp.l.cfg.Name, "per_client"), func(c net.Conn) error {
		_, err := io.ReadFull(c, make([]byte, 1))
		return err
	})
}
