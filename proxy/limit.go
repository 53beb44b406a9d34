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

// socket returns the wrapped connection, for relays that read and write it
// directly (see socketOf); Close must still go through c.
func (c *limitedConn) socket() net.Conn { return c.Conn }

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

// socketOf returns the connection under the wrappers this package puts on
// accepted connections (the connection limit's, the protocol sniffer's
// once its bytes are read), so that a long-lived relay reads and writes the
// socket itself: each wrapper is a call frame more on the relay's two
// goroutines, which is enough to double their stacks (about 1.5 KiB per
// idle WebSocket). Closing stays with the outer connection, which gives
// back its slot. TLS connections are not unwrapped.
func socketOf(c net.Conn) net.Conn {
	for {
		w, ok := c.(interface{ socket() net.Conn })
		if !ok {
			return c
		}
		inner := w.socket()
		if inner == c {
			return c
		}
		c = inner
	}
}
