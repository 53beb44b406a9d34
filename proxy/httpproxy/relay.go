package httpproxy

import (
	"time"

	"go.uber.org/zap"

	"github.com/longhaul-proxy/longhaul/proxy/h2relay"
	"github.com/longhaul-proxy/longhaul/proxy/upstream"
)

// relayRouter leases endpoints for the HTTP/2 relay's streams with the
// listener's key: each stream holds its lease (counted as load) until it
// ends. Pinned connections route through their relayConn instead.
type relayRouter struct {
	up  *upstream.Upstream
	key RequestKey
}

func (r relayRouter) Route(h *h2relay.RequestHead, tried []string) (string, func(), bool) {
	l, ok := r.up.Route(r.key.HashHead(h), "", tried)
	if !ok {
		return "", nil, false
	}
	return l.Addr(), l.Release, true
}

// onRelayConn is the relay's OnConn: it keeps each client connection in
// l.clients, for longhaul's own shutdown to move (Clients), and with
// Affinity pins it.
func (l *Listener) onRelayConn(c *h2relay.Conn) h2relay.Router {
	rc := &relayConn{c: c, key: l.cfg.Key}
	l.clients.Store(c, rc)
	if !l.cfg.Affinity {
		return nil // the relay's Router
	}
	rc.pin = newPin(l.up, c.RemoteAddr().String(), rc)
	return rc
}

// onRelayConnEnd is the relay's OnConnEnd.
func (l *Listener) onRelayConnEnd(c *h2relay.Conn) {
	v, ok := l.clients.LoadAndDelete(c)
	if !ok {
		return
	}
	if rc := v.(*relayConn); rc.pin != nil {
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

// Clients returns the client connections that the HTTP/2 relay serves,
// balanced per request and so bound to no endpoint, for longhaul's own
// shutdown to move; pinned ones are sessions of their endpoint instead.
func (l *Listener) Clients() []interface{ Migrate(time.Time) } {
	var out []interface{ Migrate(time.Time) }
	l.clients.Range(func(_, v any) bool {
		if rc := v.(*relayConn); rc.pin == nil {
			out = append(out, clientMove{rc.c})
		}
		return true
	})
	return out
}

// relayObserver records the relay's request durations and dial errors in
// the listener's metrics.
type relayObserver struct{ l *Listener }

func (o relayObserver) RequestDone(x h2relay.Outcome) {
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
