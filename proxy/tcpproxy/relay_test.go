package tcpproxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/internal/proxytest"
	"github.com/longhaul-proxy/longhaul/proxy/listen"
)

// captureSessions hands over each session the proxies of the test start.
// Call it before startProxy: its cleanup then runs after the proxies'.
func captureSessions(t *testing.T) <-chan *tcpSession {
	t.Helper()
	ch := make(chan *tcpSession, 16)
	testHookRelay = func(s *tcpSession, up bool) {
		if up {
			ch <- s
		}
	}
	t.Cleanup(func() { testHookRelay = nil })
	return ch
}

// nextSession returns the next session started, within 5s.
func nextSession(t *testing.T, ch <-chan *tcpSession) *tcpSession {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no session started within 5s")
		return nil
	}
}

// waitSessionsEnded waits until p's registry holds no session.
func waitSessionsEnded(t *testing.T, p *testProxy) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.reg.Wait(ctx, nil); err != nil {
		t.Fatalf("sessions still open: %v", err)
	}
}

// TestRelayReadsFirstSplicesBulk: a short session's bytes go by read and
// write, and so do request/response exchanges smaller than the buffer; a
// bulk transfer switches each direction to splice, every byte arriving in
// order across the switch.
func TestRelayReadsFirstSplicesBulk(t *testing.T) {
	sessions := captureSessions(t)
	t.Run("short", func(t *testing.T) {
		backend := proxytest.StartServer(t, func(c *net.TCPConn) {
			var b [1]byte
			if _, err := io.ReadFull(c, b[:]); err == nil {
				c.Write(b[:])
			}
		})
		p := startProxy(t, Config{}, balancer.Policy{Kind: balancer.Maglev}, backend.Addr())
		c := proxytest.Dial(t, p.addr)
		c.Write([]byte{'x'})
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if b, err := io.ReadAll(c); err != nil || string(b) != "x" {
			t.Fatalf("got %q, %v; want x then EOF", b, err)
		}
		c.Close()
		s := nextSession(t, sessions)
		waitSessionsEnded(t, p)
		if s.spliced[0].Load() || s.spliced[1].Load() {
			t.Errorf("a 1-byte session spliced (client's direction %v, endpoint's %v)", s.spliced[0].Load(), s.spliced[1].Load())
		}
		if s.bytesIn.Load() != 1 || s.bytesOut.Load() != 1 || s.end != "eof" {
			t.Errorf("bytes in %d, out %d, end %q; want 1, 1, eof", s.bytesIn.Load(), s.bytesOut.Load(), s.end)
		}
	})
	t.Run("exchanges under the buffer", func(t *testing.T) {
		backend := proxytest.StartServer(t, proxytest.Echo)
		p := startProxy(t, Config{}, balancer.Policy{Kind: balancer.Maglev}, backend.Addr())
		c := proxytest.Dial(t, p.addr)
		msg := string(bytes.Repeat([]byte{'m'}, smallBuf/4))
		for i := range 20 {
			if err := proxytest.EchoRound(c, msg); err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
		}
		s := nextSession(t, sessions)
		if s.spliced[0].Load() || s.spliced[1].Load() {
			t.Errorf("exchanges of %d bytes spliced (client's direction %v, endpoint's %v)", len(msg), s.spliced[0].Load(), s.spliced[1].Load())
		}
	})
	t.Run("bulk", func(t *testing.T) {
		const size = 16 << 20
		wantUp, wantDown := proxytest.StreamHash(3, size), proxytest.StreamHash(4, size)
		var gotUp [32]byte
		var upN int64
		backend := proxytest.StartServer(t, func(c *net.TCPConn) {
			h := sha256.New()
			upN, _ = io.Copy(h, c)
			gotUp = [32]byte(h.Sum(nil))
			io.Copy(c, proxytest.Stream(4, size))
			c.CloseWrite()
		})
		p := startProxy(t, Config{}, balancer.Policy{Kind: balancer.Maglev}, backend.Addr())
		c := proxytest.Dial(t, p.addr)
		errc := make(chan error, 1)
		go func() {
			_, err := io.Copy(c, proxytest.Stream(3, size))
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
		c.Close()
		s := nextSession(t, sessions)
		waitSessionsEnded(t, p)
		if upN != size || gotUp != wantUp || downN != size || [32]byte(h.Sum(nil)) != wantDown {
			t.Errorf("up %d bytes (hash ok %v), down %d bytes (hash ok %v); want %d each way, in order",
				upN, gotUp == wantUp, downN, [32]byte(h.Sum(nil)) == wantDown, size)
		}
		if !s.spliced[0].Load() || !s.spliced[1].Load() {
			t.Errorf("a %d-byte transfer did not switch to splice (client's direction %v, endpoint's %v)", size, s.spliced[0].Load(), s.spliced[1].Load())
		}
		if s.bytesIn.Load() != size || s.bytesOut.Load() != size {
			t.Errorf("bytes in %d, out %d; want %d each", s.bytesIn.Load(), s.bytesOut.Load(), size)
		}
	})
}

// keepAliveOpts reads c's keep-alive options: on, idle, interval, count.
func keepAliveOpts(t *testing.T, c *net.TCPConn) [4]int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var out [4]int
	var gerr error
	cerr := rc.Control(func(fd uintptr) {
		for i, o := range [][2]int{
			{unix.SOL_SOCKET, unix.SO_KEEPALIVE}, {unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},
			{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL}, {unix.IPPROTO_TCP, unix.TCP_KEEPCNT},
		} {
			var e error
			if out[i], e = unix.GetsockoptInt(int(fd), o[0], o[1]); e != nil {
				gerr = e
			}
		}
	})
	if cerr != nil || gerr != nil {
		t.Fatalf("getsockopt: %v, %v", cerr, gerr)
	}
	return out
}

