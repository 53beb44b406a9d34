package h2relay

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// ErrServerClosed is returned by ServeConn after Shutdown or Close.
var ErrServerClosed = errors.New("h2relay: server closed")

// Server relays HTTP/2 client connections to endpoints. Its methods are
// safe for concurrent use.
type Server struct {
	cfg  Config
	pool *pool
	// ctx bounds dials; cancelled when the server closes.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	conns   map[*clientConn]struct{}
	closing bool
	// wg counts the goroutines the server starts (upstream readers and
	// writers, dials); a client connection's writer is waited for by its
	// ServeConn.
	wg sync.WaitGroup

	// rtMu protects the count of round trips in flight (from RoundTrip's
	// start until their stream finished or they failed) and rtIdle, closed
	// when the count drops to 0, for Shutdown. It comes after a stream's
	// mu.
	rtMu       sync.Mutex
	roundTrips int
	rtIdle     chan struct{}
}

// roundTripStarted and roundTripEnded count a round trip in flight.
func (s *Server) roundTripStarted() {
	s.rtMu.Lock()
	s.roundTrips++
	s.rtMu.Unlock()
}

func (s *Server) roundTripEnded() {
	s.rtMu.Lock()
	s.roundTrips--
	if s.roundTrips == 0 && s.rtIdle != nil {
		close(s.rtIdle)
		s.rtIdle = nil
	}
	s.rtMu.Unlock()
}

// roundTripsDone returns a channel closed once no round trip is in
// flight.
func (s *Server) roundTripsDone() <-chan struct{} {
	s.rtMu.Lock()
	defer s.rtMu.Unlock()
	if s.roundTrips == 0 {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	if s.rtIdle == nil {
		s.rtIdle = make(chan struct{})
	}
	return s.rtIdle
}

// New returns a Server; cfg.Router is required unless cfg.OnConn gives
// every connection a Router.
func New(cfg Config) *Server {
	cfg.setDefaults()
	s := &Server{cfg: cfg, conns: make(map[*clientConn]struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.pool = newPool(s)
	return s
}

// ServeConn serves one client connection that speaks HTTP/2 (h2c with prior
// knowledge, or TLS after ALPN chose h2) until it ends, ctx is cancelled,
// or the server closes. It closes nc.
func (s *Server) ServeConn(ctx context.Context, nc net.Conn) error {
	cc := newClientConn(s, nc)
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		nc.Close()
		return ErrServerClosed
	}
	s.conns[cc] = struct{}{}
	s.mu.Unlock()
	unregister := s.cfg.Budget.Register(cc)
	defer func() {
		s.mu.Lock()
		delete(s.conns, cc)
		s.mu.Unlock()
		unregister()
		if cc.account != nil {
			// Whatever is still counted is gone with the connection.
			cc.addHeld(-cc.held.Load())
		}
	}()
	stop := context.AfterFunc(ctx, cc.abort)
	defer stop()
	cc.router = s.cfg.Router
	if s.cfg.OnConn != nil {
		h := &Conn{cc: cc}
		defer h.stop()
		if s.cfg.OnConnEnd != nil {
			defer s.cfg.OnConnEnd(h)
		}
		if r := s.cfg.OnConn(h); r != nil {
			cc.router = r
		}
	}
	return cc.serve()
}

// clientAddrOf returns the client address of nc and whether it is TLS.
func clientAddrOf(nc net.Conn) (netip.AddrPort, bool) {
	_, isTLS := nc.(*tls.Conn)
	var ap netip.AddrPort
	switch a := nc.RemoteAddr().(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		if a != nil {
			ap, _ = netip.ParseAddrPort(a.String())
		}
	}
	return ap, isTLS
}

func (s *Server) clientConns() []*clientConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := make([]*clientConn, 0, len(s.conns))
	for cc := range s.conns {
		list = append(list, cc)
	}
	return list
}

// Shutdown stops the server gracefully: every client connection gets
// GOAWAY (first with the largest stream id, then, after a PING round trip,
// with the last stream it accepted), its streams and the round trips in
// flight run until they end or ctx does, and then everything is closed
// (round trips still running fail). It returns ctx.Err() if streams or
// round trips were cut.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	conns := s.clientConns()
	for _, cc := range conns {
		cc.startShutdown()
	}
	var err error
	for _, cc := range conns {
		select {
		case <-cc.done:
		case <-ctx.Done():
			err = ctx.Err()
		}
		if err != nil {
			break
		}
	}
	if err == nil {
		select {
		case <-s.roundTripsDone():
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err != nil {
		s.abortAll()
	}
	s.stop()
	return err
}

// Close closes every connection at once.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.abortAll()
	s.stop()
	return nil
}

// abortAll closes every client connection at once and waits until each
// has ended.
func (s *Server) abortAll() {
	conns := s.clientConns()
	for _, cc := range conns {
		cc.abort()
	}
	for _, cc := range conns {
		<-cc.done
	}
}

// stop ends what outlives the client connections (dials under way, the
// endpoint pool) and waits for their goroutines.
func (s *Server) stop() {
	s.cancel()
	s.pool.closeAll()
	s.wg.Wait()
}

// StreamPlan paces the ends of the streams a drain finds open: Start is
// when the grace after the GOAWAY ends, Ends(n) when each of n streams
// still open then is ended, ascending, with the retry pushback its gRPC
// client is given. The caller (the drain controller) owns these decisions;
// the relay only counts and ends the streams. It is an alias of an
// interface literal, identical to drain.StreamPlan, so that the relay needs
// no import of drain. The relay waits for its times on the real clock.
type StreamPlan = interface {
	Start() time.Time
	Ends(n int) (at []time.Time, pushback []time.Duration)
}

// DrainEndpoint moves streams and round trips off addr: its connections get
// GOAWAY and take no new stream. With a plan, the streams still open at
// plan.Start() are ended one at each time plan.Ends gives (in random
// order; a stream over before its turn is left alone): gRPC calls with
// UNAVAILABLE and a grpc-retry-pushback-ms trailer, other streams with
// RST_STREAM REFUSED_STREAM if no response header went out, else as when
// the endpoint is lost (see failToClient); round trips fail with an
// UpstreamError. Without a plan (nil) streams run until ctx ends. What is
// open when ctx ends ends at once (gRPC UNAVAILABLE, or 502 / RST_STREAM; a
// round trip with an UpstreamError) and the connections close. The pacing
// runs on the caller's goroutine, with one timer stopped before it
// returns, and holds no lock while it waits. A connection
// whose dial was under way gets GOAWAY as it comes, with no stream. It
// returns when they are closed. Until then addr takes no new stream and is
// not dialled: a stream routed to it goes to another endpoint, a round
// trip gets a retryable error. The Router is expected to no longer pick
// addr.
func (s *Server) DrainEndpoint(ctx context.Context, addr string, plan StreamPlan) {
	s.pool.drain(ctx, addr, plan)
}
