package httpproxy

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longhaul-proxy/longhaul/proxy/h2relay"
	"github.com/longhaul-proxy/longhaul/proxy/listen"
	"github.com/longhaul-proxy/longhaul/proxy/upstream"
)

// Connection affinity: each client connection is pinned to one endpoint
// (picked by the listener's key on its first request) instead of each
// request being balanced on its own, for apps that keep per-connection
// state. One mechanism serves both paths a connection may take: pin holds
// the endpoint, its load and its registration as a Session; a pinConn says
// how that path asks its client to leave.

// movedConnTimeout is how long the requests of a connection whose pinned
// endpoint went away (without a drain, so without a deadline) may run on
// after the connection was told to leave.
const movedConnTimeout = time.Minute

// pinConn is how one serving path asks its client connection to leave.
type pinConn interface {
	// leave asks the client to reconnect by deadline and returns at once.
	leave(deadline time.Time)
	close()
	// enforcesDeadline: the path ends the connection at leave's deadline
	// itself (the relay's GoAway), so the pin does not close it then.
	enforcesDeadline() bool
}

// pin pins one client connection to one endpoint and is that connection's
// Session while it is pinned. It holds one registered Lease of its
// endpoint (a pinned connection is load, and drain finds it there); each
// request on it holds a lease of its own while in flight. follow moves
// the pin when a request had to go elsewhere (the pinned endpoint left),
// and end gives the lease back.
//
// Lock order: pin.mu before the Upstream's and the Registry's locks (follow
// leases under it); a lease is released, and attached, only after mu is let
// go, since both may call back into the pin (Info, Migrate).
type pin struct {
	up   *upstream.Upstream
	base upstream.SessionInfo // listener, protocol, client
	conn pinConn

	mu     sync.Mutex
	lease  *upstream.Lease // the pinned endpoint's; nil before the first request
	closed bool            // the connection ended: pin nothing more

	// moving: drain asked the connection to leave its endpoint.
	moving atomic.Bool
	mig    upstream.Migration
}

func newPin(up *upstream.Upstream, client string, conn pinConn) *pin {
	return &pin{up: up, conn: conn,
		base: upstream.SessionInfo{Listener: up.Name(), Protocol: "http-affinity", Client: client}}
}

// addr returns the pinned endpoint's address, "" before the first request.
func (p *pin) addr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lease == nil {
		return ""
	}
	return p.lease.Addr()
}

// follow pins the connection to addr, the endpoint a request on it was just
// leased (key is the request's). It reports whether the connection should
// end after this request: the pin moved, or drain asked it to leave.
func (p *pin) follow(key uint64, addr string) (leave bool) {
	p.mu.Lock()
	old := p.lease
	if p.closed || old != nil && old.Addr() == addr {
		p.mu.Unlock()
		return p.moving.Load()
	}
	nl, err := p.up.Lease(key, addr, nil, &p.base)
	if err != nil {
		nl = nil
	}
	p.lease = nl
	p.mu.Unlock()
	if nl != nil {
		nl.Attach(p)
	}
	old.Release()
	return old != nil || p.moving.Load()
}

// end runs once the connection is over: nothing is pinned any more.
func (p *pin) end() {
	p.mu.Lock()
	p.closed = true
	old := p.lease
	p.lease = nil
	p.mu.Unlock()
	p.mig.End()
	old.Release()
}

// Info implements Session.
func (p *pin) Info() upstream.SessionInfo {
	p.mu.Lock()
	i := p.base
	if p.lease != nil {
		i = p.lease.Base()
	}
	p.mu.Unlock()
	asked, deadline := p.mig.State()
	i.Migrating, i.Deadline = !asked.IsZero(), deadline
	return i
}

// Migrate implements Session: the connection is asked to leave (see
// pinConn); one still open at deadline is closed then, by the pin or by
// its path.
func (p *pin) Migrate(deadline time.Time) {
	force := p.conn.close
	if p.conn.enforcesDeadline() {
		force = nil
	}
	if !p.mig.Begin(deadline, force) {
		return
	}
	p.moving.Store(true)
	p.conn.leave(deadline)
}

// Close implements Session: the client connection closes at once.
func (p *pin) Close() { p.conn.close() }

