package proxy

import (
	"time"

	"github.com/longhaul-proxy/longhaul/internal/guard"
	"github.com/longhaul-proxy/longhaul/proxy/h2relay"
)

// movedConnTimeout is how long the streams of a relayed connection whose
// pinned endpoint went away (without a drain, so without a deadline) may
// run on after the connection was told to leave.
const movedConnTimeout = time.Minute

// relayPin pins one HTTP/2 client connection that the relay serves (a
// listener with Affinity and UpstreamH2) to one endpoint, as connPin does
// for net/http's connections, and is its Session. It is the connection's
// Router: the relay calls Route on the connection's reader goroutine (or
// on a dialing goroutine, for a retry), never blocking.
//
// Moving, by drain (Migrate) or because the pinned endpoint is gone (the
// next stream is re-picked), is the relay's two-step GOAWAY on that one
// connection: the client opens no new stream there, the streams in flight
// finish on their endpoint, and the connection closes; streams still open
// at the deadline end with gRPC UNAVAILABLE (or 502 / RST_STREAM).
type relayPin struct {
	endpointPin
	conn *h2relay.Conn
}

// relayConn is the relay's OnConn with affinity: it pins each client
// connection, and ends the pin when the connection is over.
func (l *HTTPListener) relayConn(c *h2relay.Conn) h2relay.Router {
	pin := &relayPin{conn: c}
	pin.l, pin.client, pin.owner = l, c.RemoteAddr(), pin
	// OnConn runs on a dispatchConn goroutine, which splitWG counts: this
	// Add cannot race with splitWG's Wait reaching zero.
	l.splitWG.Add(1)
	go func() {
		defer l.splitWG.Done()
		defer guard.Recover("http", nil)
		<-c.Done()
		if c.Forced() {
			pin.mig.forced()
		}
		pin.end()
	}()
	return pin
}

// Route implements h2relay.Router: the pinned endpoint, or a new pick that
// moves the pin and tells the connection to leave.
func (pin *relayPin) Route(h *h2relay.RequestHead, tried []string) (string, func(), bool) {
	l := pin.l
	p := l.up.Picker()
	if p == nil {
		l.picksNone.Inc()
		return "", nil, false
	}
	t, leave := pin.choose(p, l.cfg.Key.HashHead(h), triedTargets(p, tried))
	if t == nil {
		l.picksNone.Inc()
		return "", nil, false
	}
	if leave {
		deadline := time.Now().Add(movedConnTimeout)
		if _, d := pin.mig.state(); !d.IsZero() {
			deadline = d
		}
		pin.conn.GoAway(deadline)
	}
	// Each stream in flight counts as load too, as on net/http's path.
	t.Acquire()
	l.picksOK.Inc()
	return t.Endpoint.Address, t.Release, true
}

// Migrate asks the connection to leave by deadline: the two-step GOAWAY;
// the relay itself ends the streams still open at the deadline.
func (pin *relayPin) Migrate(deadline time.Time) {
	if !pin.mig.begin(deadline, nil) {
		return
	}
	pin.moving.Store(true)
	pin.conn.GoAway(deadline)
}

// Close closes the client connection at once.
func (pin *relayPin) Close() { pin.conn.Close() }
