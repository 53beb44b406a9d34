package upstream

import (
	"context"
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
