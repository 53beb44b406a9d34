package httpproxy

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longhaul-proxy/longhaul/proxy/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/longhaul-proxy/longhaul/internal/membudget"
	"github.com/longhaul-proxy/longhaul/proxy/accesslog"
	"github.com/longhaul-proxy/longhaul/proxy/h2relay"
	"github.com/longhaul-proxy/longhaul/proxy/listen"
	"github.com/longhaul-proxy/longhaul/proxy/upstream"
)

// Config configures an HTTP listener: HTTP/1.1, h2c with prior
// knowledge and, with TLS, h2 and http/1.1 by ALPN.
type Config struct {
	Name string
	Key  RequestKey
	// UpstreamH2 sends requests to endpoints over HTTP/2 without TLS (h2c),
	// as gRPC servers expect; otherwise HTTP/1.1 keep-alive. HTTP/2
	// clients are then served by the frame-level relay (package h2relay)
	// and only HTTP/1 clients by net/http, whose requests go to the
	// endpoints over the relay's connections too (h2relay.Server's
	// RoundTrip): one HTTP/2 client and one pool per endpoint. Every
	// backend is then reached over h2c, whatever its Backend.H2 says.
	// Without UpstreamH2, net/http serves every client, and the backends
	// of Routes with H2 set are reached over the relay's pooled h2c
	// connections (RoundTrip), the others over HTTP/1.1: HTTPRoutes to
	// HTTP/1.1 backends and GRPCRoutes to gRPC ones share one port.
	UpstreamH2     bool
	ConnectTimeout time.Duration // 0 means 2s
	// KeepAliveIdle closes an HTTP/1 client connection waiting this long
	// for its next request, and an HTTP/2 one served by net/http with no
	// stream open for this long; 0 means 75s.
	KeepAliveIdle time.Duration
	// RequestBodyTimeout bounds each wait for more of a request body: a
	// body slower than that is cut, and the client answered 408 with its
	// connection closed. 0 means 60s.
	RequestBodyTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for an endpoint's response
	// headers once the request is sent (and a WebSocket's handshake
	// answer): the client is answered 504 (gRPC: UNAVAILABLE). 0 means 60s.
	ResponseHeaderTimeout time.Duration
	// StreamIdleTimeout ends a stream of the HTTP/2 relay with no frame
	// either way for this long (h2relay.Config.StreamIdleTimeout); 0
	// means 1h. A gRPC call to an H2 backend that net/http serves (on a
	// listener without UpstreamH2) waits for its response headers, and for
	// each part of its request stream, this long instead of
	// ResponseHeaderTimeout and RequestBodyTimeout, as it would through
	// the relay: a call may be slow, and a stream quiet, for long.
	StreamIdleTimeout time.Duration
	// MemoryBudget, if set, is the process's budget of bytes held by
	// client connections of the HTTP/2 relay (h2relay.Config.Budget).
	MemoryBudget *membudget.Budget
	// KeepAlive is the TCP keep-alive probe period of endpoint connections
	// dialled by the default Dial; 0 sends none.
	KeepAlive      time.Duration
	MaxHeaderBytes int // 0 means 64 KiB
	// MaxAttempts bounds the endpoints tried for one request when it is
	// safe to retry; 0 means 3.
	MaxAttempts int
	// Routes, if set, route each request to a backend of its own
	// (Backend), as the Gateway API's HTTPRoute and GRPCRoute do; then Key
	// is unused (each backend has its key) and the upstream given to New
	// only lends its registry and metrics. Affinity needs no routes.
	Routes *Routes
	// TLS, if set, serves TLS (ALPN h2, http/1.1) with this config.
	TLS *tls.Config
	// Affinity pins each client connection to one endpoint (picked by Key
	// on its first request) instead of balancing each request. Drain moves
	// a pinned HTTP/1.1 connection with "Connection: close"; an HTTP/2 one
	// with GOAWAY: in two steps (GOAWAY with the largest stream id, a PING,
	// then GOAWAY with the last stream id) with UpstreamH2, where the relay
	// serves it, and a single one from net/http's server without.
	Affinity bool
	// WebSocket options for upgraded connections.
	WebSocket WebSocketConfig
	// MaxConnections bounds the client connections open at once: at the
	// bound the listener stops accepting, and new connections wait in the
	// kernel's backlog until one closes. 0 means unlimited.
	MaxConnections int
	// MaxConnectionsPerClient bounds the connections open at once from one
	// client IP address; one above it is closed at once, counted as
	// rejected with reason "per_client". 0 means none.
	MaxConnectionsPerClient int
	Dial                    upstream.DialFunc
	Logger                  *zap.Logger
	// AccessLog configures the listener's access log: a line per request,
	// gRPC call and WebSocket session on Logger's child "access".
	AccessLog accesslog.Config
}

