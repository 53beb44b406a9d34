package listen

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// KeepAliveProbes is how many unanswered keep-alive probes end a
// connection (Linux's and Go's default).
const KeepAliveProbes = 9

// Listen opens a listener's socket. With keepAlive > 0, TCP keep-alive
// probes go out after keepAlive without traffic and every keepAlive after
// that, KeepAliveProbes of them unanswered ending the connection; 0 sends
// none.
//
// The options are set once, on the listening socket, and Linux copies them
// to every connection it accepts. Go's own per-connection keep-alive is
// off (KeepAlive: -1): it would set four socket options on every accepted
// connection, a fifth of a short session's system calls. Accepted
// connections stay *net.TCPConn, so the TCP relay still splices.
func Listen(address string, keepAlive time.Duration) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	if keepAlive > 0 {
		lc.Control = func(_, _ string, rc syscall.RawConn) error { return SetKeepAlive(rc, keepAlive) }
	}
	return lc.Listen(context.Background(), "tcp", address)
}

// setKeepAlive turns keep-alive probes on for the socket rc, every period
// (whole seconds, at least one).
func SetKeepAlive(rc syscall.RawConn, period time.Duration) error {
	secs := max(int(period/time.Second), 1)
	var serr error
	err := rc.Control(func(fd uintptr) {
		for _, o := range []struct{ level, opt, v int }{
			{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
			{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, secs},
			{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, secs},
			{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, KeepAliveProbes},
		} {
			if e := unix.SetsockoptInt(int(fd), o.level, o.opt, o.v); e != nil {
				serr = fmt.Errorf("set TCP keep-alive (option %d): %w", o.opt, e)
				return
			}
		}
	})
	if err != nil {
		return fmt.Errorf("set TCP keep-alive: %w", err)
	}
	return serr
}

func AddrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

func CloseWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}
