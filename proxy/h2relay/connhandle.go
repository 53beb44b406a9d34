package h2relay

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/http2"

	"github.com/longhaul-proxy/longhaul/internal/guard"
)

// Conn is the consumer's handle on one client connection, given to
// Config.OnConn when the connection starts. It stays valid after the
// connection ended (its methods then do nothing). Its methods are safe for
// concurrent use and do not block, so a Router may call them.
//
// The handle owns the connection's GoAway deadline timer; the connection's
// frames and streams stay the relay's (its reader goroutine and whoever
// holds a stream's lock, as for any connection).
type Conn struct {
	cc *clientConn

	mu       sync.Mutex
	deadline time.Time   // of the GoAway under way; zero before GoAway
	timer    *time.Timer // runs expire at deadline
	forced   bool        // the deadline found the connection still open
}

// RemoteAddr returns the client's address.
func (c *Conn) RemoteAddr() netip.AddrPort { return c.cc.client }

// TLS reports whether the client connection is TLS.
func (c *Conn) TLS() bool { return c.cc.tls }

// Done is closed when the connection is over: closed, and every stream of
// it ended (their Router done functions were called).
func (c *Conn) Done() <-chan struct{} { return c.cc.done }

// Close closes the connection at once; its streams are reset toward their
// endpoints.
func (c *Conn) Close() { c.cc.abort() }

// GoAway moves the client off this connection: GOAWAY with the largest
// stream id and a PING, then, once the client acknowledged that PING,
// GOAWAY with the last stream id it opened. Streams already open run on;
// the connection closes when none is left. Those still open at deadline
// end as on an endpoint's drain deadline (gRPC calls with UNAVAILABLE,
// other requests with 502 or RST_STREAM), and the connection closes then.
// A later call may bring the deadline closer, never push it back; a zero
// deadline is now. Not to be called from OnConn itself: the connection's
// SETTINGS, which must come first, are not out yet.
func (c *Conn) GoAway(deadline time.Time) {
	if deadline.IsZero() {
		deadline = time.Now()
	}
	c.mu.Lock()
	if !c.deadline.IsZero() && !deadline.Before(c.deadline) {
		c.mu.Unlock()
		return
	}
	first := c.deadline.IsZero()
	c.deadline = deadline
	if c.timer == nil {
		c.timer = time.AfterFunc(time.Until(deadline), func() {
			defer guard.Recover("h2relay", func() { c.cc.nc.Close() })
			c.expire()
		})
	} else {
		c.timer.Reset(time.Until(deadline))
	}
	c.mu.Unlock()
	if first {
		c.cc.startShutdown()
	}
}

// Forced reports whether GoAway's deadline came while the connection was
// still open, so that the deadline, not the client, ended it.
func (c *Conn) Forced() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.forced
}

// expire ends the connection at its GoAway deadline: the final GOAWAY
// (unless the PING's acknowledgment sent it), the streams still open fail,
// and the connection closes once that output is written. Timer goroutine.
func (c *Conn) expire() {
	cc := c.cc
	select {
	case <-cc.done:
		return
	default:
	}
	c.mu.Lock()
	c.forced = true
	c.mu.Unlock()
	cc.sendFinalGoAway()
	for _, s := range cc.snapshot() {
		s.mu.Lock()
		if !s.finished {
			s.resetUpstream(http2.ErrCodeCancel)
			s.failToClient(502, "client connection closed at its migration deadline")
		}
		s.mu.Unlock()
	}
	cc.mu.Lock()
	if !cc.closed {
		cc.closeAfter = true
		cc.cond.Signal()
		// Bound the write under way too, if the client does not read.
		cc.nc.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
	}
	cc.mu.Unlock()
}

// stop disarms the deadline timer; the connection is over.
func (c *Conn) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer != nil {
		c.timer.Stop()
	}
}