// TestEndpointKeepAliveOnceSessionLived: a session that lived
// keepAliveAfter has the listener's keep-alive probes on its endpoint
// socket, with or without an idle timeout, and relays on; one that ends
// before sets none; a listener with its own Dial leaves them to it.
func TestEndpointKeepAliveOnceSessionLived(t *testing.T) {
	sessions := captureSessions(t)
	setAfter := func(t *testing.T, d time.Duration) {
		old := keepAliveAfter
		keepAliveAfter = d
		t.Cleanup(func() { keepAliveAfter = old })
	}
	for _, idle := range []time.Duration{0, time.Hour} {
		t.Run("idle "+idle.String(), func(t *testing.T) {
			setAfter(t, 50*time.Millisecond)
			set := make(chan *tcpSession, 1)
			testHookKeepAlive = func(s *tcpSession) { set <- s }
			t.Cleanup(func() { testHookKeepAlive = nil })
			backend := proxytest.StartServer(t, proxytest.Echo)
			p := startProxy(t, Config{KeepAlive: 7 * time.Second, IdleTimeout: idle}, balancer.Policy{Kind: balancer.Maglev}, backend.Addr())
			c := proxytest.Dial(t, p.addr)
			if err := proxytest.EchoRound(c, "before"); err != nil {
				t.Fatal(err)
			}
			s := nextSession(t, sessions)
			if got := keepAliveOpts(t, s.backendTCP); got[0] != 0 {
				t.Errorf("keep-alive on at the session's start (%v), want it set only after %v", got, keepAliveAfter)
			}
			select {
			case got := <-set:
				if got != s {
					t.Fatal("keep-alive set on another session")
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("keep-alive not set 5s into the session (threshold %v)", keepAliveAfter)
			}
			if lived := time.Since(s.keepAliveAt.Add(-keepAliveAfter)); lived < keepAliveAfter {
				t.Errorf("set after %v, want at least %v", lived, keepAliveAfter)
			}
			want := [4]int{1, 7, 7, listen.KeepAliveProbes}
			if got := keepAliveOpts(t, s.backendTCP); got != want {
				t.Errorf("endpoint socket: keep-alive, idle, interval, count %v, want %v", got, want)
			}
			if err := proxytest.EchoRound(c, "after"); err != nil {
				t.Errorf("relaying after the keep-alive was set: %v", err)
			}
		})
	}
	t.Run("short session", func(t *testing.T) {
		setAfter(t, time.Hour)
		backend := proxytest.StartServer(t, proxytest.Echo)
		p := startProxy(t, Config{KeepAlive: 7 * time.Second}, balancer.Policy{Kind: balancer.Maglev}, backend.Addr())
		c := proxytest.Dial(t, p.addr)
		if err := proxytest.EchoRound(c, "x"); err != nil {
			t.Fatal(err)
		}
		s := nextSession(t, sessions)
		if got := keepAliveOpts(t, s.backendTCP); got[0] != 0 {
			t.Errorf("keep-alive on in a session younger than the threshold: %v", got)
		}
		c.Close()
		waitSessionsEnded(t, p)
		if s.keepAliveSet.Load() {
			t.Error("a session that ended before the threshold set keep-alive")
		}
	})
	t.Run("own dial", func(t *testing.T) {
		d := &net.Dialer{}
		p := startProxy(t, Config{KeepAlive: 7 * time.Second, Dial: d.DialContext}, balancer.Policy{Kind: balancer.Maglev}, "127.0.0.1:1")
		if p.l.keepAlive != 0 {
			t.Errorf("with its own Dial the listener sets keep-alive %v itself, want none", p.l.keepAlive)
		}
	})
}

// TestShortHalfCloseCountsNothing: in a session whose endpoint closes first
// and whose client closes right after, the half-closed watch ends with the
// session before its first count (no TCP_INFO read), and the session ends
// as eof.
func TestShortHalfCloseCountsNothing(t *testing.T) {
	sessions := captureSessions(t)
	backend := proxytest.StartServer(t, func(c *net.TCPConn) { c.Write([]byte("bye")) })
	p := startProxy(t, Config{HalfClosedTimeout: time.Minute}, balancer.Policy{Kind: balancer.Maglev}, backend.Addr())
	c := proxytest.Dial(t, p.addr)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(c); err != nil || string(b) != "bye" {
		t.Fatalf("got %q, %v; want bye then EOF", b, err)
	}
	c.Close()
	s := nextSession(t, sessions)
	waitSessionsEnded(t, p)
	s.watchMu.Lock()
	started, counted := s.watch != nil, s.watchCounted
	s.watchMu.Unlock()
	if !started || counted {
		t.Errorf("half-closed watch started %v, counted %v; want started and not counted", started, counted)
	}
	if s.end != "eof" {
		t.Errorf("ended %q, want eof", s.end)
	}
}
