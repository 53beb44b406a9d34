package httpproxy

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/longhaul-proxy/longhaul/proxy/h2relay"
)

// relayClients holds the relay's client connections, for longhaul's own
// shutdown to move. changed is closed and replaced whenever one leaves, so
// that Wait sleeps without polling.
type relayClients struct {
	mu      sync.Mutex
	m       map[*h2relay.Conn]*relayConn
	changed chan struct{}
}

func (rc *relayClients) add(c *h2relay.Conn, r *relayConn) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.m == nil {
		rc.m = make(map[*h2relay.Conn]*relayConn)
		rc.changed = make(chan struct{})
	}
	rc.m[c] = r
}

func (rc *relayClients) remove(c *h2relay.Conn) *relayConn {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	r := rc.m[c]
	if r != nil {
		delete(rc.m, c)
		close(rc.changed)
		rc.changed = make(chan struct{})
	}
	return r
}

// onRelayConn is the relay's OnConn: it keeps each client connection for
// longhaul's own shutdown to move (Clients), and with Affinity pins it.
func (l *Listener) onRelayConn(c *h2relay.Conn) h2relay.Router {
	rc := &relayConn{c: c, key: l.cfg.Key}
	if l.cfg.Affinity {
		rc.pin = newPin(l.up, c.RemoteAddr().String(), rc)
	}
	l.clients.add(c, rc)
	if rc.pin == nil {
		return nil // the relay's Router
	}
	return rc
}

// onRelayConnEnd is the relay's OnConnEnd.
func (l *Listener) onRelayConnEnd(c *h2relay.Conn) {
	rc := l.clients.remove(c)
	if rc != nil && rc.pin != nil {
		if c.Forced() {
			rc.pin.mig.Forced()
		}
		rc.pin.end()
	}
}

// clientMove is a client connection of the relay as longhaul's own
// shutdown moves it: the two-step GOAWAY, its streams still open at the
// deadline ended with gRPC UNAVAILABLE (or 502 / RST_STREAM).
type clientMove struct{ c *h2relay.Conn }

func (m clientMove) Migrate(deadline time.Time) { m.c.GoAway(deadline) }

// Clients returns the client connections that the HTTP/2 relay serves
// balanced per request, and so bound to no endpoint, for longhaul's own
// shutdown to move; pinned ones are sessions of their endpoint instead.
func (l *Listener) Clients() []interface{ Migrate(time.Time) } {
	l.clients.mu.Lock()
	defer l.clients.mu.Unlock()
	out := make([]interface{ Migrate(time.Time) }, 0, len(l.clients.m))
	for _, rc := range l.clients.m {
		if rc.pin == nil {
			out = append(out, clientMove{rc.c})
		}
	}
	return out
}

// WaitClients blocks until none of the connections Clients lists is left,
// or ctx ends.
func (l *Listener) WaitClients(ctx context.Context) error {
	for {
		l.clients.mu.Lock()
		left := false
		for _, rc := range l.clients.m {
			if rc.pin == nil {
				left = true
				break
			}
		}
		ch := l.clients.changed
		l.clients.mu.Unlock()
		if !left {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// relayObserver records the relay's request durations and dial errors in
// the listener's metrics, and its streams in the access log.
type relayObserver struct{ l *Listener }

func (o relayObserver) RequestDone(x h2relay.Outcome) {
	o.l.relayAccess(x)
	took := x.Duration.Seconds()
	if x.GRPC {
		if x.GRPCStatus == 0 {
			o.l.grpcOK.Observe(took)
		} else {
			o.l.reqTime[0].Observe(took)
		}
		return
	}
	if c := x.Status / 100; c >= 1 && c <= 5 {
		o.l.reqTime[c].Observe(took)
	}
}

func (o relayObserver) Calmed(reason string) {
	o.l.metrics.Abuse.WithLabelValues(o.l.cfg.Name, reason).Inc()
	o.l.log.Debug("client connection closed: over a budget", zap.String("reason", reason))
}

func (o relayObserver) DialFailed(addr string, err error) {
	o.l.metrics.DialErrors.WithLabelValues(o.l.cfg.Name, addr).Inc()
	o.l.log.Debug("endpoint dial failed", zap.String("endpoint", addr), zap.Error(err))
}