// Listener balances each HTTP request (each HTTP/2 stream, each gRPC
// call) on its own, over keep-alive or multiplexed connections pooled per
// endpoint.
type Listener struct {
	cfg     Config
	up      *upstream.Upstream
	def     *Backend               // the listener's own; nil with routes
	routes  atomic.Pointer[Routes] // with routes; swapped by SetRoutes
	reg     *upstream.Registry
	metrics *metrics.Metrics
	log     *zap.Logger
	access  *accesslog.Logger // nil: no access log
	srv     *http.Server
	h1      sync.Map // endpoint address -> *h1Pool
	// wsWG counts WebSocket upgrades and relays under way. wsMu orders
	// its Adds before Shutdown's Wait: once wsClosed is set, no Add.
	wsWG     sync.WaitGroup
	wsMu     sync.RWMutex
	wsClosed bool

	pins sync.Map // net.Conn -> *serverConn, with Affinity

	mir *mirrorSet // copies of requests for RequestMirror filters

	// relay serves HTTP/2 client connections frame by frame when
	// UpstreamH2 is set. Without it, a listener with routes has one too,
	// which serves no client connection: it only carries the requests
	// routed to H2 backends (RoundTrip) over its pooled h2c endpoint
	// connections, and drains and closes them with the listener. Nil
	// otherwise (no backend can be H2). clients holds its client
	// connections (*h2relay.Conn -> *relayConn), each pinned with
	// Affinity. splitWG counts the goroutines that sniff and serve
	// accepted connections.
	relay   *h2relay.Server
	clients relayClients
	splitWG sync.WaitGroup

	// Per-request series, resolved once: a label lookup per request costs
	// more than the observation.
	reqTime [6]prometheus.Observer // by HTTP status class 1..5; 0 is gRPC error
	grpcOK  prometheus.Observer
}

// New returns an HTTP listener balancing over up (with cfg.Routes, over
// the routes' backends): its sessions are registered in up's Registry and
// counted in up's Metrics.
func New(cfg Config, up *upstream.Upstream) *Listener {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 2 * time.Second
	}
	if cfg.KeepAliveIdle <= 0 {
		cfg.KeepAliveIdle = 75 * time.Second
	}
	if cfg.RequestBodyTimeout <= 0 {
		cfg.RequestBodyTimeout = 60 * time.Second
	}
	if cfg.ResponseHeaderTimeout <= 0 {
		cfg.ResponseHeaderTimeout = 60 * time.Second
	}
	if cfg.StreamIdleTimeout <= 0 {
		cfg.StreamIdleTimeout = time.Hour
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = 64 << 10
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.Dial == nil {
		cfg.Dial = upstream.NewDialer(cfg.KeepAlive)
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	m := up.Metrics()
	l := &Listener{cfg: cfg, up: up, reg: up.Registry(), metrics: m, log: cfg.Logger.With(zap.String("listener", cfg.Name)),
		grpcOK: m.RequestTime.WithLabelValues(cfg.Name, "ok")}
	l.mir = newMirrorSet(m, cfg.Name)
	l.access = accesslog.New(cfg.AccessLog, cfg.Name, cfg.Logger, m.AccessLogDropped)
	if cfg.Routes == nil {
		l.def = &Backend{Up: up, Key: cfg.Key, H2: cfg.UpstreamH2}
	} else {
		l.routes.Store(cfg.Routes)
	}
	l.reqTime[0] = m.RequestTime.WithLabelValues(cfg.Name, "error")
	for c := 1; c <= 5; c++ {
		l.reqTime[c] = m.RequestTime.WithLabelValues(cfg.Name, fmt.Sprintf("%dxx", c))
	}
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	protos.SetUnencryptedHTTP2(true)
	l.srv = &http.Server{
		Handler:           l,
		Protocols:         protos,
		ReadHeaderTimeout: 10 * time.Second, // slowloris
		// HTTP/1 keep-alive, and HTTP/2 with no stream open.
		IdleTimeout:    cfg.KeepAliveIdle,
		MaxHeaderBytes: cfg.MaxHeaderBytes,
		TLSConfig:      cfg.TLS,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:          1000,
			MaxReceiveBufferPerConnection: 4 << 20,
			MaxReceiveBufferPerStream:     1 << 20,
			// The protocol default (RFC 9113 section 4.2): a larger frame is a
			// connection error, and no client needs more.
			MaxReadFrameSize: 16 << 10,
		},
		ErrorLog: zap.NewStdLog(l.log.WithOptions(zap.IncreaseLevel(zap.WarnLevel))),
	}
	l.srv.ConnContext = withFraming
	if cfg.Affinity {
		l.srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			return l.pinContext(withFraming(ctx, c), c)
		}
		l.srv.ConnState = l.connState
	}
	if cfg.UpstreamH2 || cfg.Routes != nil {
		rc := h2relay.Config{
			Router: relayRouter{def: l.def, routes: &l.routes}, Observer: relayObserver{l},
			OnConn: l.onRelayConn, OnConnEnd: l.onRelayConnEnd,
			Dial: cfg.Dial, ConnectTimeout: cfg.ConnectTimeout, MaxAttempts: cfg.MaxAttempts,
			MaxHeaderListSize: uint32(cfg.MaxHeaderBytes), IdleTimeout: cfg.KeepAliveIdle,
			StreamIdleTimeout: cfg.StreamIdleTimeout, Budget: cfg.MemoryBudget,
		}
		l.relay = h2relay.New(rc)
	}
	return l
}

