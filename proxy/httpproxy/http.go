package httpproxy

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longhaul-proxy/longhaul/proxy/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/net/http2"

	"github.com/longhaul-proxy/longhaul/internal/membudget"
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
	// and only HTTP/1 clients by net/http.
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
	// means 1h.
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
}

// Listener balances each HTTP request (each HTTP/2 stream, each gRPC
// call) on its own, over keep-alive or multiplexed connections pooled per
// endpoint.
type Listener struct {
	cfg     Config
	up      *upstream.Upstream
	reg     *upstream.Registry
	metrics *metrics.Metrics
	log     *zap.Logger
	srv     *http.Server
	h2      *h2Pool
	h1      sync.Map // endpoint address -> *http.Transport
	closing atomic.Bool
	// wsWG counts WebSocket upgrades and relays under way. wsMu orders
	// its Adds before Shutdown's Wait: once wsClosed is set, no Add.
	wsWG     sync.WaitGroup
	wsMu     sync.RWMutex
	wsClosed bool

	pins sync.Map // net.Conn -> *serverConn, with Affinity

	// relay serves HTTP/2 client connections frame by frame when
	// UpstreamH2 is set; nil otherwise. clients holds its connections
	// (*h2relay.Conn -> *relayConn), each pinned with Affinity. splitWG
	// counts the goroutines that sniff and serve accepted connections.
	relay   *h2relay.Server
	clients relayClients
	splitWG sync.WaitGroup

	// Per-request series, resolved once: a label lookup per request costs
	// more than the observation.
	reqTime [6]prometheus.Observer // by HTTP status class 1..5; 0 is gRPC error
	grpcOK  prometheus.Observer
}