func (p *pin) MigrationResult() (time.Time, string) {
	asked, _ := p.mig.State()
	return asked, p.mig.Result()
}

// The net/http path (HTTP/1.1, and HTTP/2 of listeners without UpstreamH2):
// a pinned connection moves by answering its next request with
// "Connection: close" (HTTP/1.1: the client reconnects; HTTP/2: the server
// sends a single GOAWAY with the last stream it took, lets the streams in
// flight finish, then closes), or at once when it is idle.

// serverConn is a connection of net/http's server; idle and h2 are set by
// the server's goroutines (connState, handlers) under mu.
type serverConn struct {
	c   net.Conn
	pin *pin

	mu   sync.Mutex
	idle bool
	h2   bool
}

type pinKey struct{}

func (sc *serverConn) leave(time.Time) {
	sc.mu.Lock()
	idle := sc.idle
	sc.mu.Unlock()
	if idle {
		sc.c.Close()
	}
}

func (sc *serverConn) close()                 { sc.c.Close() }
func (sc *serverConn) enforcesDeadline() bool { return false }

// pinContext is the HTTP server's ConnContext with affinity: it pins every
// connection.
func (l *Listener) pinContext(ctx context.Context, c net.Conn) context.Context {
	sc := &serverConn{c: c}
	sc.pin = newPin(l.up, listen.AddrPort(c.RemoteAddr()).String(), sc)
	l.pins.Store(c, sc)
	return context.WithValue(ctx, pinKey{}, sc)
}

// connState tracks idleness, and ends a pin when its connection ends.
func (l *Listener) connState(c net.Conn, s http.ConnState) {
	v, ok := l.pins.Load(c)
	if !ok {
		return
	}
	sc := v.(*serverConn)
	switch s {
	case http.StateIdle:
		sc.mu.Lock()
		sc.idle = true
		closeNow := sc.pin.moving.Load() && !sc.h2
		sc.mu.Unlock()
		if closeNow {
			// HTTP/1.1 asked to move, its last response written: go
			// now. (HTTP/2 turns idle as its last stream closes, before
			// the stream's data is out: its GOAWAY ends it instead.)
			c.Close()
		}
	case http.StateActive:
		sc.mu.Lock()
		sc.idle = false
		sc.mu.Unlock()
	case http.StateClosed, http.StateHijacked:
		l.pins.Delete(c)
		sc.pin.end()
	}
}

// pinOf returns the pin of r's connection, nil without affinity.
func pinOf(r *http.Request) *pin {
	sc, _ := r.Context().Value(pinKey{}).(*serverConn)
	if sc == nil {
		return nil
	}
	sc.mu.Lock()
	sc.h2 = r.ProtoMajor == 2
	sc.mu.Unlock()
	return sc.pin
}

// The HTTP/2 relay's path (listeners with UpstreamH2): moving is the
// relay's two-step GOAWAY on that one connection: the client opens no new
// stream there, the streams in flight finish on their endpoint, and the
// connection closes; streams still open at the deadline end with gRPC
// UNAVAILABLE (or 502 / RST_STREAM).

// relayConn is a client connection of the relay; with affinity, pinned.
type relayConn struct {
	c   *h2relay.Conn
	pin *pin
	key RequestKey
}

func (rc *relayConn) leave(deadline time.Time) { rc.c.GoAway(deadline) }
func (rc *relayConn) close()                   { rc.c.Close() }
func (rc *relayConn) enforcesDeadline() bool   { return true }

// Route implements h2relay.Router for a pinned connection: the pinned
// endpoint while it takes new work, else a new pick, which moves the pin
// and tells the connection to leave. The relay calls it on the
// connection's reader goroutine (or a dialing one, for a retry).
func (rc *relayConn) Route(h *h2relay.RequestHead, tried []string) (string, func(), bool) {
	key := rc.key.HashHead(h)
	l, ok := rc.pin.up.Route(key, rc.pin.addr(), tried)
	if !ok {
		return "", nil, false
	}
	if rc.pin.follow(key, l.Addr()) {
		deadline := time.Now().Add(movedConnTimeout)
		if _, d := rc.pin.mig.State(); !d.IsZero() {
			deadline = d
		}
		rc.c.GoAway(deadline)
	}
	return l.Addr(), l.Release, true
}
