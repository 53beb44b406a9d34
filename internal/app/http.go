package app

import (
	"go.uber.org/zap"

	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/proxy/httpproxy"
)

// newHTTP builds an http or grpc listener. A grpc listener is an http
// listener whose endpoints speak HTTP/2 (h2c).
func (a *App) newHTTP(lc config.Listener, backends []*backend, log *zap.Logger) (*httpproxy.Listener, error) {
	hc := httpproxy.Config{
		Name: lc.Name, Key: httpproxy.NewRequestKey(lc.Balance.KeySpec()),
		UpstreamH2:     lc.Protocol == "grpc" || lc.HTTP.Upstream == "h2c",
		ConnectTimeout: lc.Timeouts.Connect,
		KeepAliveIdle:  lc.Timeouts.KeepAliveIdle, RequestBodyTimeout: lc.Timeouts.RequestBody,
		ResponseHeaderTimeout: lc.Timeouts.ResponseHeader, KeepAlive: lc.Timeouts.TCPKeepAlive,
		StreamIdleTimeout: lc.Timeouts.StreamIdle, MemoryBudget: a.budget,
		Affinity: lc.HTTP.Affinity == "connection",
		WebSocket: httpproxy.WebSocketConfig{
			MaxFrame: lc.HTTP.WebSocket.MaxFrame, CloseCode: uint16(lc.HTTP.WebSocket.CloseCode),
			IdleTimeout: lc.Timeouts.WebSocketIdle,
		},
		MaxConnections: lc.MaxConnections, MaxConnectionsPerClient: lc.MaxConnectionsPerClient,
		Dial: a.opts.Dial, Logger: log,
	}
	if t := lc.HTTP.TLS; t.CertFile != "" {
		cf, err := httpproxy.NewCertFiles(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, err
		}
		cf.OnError = func(err error) { log.Error("certificate reload failed; keeping the last good one", zap.Error(err)) }
		hc.TLS = cf.TLSConfig()
	}
	if lc.HasRoutes() {
		t, err := routeTable(lc, backends)
		if err != nil {
			return nil, err // validated: not expected
		}
		hc.Routes = t
	}
	// With routes, the first backend's upstream lends the listener its
	// registry and metrics (every upstream shares the App's).
	return httpproxy.New(hc, backends[0].up), nil
}
