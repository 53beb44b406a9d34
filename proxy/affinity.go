package proxy

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longhaul-proxy/longhaul/balancer"
)

// connPin pins one client connection of an HTTP listener with connection
// affinity to one endpoint: every request on the connection goes there,
// for apps that keep per-connection state. A pinned connection is a
// Session: drain moves it by answering its next request with
// "Connection: close" (HTTP/1.1: the client reconnects; HTTP/2: the server
// sends GOAWAY with the last stream it took, lets the streams in flight
// finish, then closes), or at once when it is idle, and closes it at the
// deadline if it is still there.
type connPin struct {
	l      *HTTPListener
	conn   net.Conn
	client netip.AddrPort

	mu      sync.Mutex
	target  *balancer.Target // acquired while pinned: a pinned connection is load
	addr    string
	info    SessionInfo
	remove  func()
	idle    bool
	h2      bool // the connection speaks HTTP/2
	closed  bool
	moving  atomic.Bool
	mig     migration
	release func() // of the SessionsActive gauge
}

type pinKey struct{}

// pinContext is the HTTP server's ConnContext with affinity: it attaches a
// connPin to every connection.
func (l *HTTPListener) pinContext(ctx context.Context, c net.Conn) context.Context {
	pin := &connPin{l: l, conn: c, client: addrPortOf(c.RemoteAddr())}
	l.pins.Store(c, pin)
	return context.WithValue(ctx, pinKey{}, pin)
}

// connState tracks idleness, and ends a pin when its connection ends.
func (l *HTTPListener) connState(c net.Conn, s http.ConnState) {
	v, ok := l.pins.Load(c)
	if !ok {
		return
	}
	pin := v.(*connPin)
	switch s {
	case http.StateIdle:
		pin.mu.Lock()
		pin.idle = true
		closeNow := pin.moving.Load() && !pin.h2
		pin.mu.Unlock()
		if closeNow {
			// HTTP/1.1 asked to move, its last response written: go
			// now. (HTTP/2 turns idle as its last stream closes, before
			// the stream's data is out: its GOAWAY ends it instead.)
			c.Close()
		}
	case http.StateActive:
		pin.mu.Lock()
		pin.idle = false
		pin.mu.Unlock()
	case http.StateClosed, http.StateHijacked:
		l.pins.Delete(c)
		pin.end()
	}
}

func pinOf(r *http.Request) *connPin {
	pin, _ := r.Context().Value(pinKey{}).(*connPin)
	return pin
}

// choose returns the endpoint of this request: the pinned one while new
// work may go to it, else a new pick by key (pinned from then on). close
// reports that the response must end the connection: the pin moved, or
// drain asked it to.
func (pin *connPin) choose(p balancer.Picker, key uint64, tried []*balancer.Target, h2 bool) (t *balancer.Target, close bool) {
	pin.mu.Lock()
	defer pin.mu.Unlock()
	pin.h2 = h2
	if pin.addr != "" && len(tried) == 0 {
		if t := findTarget(p, pin.addr); t != nil {
			return t, pin.moving.Load()
		}
	}
	t = p.Pick(key, tried)
	if t == nil {
		return nil, false
	}
	moved := pin.addr != ""
	pin.pin(t)
	return t, moved || pin.moving.Load()
}

// pin makes t the connection's endpoint. Called with pin.mu held.
func (pin *connPin) pin(t *balancer.Target) {
	if pin.closed {
		return
	}
	pin.unpin()
	t.Acquire()
	pin.target, pin.addr = t, t.Endpoint.Address
	l := pin.l
	pin.info = SessionInfo{ID: l.reg.NewID(), Listener: l.cfg.Name, Protocol: "http-affinity",
		Endpoint: pin.addr, Client: pin.client.String(), Started: time.Now()}
	pin.remove = l.reg.Register(pin.addr, pin.info.ID, pin)
	g := l.metrics.SessionsActive.WithLabelValues(l.cfg.Name, pin.addr)
	g.Inc()
	pin.release = g.Dec
	l.metrics.SessionsTotal.WithLabelValues(l.cfg.Name, pin.addr).Inc()
}

// unpin lets go of the current endpoint. Called with pin.mu held.
func (pin *connPin) unpin() {
	if pin.target == nil {
		return
	}
	pin.target.Release()
	pin.release()
	pin.remove()
	pin.target, pin.addr = nil, ""
}

func (pin *connPin) end() {
	pin.mu.Lock()
	defer pin.mu.Unlock()
	pin.closed = true
	pin.mig.end()
	pin.unpin()
}

// findTarget returns the picker's target for addr, if new work may go
// there. Targets are sorted by address.
func findTarget(p balancer.Picker, addr string) *balancer.Target {
	ts := p.Targets()
	i := sort.Search(len(ts), func(i int) bool { return ts[i].Endpoint.Address >= addr })
	if i < len(ts) && ts[i].Endpoint.Address == addr {
		return ts[i]
	}
	return nil
}

func (pin *connPin) Info() SessionInfo {
	pin.mu.Lock()
	i := pin.info
	pin.mu.Unlock()
	asked, deadline := pin.mig.state()
	i.Migrating, i.Deadline = !asked.IsZero(), deadline
	return i
}

func (pin *connPin) migrationResult() (time.Time, string) {
	asked, _ := pin.mig.state()
	return asked, pin.mig.result()
}

// Migrate asks the connection to leave: its next response carries
// "Connection: close"; an idle connection is closed now; one still open
// at deadline is closed then.
func (pin *connPin) Migrate(deadline time.Time) {
	if !pin.mig.begin(deadline, pin.Close) {
		return
	}
	pin.mu.Lock()
	pin.moving.Store(true)
	idle := pin.idle
	pin.mu.Unlock()
	if idle {
		pin.conn.Close()
	}
}

// Close closes the client connection at once.
func (pin *connPin) Close() { pin.conn.Close() }
