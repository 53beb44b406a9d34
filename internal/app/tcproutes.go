package app

import (
	"fmt"

	"go.uber.org/zap"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/proxy/route"
	"github.com/longhaul-proxy/longhaul/proxy/tcpproxy"
)

// newTCP builds a tcp listener: over its own backend, or with routes (a
// TCP route, or TLS routes by server name) over its named backends.
func (a *App) newTCP(lc config.Listener, backends []*backend, log *zap.Logger) (*tcpproxy.Listener, error) {
	tc := tcpproxy.Config{
		Name: lc.Name, Key: tcpKey(lc.Balance), ConnectTimeout: lc.Timeouts.Connect, IdleTimeout: lc.Timeouts.Idle,
		HalfClosedTimeout: lc.Timeouts.HalfClosed, KeepAlive: lc.Timeouts.TCPKeepAlive,
		MaxConnections: lc.MaxConnections, MaxConnectionsPerClient: lc.MaxConnectionsPerClient,
		AcceptProxy: lc.ProxyProtocol.Accept, SendProxy: lc.ProxyProtocol.Send,
		DrainImmediate: lc.Drain.TCP == "immediate", Dial: a.opts.Dial, Logger: log,
		AccessLog: accessLog(lc.AccessLog, a.log),
		Parker:    a.parker, Park: lc.Timeouts.Park,
	}
	if lc.HasRoutes() {
		t, err := tcpRouteTable(lc, backends)
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", lc.Name, err) // validated: not expected
		}
		tc.Routes = t
	}
	// With routes, the first backend's upstream lends the listener its
	// registry and metrics (every upstream shares the App's).
	return tcpproxy.New(tc, backends[0].up), nil
}

// tcpKey is the connection key of a balance: client-ip or client-ip-port.
func tcpKey(b config.Balance) tcpproxy.KeyFunc {
	if b.KeySpec().Source == balancer.ClientIPPort {
		return tcpproxy.KeyClientIPPort
	}
	return tcpproxy.KeyClientIP
}

// tcpRouteTable builds a tcp listener's route table over its backends,
// each hashing the key of its own balance.
func tcpRouteTable(lc config.Listener, backends []*backend) (*tcpproxy.Routes, error) {
	byName := make(map[string]*tcpproxy.Backend, len(backends))
	for _, b := range backends {
		byName[b.cfg.Name] = &tcpproxy.Backend{Up: b.up, Key: tcpKey(b.cfg.Balance)}
	}
	t, err := route.New(config.RouteSpec(&lc, func(name string) *tcpproxy.Backend { return byName[name] }))
	if err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	return t, nil
}

// setTCPRoutes swaps the route table of a running tcp listener with
// routes: connections accepted from then on use lc's.
func setTCPRoutes(t *tcpproxy.Listener, lc config.Listener, backends []*backend) error {
	rt, err := tcpRouteTable(lc, backends)
	if err != nil {
		return fmt.Errorf("listener %s: %w", lc.Name, err)
	}
	t.SetRoutes(rt)
	return nil
}
