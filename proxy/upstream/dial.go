package upstream

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/longhaul-proxy/longhaul/proxy/listen"
)

// DialFunc opens a connection to an endpoint. It should return a
// *net.TCPConn: any other type turns splice off for that session.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// newDialer returns the dialer of endpoint connections, with the same
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

// dialLease connects to the leased endpoint within timeout. An endpoint
// whose sessions were asked to move meanwhile is not used: the connection
// is closed and ErrLeaving makes Try lease the next one.
func DialLease(ctx context.Context, dial DialFunc, timeout time.Duration, l *Lease) (net.Conn, error) {
	if l.Asked() {
		return nil, ErrLeaving
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	c, err := dial(dctx, "tcp", l.Addr())
	cancel()
	if err != nil {
		return nil, &DialError{Addr: l.Addr(), Err: err}
	}
	if l.Asked() {
		c.Close()
		return nil, ErrLeaving
	}
	return c, nil
}
