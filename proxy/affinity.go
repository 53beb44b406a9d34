package proxy

import (
	"context"
	"net"
	"net/http"
	"sort"
	"time"

	"github.com/longhaul-proxy/longhaul/balancer"
)

// connPin pins one client connection that net/http's server serves
// (HTTP/1.1, and HTTP/2 of listeners without UpstreamH2) to one endpoint:
// every request on the connection goes there, for apps that keep
// per-connection state. A pinned connection is a Session: drain moves it
// by answering its next request with "Connection: close" (HTTP/1.1: the
// client reconnects; HTTP/2: the server sends a single GOAWAY with the last
// stream it took, lets the streams in flight finish, then closes), or at
// once when it is idle, and closes it at the deadline if it is still there.
// HTTP/2 connections of listeners with UpstreamH2 are pinned by relayPin
// instead, which moves them with a two-step GOAWAY.
//
// The server's goroutines for the connection call choose (handlers) and
// connState; idle and h2 are under the endpointPin's mu.
type connPin struct {
	endpointPin
	conn net.Conn
	idle bool
	h2   bool // the connection speaks HTTP/2
}

type pinKey struct{}

// pinContext is the HTTP server's ConnContext with affinity: it attaches a
// connPin to every connection.
func (l *HTTPListener) pinContext(ctx context.Context, c net.Conn) context.Context {
	pin := &connPin{conn: c}
	pin.l, pin.client, pin.owner = l, addrPortOf(c.RemoteAddr()), pin
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

// choose returns the endpoint of this request (see endpointPin.choose);
// close reports that the response must end the connection.
func (pin *connPin) choose(p balancer.Picker, key uint64, tried []*balancer.Target, h2 bool) (t *balancer.Target, close bool) {
	pin.mu.Lock()
	pin.h2 = h2
	pin.mu.Unlock()
	return pin.endpointPin.choose(p, key, tried)
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