// Serve accepts connections on ln until Shutdown.
func (l *Listener) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() {
		l.srv.Close()
		l.mir.stop()
		if l.relay != nil {
			l.relay.Close()
		}
	})
	defer stop()
	if l.cfg.MaxConnections > 0 || l.cfg.MaxConnectionsPerClient > 0 {
		ln = listen.Limit(ln, listen.NewGate(l.cfg.MaxConnections, l.cfg.MaxConnectionsPerClient,
			l.metrics.Rejected.WithLabelValues(l.cfg.Name, "per_client")))
	}
	var err error
	if l.cfg.UpstreamH2 {
		err = l.serveSplit(ctx, ln)
	} else if l.cfg.TLS != nil {
		err = l.srv.ServeTLS(ln, "", "")
	} else {
		err = l.srv.Serve(framingListener{ln})
	}
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil // shut down, or its listener closed to stop accepting
	}
	return err
}

// Shutdown stops accepting, sends GOAWAY to the HTTP/2 clients still
// connected and closes idle HTTP/1 connections, and waits for requests,
// their mirrors' copies and upgraded sessions to end until ctx ends; then
// it closes (cancels) what is left.
// Moving sessions and clients off, paced, is drain's (see Clients); by the
// time Shutdown runs, most are gone.
func (l *Listener) Shutdown(ctx context.Context) error {
	relayErr := make(chan error, 1)
	if l.cfg.UpstreamH2 {
		// The relay's clients and net/http's leave side by side.
		go func() { relayErr <- l.relay.Shutdown(ctx) }()
	}
	err := l.srv.Shutdown(ctx)
	if err != nil {
		l.srv.Close()
	}
	// The handlers are done: no copy of a request starts any more. Those
	// in flight finish, or end with ctx, before the relay they may use
	// leaves.
	err = cmp.Or(err, l.mir.shutdown(ctx))
	switch {
	case l.cfg.UpstreamH2:
	case l.relay != nil:
		// It serves only the handlers' round trips: those of the handlers
		// still running after Shutdown (cut by Close) end now or with ctx.
		relayErr <- l.relay.Shutdown(ctx)
	default:
		relayErr <- nil
	}
	err = cmp.Or(err, <-relayErr)
	done := make(chan struct{})
	l.wsMu.Lock()
	l.wsClosed = true
	l.wsMu.Unlock()
	go func() { l.wsWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		for _, s := range l.reg.All() {
			if s.Info().Listener == l.cfg.Name {
				s.Close()
			}
		}
		<-done
		err = ctx.Err()
	}
	l.h1.Range(func(_, v any) bool { v.(*h1Pool).closeIdle(true); return true })
	return err
}

// DrainEndpoint moves this listener's upstream traffic off addr and returns
// when it is done, or at ctx's end: HTTP/2 endpoint connections get GOAWAY,
// their streams still open after plan's grace end at plan's pace (gRPC
// UNAVAILABLE with a retry pushback), those left at the deadline at once
// (see h2relay.Server.DrainEndpoint), the relay's streams and the
// requests net/http's handlers send to H2 backends alike (a gRPC call of
// theirs then ends with UNAVAILABLE and the pushback, see copyResponse);
// HTTP/1.1 connections close once idle. The picker already excludes addr,
// so no new request goes there.
func (l *Listener) DrainEndpoint(ctx context.Context, addr string, plan h2relay.StreamPlan) {
	if l.relay != nil {
		l.relay.DrainEndpoint(ctx, addr, plan)
	}
	if p, ok := l.h1.LoadAndDelete(addr); ok {
		p.(*h1Pool).drain(ctx)
	}
}