// NewHTTP returns an HTTP listener balancing over up, whose sessions are
// registered in up's Registry.
func New(cfg Config, up *upstream.Upstream, m *metrics.Metrics) *Listener {
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
	if m == nil {
		m = metrics.New(nil)
	}
	l := &Listener{cfg: cfg, up: up, reg: up.Registry(), metrics: m, log: cfg.Logger.With(zap.String("listener", cfg.Name)),
		grpcOK: m.RequestTime.WithLabelValues(cfg.Name, "ok")}
	l.reqTime[0] = m.RequestTime.WithLabelValues(cfg.Name, "error")
	for c := 1; c <= 5; c++ {
		l.reqTime[c] = m.RequestTime.WithLabelValues(cfg.Name, fmt.Sprintf("%dxx", c))
	}
	l.h2 = newH2Pool(cfg.Dial, cfg.ConnectTimeout)
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
	if cfg.UpstreamH2 {
		rc := h2relay.Config{
			Router: relayRouter{up: up, key: cfg.Key}, Observer: relayObserver{l},
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
	if l.relay != nil {
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
// connected and closes idle HTTP/1 connections, and waits for requests and
// upgraded sessions to end until ctx ends; then it closes what is left.
// Moving sessions and clients off, paced, is drain's (see Clients); by the
// time Shutdown runs, most are gone.
func (l *Listener) Shutdown(ctx context.Context) error {
	l.closing.Store(true)
	relayErr := make(chan error, 1)
	if l.relay != nil {
		go func() { relayErr <- l.relay.Shutdown(ctx) }()
	} else {
		relayErr <- nil
	}
	err := l.srv.Shutdown(ctx)
	if err != nil {
		l.srv.Close()
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
	l.h2.CloseAll()
	l.h1.Range(func(_, v any) bool { v.(*http.Transport).CloseIdleConnections(); return true })
	return err
}

// DrainEndpoint moves this listener's upstream traffic off addr: its HTTP/2
// connections get GOAWAY and their streams until the deadline, then close.
// The picker already excludes addr, so no new request goes there.
func (l *Listener) DrainEndpoint(ctx context.Context, addr string) {
	if t, ok := l.h1.LoadAndDelete(addr); ok {
		// Idle keep-alive connections close now; those carrying a request
		// go back to this (forgotten) transport when it ends, and are
		// closed at the deadline.
		tr := t.(*http.Transport)
		tr.CloseIdleConnections()
		if deadline, ok := ctx.Deadline(); ok {
			time.AfterFunc(time.Until(deadline)+time.Second, tr.CloseIdleConnections)
		}
	}
	if l.relay == nil {
		l.h2.Drain(ctx, addr)
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { l.relay.DrainEndpoint(ctx, addr) })
	l.h2.Drain(ctx, addr)
	wg.Wait()
}

// roundTrip sends out to the endpoint at addr: over HTTP/2 with
// UpstreamH2, else over HTTP/1.1 keep-alive connections.
func (l *Listener) roundTrip(out *http.Request, addr string) (*http.Response, error) {
	if l.cfg.UpstreamH2 {
		return l.h2.t.RoundTripOpt(out, http2.RoundTripOpt{})
	}
	return l.h1Transport(addr).RoundTrip(out)
}

func (l *Listener) h1Transport(addr string) *http.Transport {
	if t, ok := l.h1.Load(addr); ok {
		return t.(*http.Transport)
	}
	t := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := l.cfg.Dial(ctx, network, addr)
			if err != nil {
				return nil, &upstream.DialError{Addr: addr, Err: err}
			}
			return c, nil
		},
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 0,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
	}
	t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // HTTP/1 only
	actual, _ := l.h1.LoadOrStore(addr, t)
	return actual.(*http.Transport)
}

// hopHeaders are removed when a request or response crosses the proxy
// (RFC 9110 section 7.6.1), with the names listed in Connection.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func removeHopHeaders(h http.Header) {
	for _, f := range h["Connection"] {
		for _, name := range strings.Split(f, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		if _, ok := h[name]; ok {
			delete(h, name)
		}
	}
}

func isGRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return r.ProtoMajor == 2 && strings.HasPrefix(ct, "application/grpc")
}

func (l *Listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	client := clientAddr(r)
	if r.ProtoMajor == 1 && requestHadBoth(r) {
		// Request smuggling, or a client one would take for it: refuse it
		// and close, so that nothing after it on the connection is read.
		w.Header().Set("Connection", "close")
		http.Error(w, "longhaul: both Content-Length and Transfer-Encoding", http.StatusBadRequest)
		return
	}
	if isWebSocketUpgrade(r) {
		l.serveWebSocket(w, r, client)
		return
	}
	grpc := isGRPC(r)
	// The endpoint's response headers are awaited for at most
	// ResponseHeaderTimeout, retries included.
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	headerTimer := time.AfterFunc(l.cfg.ResponseHeaderTimeout, func() { cancel(errResponseHeaderTimeout) })
	out := l.outRequest(r, client).WithContext(ctx)
	key := l.cfg.Key.Hash(r, client)
	body := &trackedBody{ReadCloser: r.Body}
	if r.Body != nil && r.Body != http.NoBody {
		body.bound(http.NewResponseController(w), l.cfg.RequestBodyTimeout)
		defer body.finish()
		out.Body = body
	}

	var resp *http.Response
	pin := pinOf(r) // nil without affinity
	prefer, leave := "", false
	if pin != nil {
		prefer = pin.addr()
	}
	lease, err := l.up.Try(upstream.Attempt{Key: key, Prefer: prefer, Max: l.cfg.MaxAttempts}, func(ls *upstream.Lease) (err error) {
		if pin != nil {
			// The pinned connection counts as load, and so does each
			// request in flight on it.
			leave = pin.follow(key, ls.Addr()) || leave
		}
		out.URL.Host = ls.Addr()
		resp, err = l.roundTrip(out, ls.Addr())
		return err
	}, func(err error) bool { return retryable(err, body, r) && r.Context().Err() == nil })
	if !headerTimer.Stop() {
		// Timed out, or the headers came as it fired: the request's context
		// is cancelled either way, so the body could not be relayed.
		if resp != nil {
			resp.Body.Close()
			lease.Release()
		}
		l.fail(w, r, grpc, http.StatusGatewayTimeout, "no response headers from the endpoint within "+l.cfg.ResponseHeaderTimeout.String())
		return
	}
	if berr := body.readErr(); berr != nil && resp == nil {
		// The client's body failed, not the endpoint: too slow (408) or
		// malformed, such as a bad chunk size (400). The connection
		// closes: the rest of the body cannot be framed.
		w.Header().Set("Connection", "close")
		if errors.Is(berr, os.ErrDeadlineExceeded) {
			l.fail(w, r, grpc, http.StatusRequestTimeout, "request body: no data within "+l.cfg.RequestBodyTimeout.String())
		} else {
			l.fail(w, r, grpc, http.StatusBadRequest, "request body malformed")
		}
		return
	}
	if err != nil {
		if r.Context().Err() != nil {
			// The client went away (or half-closed): abort rather than
			// let the server send an empty 200 in our name.
			panic(http.ErrAbortHandler)
		}
		if errors.Is(err, upstream.ErrNoEndpoint) {
			l.fail(w, r, grpc, http.StatusServiceUnavailable, "no endpoint available")
			return
		}
		// What failed stays in the log: it names endpoints.
		l.log.Debug("request failed", zap.Error(err))
		l.fail(w, r, grpc, http.StatusBadGateway, "upstream request failed")
		return
	}
	defer lease.Release()
	if leave || pin != nil && pin.moving.Load() {
		// Moved, or asked to move: HTTP/1.1 closes after this response,
		// HTTP/2 sends GOAWAY and closes once its streams are done.
		w.Header()["Connection"] = []string{"close"}
	}
	l.copyResponse(w, resp, grpc)
	l.observe(start, resp, grpc)
}

// observe records a proxied request's duration by its outcome class.
func (l *Listener) observe(start time.Time, resp *http.Response, grpc bool) {
	took := time.Since(start).Seconds()
	if grpc {
		st := resp.Trailer.Get("Grpc-Status")
		if st == "" {
			st = resp.Header.Get("Grpc-Status") // trailers-only
		}
		if st == "0" {
			l.grpcOK.Observe(took)
		} else {
			l.reqTime[0].Observe(took)
		}
		return
	}
	if c := resp.StatusCode / 100; c >= 1 && c <= 5 {
		l.reqTime[c].Observe(took)
	}
}

// retryable reports whether a failed attempt may go to another endpoint:
// the connection could not be made, or the request was refused before the
// endpoint processed it, and no byte of its body was consumed.
func retryable(err error, body *trackedBody, r *http.Request) bool {
	if body.read.Load() {
		return false
	}
	var de *upstream.DialError
	if errors.As(err, &de) {
		return true
	}
	var se http2.StreamError
	if errors.As(err, &se) && se.Code == http2.ErrCodeRefusedStream {
		return true
	}
	// An idempotent HTTP/1 request whose body was not sent.
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return r.ProtoMajor == 1
	}
	return false
}

var errResponseHeaderTimeout = errors.New("response header timeout")

// trackedBody is a request body on its way to an endpoint. It records
// whether any byte was read, which makes a retry unsafe, and the first read
// error. Once bound, each read waits at most timeout for data, through the
// server's read deadline on the connection (HTTP/1) or stream (HTTP/2).
//
// No deadline outlives the body: the end of the body clears it, for
// net/http then reads the connection in the background, and a deadline
// left there would cancel the request while the endpoint answers. A body
// that did not end keeps its last deadline, which bounds net/http's
// discarding of the rest and is replaced by the next request's. After
// finish (the handler returned) the deadline is no longer touched.
type trackedBody struct {
	io.ReadCloser
	read atomic.Bool

	rc      *http.ResponseController // nil: reads are not bounded
	timeout time.Duration
	mu      sync.Mutex
	done    bool
	err     error
}

// bound makes each read wait at most timeout, through rc.
func (b *trackedBody) bound(rc *http.ResponseController, timeout time.Duration) {
	b.rc, b.timeout = rc, timeout
}

func (b *trackedBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	b.setDeadline(time.Now().Add(b.timeout))
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.setDeadline(time.Time{})
	} else if err != nil {
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

func (b *trackedBody) setDeadline(t time.Time) {
	if b.rc == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.done {
		b.rc.SetReadDeadline(t)
	}
}

// finish gives the deadline back to the server: the handler returns.
func (b *trackedBody) finish() {
	b.mu.Lock()
	b.done = true
	b.mu.Unlock()
}

// readErr returns the first error reading the body gave, other than EOF.
func (b *trackedBody) readErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

func clientAddr(r *http.Request) netip.AddrPort {
	ap, _ := netip.ParseAddrPort(r.RemoteAddr)
	return ap
}

// outRequest turns the server's request into the upstream request, in
// place: the server hands the handler its own request, which nothing else
// reads after us.
func (l *Listener) outRequest(r *http.Request, client netip.AddrPort) *http.Request {
	out := r.WithContext(r.Context()) // shallow copy; headers shared
	out.RequestURI = ""
	out.Close = false
	u := *r.URL
	u.Scheme = "http"
	out.URL = &u
	h := r.Header
	te := h["Te"]
	removeHopHeaders(h)
	for _, v := range te {
		if strings.EqualFold(strings.TrimSpace(v), "trailers") {
			h["Te"] = []string{"trailers"} // gRPC needs it end to end
		}
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	ip := client.Addr().Unmap().String()
	if prior := h["X-Forwarded-For"]; len(prior) > 0 {
		h["X-Forwarded-For"] = []string{strings.Join(prior, ", ") + ", " + ip}
	} else {
		h["X-Forwarded-For"] = []string{ip}
	}
	h["X-Forwarded-Proto"] = []string{proto}
	fwd := "for=" + ip
	if client.Addr().Unmap().Is6() {
		fwd = `for="[` + ip + `]"`
	}
	fwd += ";proto=" + proto
	if r.Host != "" {
		fwd += `;host="` + r.Host + `"`
	}
	h["Forwarded"] = append(h["Forwarded"], fwd)
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""} // do not let the transport add Go's
	}
	return out
}

// copyBufPool holds relay buffers for response bodies.
var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (l *Listener) copyResponse(w http.ResponseWriter, resp *http.Response, grpc bool) {
	defer resp.Body.Close()
	removeHopHeaders(resp.Header)
	wh := w.Header()
	for k, v := range resp.Header {
		wh[k] = v
	}
	announced := len(resp.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		wh["Trailer"] = []string{strings.Join(keys, ", ")}
	}
	if grpc && resp.Header.Get("Grpc-Status") != "" {
		// A trailers-only response (RFC: gRPC over HTTP/2): the status is in
		// the only HEADERS frame, which must carry END_STREAM. Writing the
		// header without a flush and returning sends exactly that.
		w.WriteHeader(resp.StatusCode)
		return
	}
	w.WriteHeader(resp.StatusCode)
	var copyErr error
	flusher, _ := w.(http.Flusher)
	if (resp.ContentLength < 0 || grpc) && flusher != nil {
		// A stream, or a body of unknown length: pass data on as it comes,
		// without a write per part when parts come together.
		rerr, werr := streamBody(w, flusher.Flush, resp.Body)
		copyErr = cmp.Or(rerr, werr)
	} else {
		bp := copyBufPool.Get().(*[]byte)
		_, copyErr = io.CopyBuffer(writerOnly{w}, resp.Body, *bp)
		copyBufPool.Put(bp)
	}
	if copyErr != nil {
		if grpc {
			// The endpoint went away mid-call (drained or failed): end the
			// call with UNAVAILABLE so that the client retries elsewhere.
			wh[http.TrailerPrefix+"Grpc-Status"] = []string{"14"}
			wh[http.TrailerPrefix+"Grpc-Message"] = []string{"upstream connection lost"}
			return
		}
		panic(http.ErrAbortHandler) // reset the stream (or close the HTTP/1 connection)
	}
	for k, v := range resp.Trailer {
		if announced > 0 {
			wh[k] = v
		} else {
			wh[http.TrailerPrefix+k] = v
		}
	}
}

// fail answers a request that could not be proxied. gRPC clients get a
// trailers-only UNAVAILABLE response, which they may retry.
func (l *Listener) fail(w http.ResponseWriter, r *http.Request, grpc bool, code int, msg string) {
	if grpc {
		h := w.Header()
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", "14")
		h.Set("Grpc-Message", msg)
		w.WriteHeader(http.StatusOK)
		return
	}
	http.Error(w, fmt.Sprintf("longhaul: %s", msg), code)
}

// writerOnly hides every method but Write, so that io.CopyBuffer uses the
// given buffer rather than a ReaderFrom of the ResponseWriter.
type writerOnly struct{ io.Writer }
