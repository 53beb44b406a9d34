package app

import (
	"fmt"

	"go.uber.org/zap"

	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/proxy/accesslog"
	"github.com/longhaul-proxy/longhaul/proxy/certs"
	"github.com/longhaul-proxy/longhaul/proxy/httpproxy"
)

// newHTTP builds an http or grpc listener. A grpc listener is an http
// listener whose endpoints speak HTTP/2 (h2c).
func (a *App) newHTTP(lc config.Listener, backends []*backend, log *zap.Logger) (*httpproxy.Listener, *certs.Store, error) {
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
			Parker:      a.parker, ParkAfter: lc.Timeouts.Park,
		},
		MaxConnections: lc.MaxConnections, MaxConnectionsPerClient: lc.MaxConnectionsPerClient,
		Dial: a.opts.Dial, Logger: log,
		AccessLog: accessLog(lc.AccessLog, a.log),
	}
	var store *certs.Store
	if lc.HTTP.TLS.Enabled() {
		set, err := certSet(lc.HTTP.TLS, log)
		if err != nil {
			return nil, nil, err
		}
		store = certs.NewStore(set)
		hc.TLS = store.TLSConfig("h2", "http/1.1")
	}
	if lc.HasRoutes() {
		t, err := routeTable(lc, backends)
		if err != nil {
			return nil, nil, err // validated: not expected
		}
		hc.Routes = t
	}
	// With routes, the first backend's upstream lends the listener its
	// registry and metrics (every upstream shares the App's).
	return httpproxy.New(hc, backends[0].up), store, nil
}

// certSet loads a listener's certificates: the default pair of
// certFile/keyFile first, then certificates in order. Files are read now,
// so that a bad pair fails here, and again when they change.
func certSet(t config.TLS, log *zap.Logger) (*certs.Set, error) {
	onError := func(err error) { log.Error("certificate reload failed; keeping the last good one", zap.Error(err)) }
	files := func(cert, key string) (certs.Source, error) {
		f, err := certs.NewFiles(cert, key)
		if err != nil {
			return nil, err
		}
		f.OnError = onError
		return f, nil
	}
	var entries []certs.Entry
	if t.CertFile != "" {
		src, err := files(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, err
		}
		entries = append(entries, certs.Entry{Source: src})
	}
	for i, c := range t.Certificates {
		var src certs.Source
		var err error
		if c.CertFile != "" {
			src, err = files(c.CertFile, c.KeyFile)
		} else {
			src, err = certs.FromPEM([]byte(c.CertPEM), []byte(c.KeyPEM))
		}
		if err != nil {
			return nil, fmt.Errorf("tls.certificates[%d]: %w", i, err)
		}
		entries = append(entries, certs.Entry{Hostnames: c.Hostnames, Source: src})
	}
	return certs.NewSet(entries)
}

// accessLog is a listener's access log configuration; log is the App's
// logger, without the listener field (the access log adds it).
func accessLog(c config.AccessLog, log *zap.Logger) accesslog.Config {
	return accesslog.Config{Enabled: c.Enabled, Sample: c.Sample, MaxPerSecond: c.MaxPerSecond, Logger: log}
}
