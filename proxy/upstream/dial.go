package upstream

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/longhaul-proxy/longhaul/proxy/listen"
)

// DialFunc opens a connection to an endpoint. It should return a
// *net.TCPConn: any other type turns splice off for that session.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// NewDialer returns the dialer of endpoint connections, with the same
// keep-alive probes as Listen (set before connecting, so in as many system
// calls as Go's own); keepAlive 0 sends none. Connections are
// *net.TCPConn.
func NewDialer(keepAlive time.Duration) DialFunc {
	d := &net.Dialer{KeepAlive: -1}
	if keepAlive > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error { return listen.SetKeepAlive(rc, keepAlive) }
	}
	return d.DialContext
}

// DialError is a failure to connect to an endpoint: nothing was sent, so
// trying another endpoint is safe.
type DialError struct {
	Addr string
	Err  error
}

func (e *DialError) Error() string { return fmt.Sprintf("dial %s: %v", e.Addr, e.Err) }

func (e *DialError) Unwrap() error { return e.Err }

// DialLease connects to the leased endpoint within timeout. An endpoint
// whose sessions were asked to move meanwhile is not used: the connection
// is closed and ErrLeaving makes Try lease the next one.
//
// A nil dial is the default dialer: a net.Dialer with no keep-alive probes
// (the caller sets them, see listen.SetKeepAlive) whose connections are
// *net.TCPConn. It bounds the connect of an IP address by the poller's
// write deadline alone (see connectCtx) rather than by a context with a
// timer.
func DialLease(ctx context.Context, dial DialFunc, timeout time.Duration, l *Lease) (net.Conn, error) {
	if l.Asked() {
		return nil, ErrLeaving
	}
	var c net.Conn
	var err error
	if dial == nil {
		c, err = dialDefault(ctx, l.Addr(), timeout)
	} else {
		dctx, cancel := context.WithTimeout(ctx, timeout)
		c, err = dial(dctx, "tcp", l.Addr())
		cancel()
	}
	if err != nil {
		return nil, &DialError{Addr: l.Addr(), Err: err}
	}
	if l.Asked() {
		c.Close()
		return nil, ErrLeaving
	}
	return c, nil
}

// defaultDialer is DialLease's default: no keep-alive (see NewDialer).
var defaultDialer = &net.Dialer{KeepAlive: -1}

// dialDefault connects to address within timeout with defaultDialer.
func dialDefault(ctx context.Context, address string, timeout time.Duration) (net.Conn, error) {
	if _, err := netip.ParseAddrPort(address); err == nil && ctx.Done() != nil {
		return defaultDialer.DialContext(&connectCtx{Context: ctx, deadline: time.Now().Add(timeout)}, "tcp", address)
	}
	// A name to resolve, whose lookup goes by the context's Done, or a
	// parent that is never done, with which net does not bound a connect
	// by the deadline.
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return defaultDialer.DialContext(dctx, "tcp", address)
}

// connectCtx is ctx with a deadline that only Deadline reports: Done, Err
// and Value are ctx's, so nothing closes at the deadline and no timer is
// made. It is cheaper than context.WithTimeout (a timer, a child context
// registered in ctx and one of its own in turn for the connect's
// cancellation) and serves, only, net.Dialer's dial of an IP address with
// a parent ctx that can be cancelled: there net sets the deadline as the
// socket's write deadline, which the poller enforces while waiting for the
// connect to complete (an "i/o timeout"), and stops the wait when ctx is
// cancelled. A name lookup, which waits on Done, must not be given one.
type connectCtx struct {
	context.Context
	deadline time.Time
}

func (c *connectCtx) Deadline() (time.Time, bool) { return c.deadline, true }
