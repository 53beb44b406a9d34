package tcpproxy

import (
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/longhaul-proxy/longhaul/proxy/route"
	"github.com/longhaul-proxy/longhaul/proxy/upstream"
)

// Backend is where a connection goes: an upstream (its picker, its
// sessions, its drain) and the key its picker hashes (nil: the
// listener's Key). A listener without routes has one, its own; with
// routes, each route's backend references are Backends.
type Backend struct {
	Up  *upstream.Upstream
	Key KeyFunc
}

// Routes is a listener's route table over its backends: its one
// TCPRoute, or its TLSRoutes (route.Table.Streams says which). A table
// without either closes every connection.
type Routes = route.Table[*Backend]

// SetRoutes replaces the route table of a listener built with routes;
// connections accepted from then on use it (each reads the table once,
// before its ClientHello is read). Sessions already relayed stay where
// they are; backends no longer referenced get no new session, and the
// caller drains them. It panics on a listener built without routes: its
// one backend cannot become many.
func (l *Listener) SetRoutes(t *Routes) {
	if l.def != nil || t == nil {
		panic("tcpproxy: SetRoutes on a listener without routes, or to none")
	}
	l.routes.Store(t)
}

// defaultHelloTimeout bounds the wait for a ClientHello by default.
const defaultHelloTimeout = 10 * time.Second

// routeConn finds the backend of client connection c: the TCPRoute's, or
// the TLSRoute's of its ClientHello's server name, picked by weight.
// hello is what was read of c to route it (the ClientHello's records,
// into buf, which the caller returns to helloBufs once it is written);
// buf is nil when nothing was read. meta is the matched route's. ok is
// false when c is to be closed: it was counted and logged.
func (l *Listener) routeConn(c net.Conn, routes *Routes) (b *Backend, meta *route.Meta, hello []byte, buf *[maxHello]byte, ok bool) {
	rnd := rand.Uint64()
	var res route.StreamResult[*Backend]
	var sni string
	switch routes.Streams() {
	case route.StreamTCP:
		res = routes.MatchTCP(rnd)
	case route.StreamTLS:
		buf = helloBufs.Get().(*[maxHello]byte)
		c.SetReadDeadline(time.Now().Add(l.cfg.HelloTimeout))
		var err error
		hello, sni, err = readHello(c, buf)
		c.SetReadDeadline(time.Time{})
		if err != nil {
			helloBufs.Put(buf)
			reason := "tls_hello"
			if errors.Is(err, os.ErrDeadlineExceeded) {
				reason = "tls_hello_timeout"
			}
			l.metrics.Rejected.WithLabelValues(l.cfg.Name, reason).Inc()
			l.log.Debug("closing client: no TLS ClientHello to route by", zap.Stringer("client", c.RemoteAddr()),
				zap.Int("bytes", len(hello)), zap.Error(err))
			return nil, nil, nil, nil, false
		}
		res = routes.MatchTLS(sni, rnd)
	}
	if !res.HasBackend {
		if buf != nil {
			helloBufs.Put(buf)
		}
		l.metrics.Rejected.WithLabelValues(l.cfg.Name, "no_route").Inc()
		msg := "closing client: no route"
		switch {
		case res.Action != nil:
			msg = "closing client: its route has no backend of non-zero weight"
		case routes.Streams() == route.StreamTLS && sni == "":
			msg = "closing client: its ClientHello names no server (SNI), and TLS routes go by it"
		}
		l.log.Debug(msg, zap.Stringer("client", c.RemoteAddr()), zap.String("server_name", sni))
		return nil, nil, nil, nil, false
	}
	return res.Backend, &res.Action.Route, hello, buf, true
}
