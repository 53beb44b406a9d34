package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/proxy/listen"
	"golang.org/x/sys/unix"
)

// keepAliveOpts reads c's keep-alive options: on, idle, interval, count.
func keepAliveOpts(t *testing.T, c net.Conn) [4]int {
	t.Helper()
	tc, ok := c.(*net.TCPConn)
	if !ok {
		t.Fatalf("got a %T, want a *net.TCPConn (splice needs it)", c)
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var out [4]int
	var gerr error
	rc.Control(func(fd uintptr) {
		for i, o := range [][2]int{
			{unix.SOL_SOCKET, unix.SO_KEEPALIVE}, {unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},
			{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL}, {unix.IPPROTO_TCP, unix.TCP_KEEPCNT},
		} {
			if out[i], err = unix.GetsockoptInt(int(fd), o[0], o[1]); err != nil {
				gerr = err
			}
		}
	})
	if gerr != nil {
		t.Fatal(gerr)
	}
	return out
}

// TestKeepAliveProbes: connections accepted by Listen inherit the probes
// set on the listening socket, and endpoint connections get the same from
// NewDialer; both stay *net.TCPConn. With 0, neither side probes.
func TestKeepAliveProbes(t *testing.T) {
	for _, period := range []time.Duration{7 * time.Second, 0} {
		want := [4]int{1, 7, 7, listen.KeepAliveProbes}
		ln, err := listen.Listen("127.0.0.1:0", period)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		dialled, err := NewDialer(period)(ctx, "tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer dialled.Close()
		a := <-accepted
		if a == nil {
			t.Fatal("accept failed")
		}
		defer a.Close()
		for side, c := range map[string]net.Conn{"accepted": a, "dialled": dialled} {
			got := keepAliveOpts(t, c)
			if period == 0 {
				if got[0] != 0 {
					t.Errorf("period 0, %s: keep-alive on", side)
				}
				continue
			}
			if got != want {
				t.Errorf("period %v, %s: keep-alive, idle, interval, count %v, want %v", period, side, got, want)
			}
		}
	}
}

// fullListener returns the address of a listening socket whose accept
// queue is full: a connect to it waits, its SYNs dropped, until the
// dialler gives up.
func fullListener(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil { // a queue of one
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
	c, err := net.DialTimeout("tcp", addr, 5*time.Second) // fills the queue
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return addr
}

// TestDialDefault: DialLease's default dialer connects to an IP address and
// to a name, with no keep-alive probes (the caller's to set), and bounds a
// connect that gets no answer by its timeout, whether the context can be
// cancelled (the poller's deadline alone) or not; cancelling the context
// stops the wait.
func TestDialDefault(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, addr := range []string{ln.Addr().String(), net.JoinHostPort("localhost", port)} {
		c, err := dialDefault(ctx, addr, 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		if got := keepAliveOpts(t, c); got[0] != 0 {
			t.Errorf("%s: keep-alive on (%v), want it left to the caller", addr, got)
		}
		c.Close()
	}

	full := fullListener(t)
	const timeout = 200 * time.Millisecond
	for name, ctx := range map[string]context.Context{"cancellable": ctx, "never done": context.Background()} {
		start := time.Now()
		c, err := dialDefault(ctx, full, timeout)
		took := time.Since(start)
		if err == nil {
			c.Close()
			t.Fatalf("%s: connected to a full accept queue", name)
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("%s: got %v, want a timeout", name, err)
		}
		if took < timeout-10*time.Millisecond || took > timeout+time.Second {
			t.Errorf("%s: gave up after %v, want about %v", name, took, timeout)
		}
	}

	cctx, ccancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, ccancel)
	start := time.Now()
	c, err := dialDefault(cctx, full, time.Minute)
	if err == nil {
		c.Close()
		t.Fatal("connected to a full accept queue")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v, want context.Canceled", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("cancelled after 50ms, gave up after %v", took)
	}
}
