package listen

import (
	"net"
	"net/netip"
	"sync"
	"syscall"

	"github.com/longhaul-proxy/longhaul/proxy/h2relay"
)

// Gate bounds a listener's client connections, in two ways.
//
// At most max are open at once: Wait, called before each Accept, blocks
// while every slot is taken, so that new connections wait in the kernel's
// backlog (the client sees a slow connect, not a reset) and are accepted
// in turn as slots free. A connection that holds a slot gives it back with
// Free, exactly once.
//
// At most perClient come from one IP address: Admit refuses one more (the
// caller closes it, counted as rejected with reason "per_client"), so that
// one client cannot take every slot. Leave gives an admitted one back.
//
// The zero bound means none. A nil *Gate admits everything.
type Gate struct {
	slots     chan struct{} // a token per connection open; nil: no bound
	stop      chan struct{}
	stopOnce  sync.Once
	perClient int
	rejected  interface{ Inc() }

	mu   sync.Mutex
	open map[netip.Addr]int // connections per client address, with perClient
}

func NewGate(max, perClient int, rejected interface{ Inc() }) *Gate {
	g := &Gate{stop: make(chan struct{}), perClient: perClient, rejected: rejected}
	if max > 0 {
		g.slots = make(chan struct{}, max)
	}
	if perClient > 0 {
		g.open = make(map[netip.Addr]int)
	}
	return g
}

// Wait takes a slot, waiting for one to free; it returns net.ErrClosed once
// Stop was called.
func (g *Gate) Wait() error {
	if g.slots == nil {
		select {
		case <-g.stop:
			return net.ErrClosed
		default:
			return nil
		}
	}
	select {
	case g.slots <- struct{}{}:
		return nil
	case <-g.stop:
		return net.ErrClosed
	}
}

// Free gives back a slot taken by Wait.
func (g *Gate) Free() {
	if g.slots != nil {
		<-g.slots
	}
}

// Stop makes Wait return net.ErrClosed from now on, waking those waiting.
func (g *Gate) Stop() { g.stopOnce.Do(func() { close(g.stop) }) }

// Admit counts a connection from addr, or reports false (and counts it as
// rejected) when addr already has perClient open.
func (g *Gate) Admit(addr netip.Addr) bool {
	if g.open == nil {
		return true
	}
	addr = addr.Unmap()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.open[addr] >= g.perClient {
		g.rejected.Inc()
		return false
	}
	g.open[addr]++
	return true
}

// Leave gives back a connection Admit counted.
func (g *Gate) Leave(addr netip.Addr) {
	if g.open == nil {
		return
	}
	addr = addr.Unmap()
	g.mu.Lock()
	defer g.mu.Unlock()
	if n := g.open[addr] - 1; n > 0 {
		g.open[addr] = n
	} else {
		delete(g.open, addr)
	}
}

// Limit returns ln with gate in front of it (see limitListener).
func Limit(ln net.Listener, gate *Gate) net.Listener { return &limitListener{Listener: ln, gate: gate} }

// limitListener puts a Gate in front of a listener whose connections
// are closed by others (net/http's server, the HTTP/2 relay, a WebSocket
// relay after a hijack): each connection it returns gives back its slot
// and its client count when it is closed, exactly once, by whoever closes
// it.
type limitListener struct {
	net.Listener
	gate *Gate
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		if err := l.gate.Wait(); err != nil {
			return nil, err
		}
		c, err := l.Listener.Accept()
		if err != nil {
			l.gate.Free()
			return nil, err
		}
		client := AddrPort(c.RemoteAddr()).Addr()
		if !l.gate.Admit(client) {
			c.Close()
			l.gate.Free()
			continue
		}
		return &limitedConn{Conn: c, gate: l.gate, client: client}, nil
	}
}

// Close stops accepting, waking an Accept that waits for a slot.
func (l *limitListener) Close() error {
	l.gate.Stop()
	return l.Listener.Close()
}

// limitedConn is an admitted connection. It keeps what its users look for
// on the socket: CloseWrite for half-closes, SyscallConn for the relay's
// non-blocking writes.
type limitedConn struct {
	net.Conn
	gate   *Gate
	client netip.Addr
	once   sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.gate.Leave(c.client)
		c.gate.Free()
	})
	return err
}

// Socket returns the wrapped connection, for relays that read and write it
// directly (see Socket); Close must still go through c.
func (c *limitedConn) Socket() net.Conn { return c.Conn }

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

// Socket returns the connection under the wrappers put on accepted
// connections (the connection limit's, the HTTP listener's protocol
// sniffer's once its bytes are read, which have a Socket method), so that a long-lived relay reads and writes the
// socket itself: each wrapper is a call frame more on the relay's two
// goroutines, which is enough to double their stacks (about 1.5 KiB per
// idle WebSocket). Closing stays with the outer connection, which gives
// back its slot. TLS connections are not unwrapped.
func Socket(c net.Conn) net.Conn {
	for {
		w, ok := c.(interface{ Socket() net.Conn })
		if !ok {
			return c
		}
		inner := w.Socket()
		if inner == c {
			return c
		}
		c = inner
	}
}
