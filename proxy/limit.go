package proxy

import (
	"net"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/longhaul-proxy/longhaul/proxy/h2relay"
)

// limitListener bounds the client connections open at once: a connection
// accepted above max is closed at once and counted as rejected, as the TCP
// listener does. The slot of an admitted connection is given back when it
// is closed, exactly once, by whoever closes it (net/http's server, the
// HTTP/2 relay, or a WebSocket relay after a hijack).
type limitListener struct {
	net.Listener
	max      int64
	active   atomic.Int64
	rejected interface{ Inc() }
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if n := l.active.Add(1); n > l.max {
			l.active.Add(-1)
			l.rejected.Inc()
			c.Close()
			continue
		}
		return &limitedConn{Conn: c, l: l}, nil
	}
}

// limitedConn is an admitted connection. It keeps what its users look for
// on the socket: CloseWrite for half-closes, SyscallConn for the relay's
// non-blocking writes.
type limitedConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.active.Add(-1) })
	return err
}

// CloseWrite half-closes the connection, for relays that pass on an EOF
// (or closes it, giving its slot back, when the socket cannot half-close).
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// PlainTCP tells the relay whether bytes written to the socket are what
// the client reads.
func (c *limitedConn) PlainTCP() bool { return h2relay.IsPlainTCP(c.Conn) }

func (c *limitedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, syscall.EINVAL
}
