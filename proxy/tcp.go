package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/internal/guard"
)

// KeyFunc derives the balancing key of a client connection from its address.
type KeyFunc func(client netip.AddrPort) uint64

// KeyClientIP hashes the client's IP address (the default L4 key).
func KeyClientIP(c netip.AddrPort) uint64 { return balancer.HashAddr(c.Addr()) }

// KeyClientIPPort hashes the client's IP address and port.
func KeyClientIPPort(c netip.AddrPort) uint64 { return balancer.HashAddrPort(c) }

// DialFunc opens a connection to an endpoint. It should return a
// *net.TCPConn: any other type turns splice off for that session.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// TCPConfig configures a raw TCP listener.
type TCPConfig struct {
	Name           string
	Key            KeyFunc       // nil means KeyClientIP
	ConnectTimeout time.Duration // per attempt; 0 means 2s
	IdleTimeout    time.Duration // both directions quiet this long ends a session; 0 means none
	MaxConnections int           // 0 means unlimited
	// MaxAttempts bounds the endpoints tried when connecting fails; 0 means 3.
	MaxAttempts int
	// AcceptProxy expects a PROXY protocol (v1 or v2) header from a front
	// load balancer on each connection; its source address becomes the key.
	AcceptProxy bool
	// SendProxy sends a PROXY protocol v2 header to the endpoint first.
	SendProxy bool
	// DrainImmediate closes a migrating session at once instead of at its
	// drain deadline.
	DrainImmediate bool
	// HeaderTimeout bounds the wait for a PROXY header; 0 means 5s.
	HeaderTimeout time.Duration
	Dial          DialFunc // nil means a net.Dialer
	Logger        *zap.Logger
}

// relayRound is the most one io.CopyN round moves before the idle deadline
// is pushed forward. io.CopyN wraps the source in an *io.LimitedReader,
// which the runtime still splices.
const relayRound = 4 << 20

// TCPListener relays raw TCP connections to endpoints chosen per connection.
// Both sides stay *net.TCPConn so that the kernel splices the bytes.
type TCPListener struct {
	cfg     TCPConfig
	up      *Upstream
	reg     *Registry
	metrics *Metrics
	log     *zap.Logger

	active   atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	ln       net.Listener
	closing  atomic.Bool
	bytesUp  interface{ Add(float64) }
	bytesDn  interface{ Add(float64) }
	picksOK  interface{ Inc() }
	picksNil interface{ Inc() }
}

// NewTCP returns a TCP listener that balances over up and registers its
// sessions in reg.
func NewTCP(cfg TCPConfig, up *Upstream, reg *Registry, m *Metrics) *TCPListener {
	if cfg.Key == nil {
		cfg.Key = KeyClientIP
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 2 * time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.HeaderTimeout <= 0 {
		cfg.HeaderTimeout = 5 * time.Second
	}
	if cfg.Dial == nil {
		d := &net.Dialer{KeepAlive: -1} // see Listen
		cfg.Dial = d.DialContext
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	return &TCPListener{cfg: cfg, up: up, reg: reg, metrics: m, log: cfg.Logger.With(zap.String("listener", cfg.Name)),
		bytesUp:  m.Bytes.WithLabelValues(cfg.Name, "upstream"),
		bytesDn:  m.Bytes.WithLabelValues(cfg.Name, "downstream"),
		picksOK:  m.Picks.WithLabelValues(cfg.Name, "ok"),
		picksNil: m.Picks.WithLabelValues(cfg.Name, "none"),
	}
}

// Serve accepts connections on ln until ctx ends or Shutdown is called. It
// closes ln before returning. Sessions outlive Serve; Shutdown ends them.
func (l *TCPListener) Serve(ctx context.Context, ln net.Listener) error {
	l.mu.Lock()
	l.ln = ln
	l.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer ln.Close()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if l.closing.Load() || ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: wait and go on, as
			// net/http does, rather than spinning or giving up.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn("accept failed; retrying", zap.Error(err), zap.Duration("backoff", backoff))
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		backoff = 0
		if n := l.active.Add(1); l.cfg.MaxConnections > 0 && n > int64(l.cfg.MaxConnections) {
			l.active.Add(-1)
			l.metrics.Rejected.WithLabelValues(l.cfg.Name, "limit").Inc()
			c.Close()
			continue
		}
		// Adds are ordered before Shutdown's Wait: once closing is set
		// under mu, no session starts.
		l.mu.Lock()
		if l.closing.Load() {
			l.mu.Unlock()
			l.active.Add(-1)
			c.Close()
			return nil
		}
		l.wg.Add(1)
		l.mu.Unlock()
		go func() {
			defer l.wg.Done()
			defer l.active.Add(-1)
			defer guard.Recover("tcp", func() { c.Close() })
			l.handle(ctx, c)
		}()
	}
}

// Active returns the number of client connections being handled.
func (l *TCPListener) Active() int { return int(l.active.Load()) }

// Shutdown stops accepting, lets sessions end by themselves until ctx ends,
// then closes those left (delivering what was already read) and waits for
// them to finish.
func (l *TCPListener) Shutdown(ctx context.Context) error {
	l.mu.Lock()
	l.closing.Store(true)
	if l.ln != nil {
		l.ln.Close()
	}
	l.mu.Unlock()
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	for _, s := range l.reg.All() {
		if s.Info().Listener == l.cfg.Name {
			s.Close()
		}
	}
	<-done
	return ctx.Err()
}

func (l *TCPListener) handle(ctx context.Context, c net.Conn) {
	client, _ := c.(*net.TCPConn)
	clientAddr := addrPortOf(c.RemoteAddr())
	if l.cfg.AcceptProxy {
		c.SetReadDeadline(time.Now().Add(l.cfg.HeaderTimeout))
		h, err := ReadProxyHeader(c)
		if err != nil {
			l.metrics.Rejected.WithLabelValues(l.cfg.Name, "proxy_header").Inc()
			l.log.Debug("closing client: bad PROXY header", zap.Stringer("client", c.RemoteAddr()), zap.Error(err))
			c.Close()
			return
		}
		c.SetReadDeadline(time.Time{})
		if !h.Local {
			clientAddr = h.Source
		}
	}
	backend, t, err := l.connect(ctx, l.cfg.Key(clientAddr))
	if err != nil {
		l.log.Debug("closing client: no endpoint", zap.Stringer("client", c.RemoteAddr()), zap.Error(err))
		c.Close()
		return
	}
	defer t.Release()
	if l.cfg.SendProxy {
		var hb [64]byte
		hdr := AppendProxyV2(hb[:0], clientAddr, addrPortOf(c.LocalAddr()))
		if _, err := backend.Write(hdr); err != nil {
			l.metrics.DialErrors.WithLabelValues(l.cfg.Name, t.Endpoint.Address).Inc()
			c.Close()
			backend.Close()
			return
		}
	}
	s := &tcpSession{
		info: SessionInfo{ID: l.reg.NewID(), Listener: l.cfg.Name, Protocol: "tcp",
			Endpoint: t.Endpoint.Address, Client: clientAddr.String(), Started: time.Now()},
		client: c, backend: backend, clientTCP: client, idle: l.cfg.IdleTimeout,
		closeAtOnce: l.cfg.DrainImmediate,
	}
	s.backendTCP, _ = backend.(*net.TCPConn)
	remove := l.reg.Register(t.Endpoint.Address, s.info.ID, s)
	defer remove()
	active := l.metrics.SessionsActive.WithLabelValues(l.cfg.Name, t.Endpoint.Address)
	active.Inc()
	defer active.Dec()
	l.metrics.SessionsTotal.WithLabelValues(l.cfg.Name, t.Endpoint.Address).Inc()
	s.relay(l.bytesUp, l.bytesDn)
}

// connect picks an endpoint and dials it, trying the next choice on a
// connect failure, at most MaxAttempts times. No byte has been relayed yet,
// so a retry is always safe. The returned target has been acquired.
func (l *TCPListener) connect(ctx context.Context, key uint64) (net.Conn, *balancer.Target, error) {
	p := l.up.Picker()
	if p == nil {
		l.picksNil.Inc()
		return nil, nil, errors.New("no endpoints yet")
	}
	var triedBuf [8]*balancer.Target
	tried := triedBuf[:0]
	var lastErr error
	for attempt := 0; attempt < l.cfg.MaxAttempts && attempt < len(triedBuf); attempt++ {
		t := p.Pick(key, tried)
		if t == nil {
			break
		}
		t.Acquire() // count it now so that concurrent bounded picks see it
		dctx, cancel := context.WithTimeout(ctx, l.cfg.ConnectTimeout)
		conn, err := l.cfg.Dial(dctx, "tcp", t.Endpoint.Address)
		cancel()
		if err == nil {
			l.picksOK.Inc()
			return conn, t, nil
		}
		t.Release()
		l.metrics.DialErrors.WithLabelValues(l.cfg.Name, t.Endpoint.Address).Inc()
		l.log.Debug("dial failed", zap.String("endpoint", t.Endpoint.Address), zap.Error(err))
		lastErr = fmt.Errorf("dial %s: %w", t.Endpoint.Address, err)
		tried = append(tried, t)
	}
	l.picksNil.Inc()
	if lastErr == nil {
		lastErr = errors.New("no eligible endpoint")
	}
	return nil, nil, lastErr
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// tcpSession relays one client connection to one endpoint.
type tcpSession struct {
	info                  SessionInfo
	client, backend       net.Conn
	clientTCP, backendTCP *net.TCPConn // nil when not TCP (no splice, no half-close)
	idle                  time.Duration

	// closeAtOnce makes Migrate close the session at once rather than at
	// its deadline.
	closeAtOnce bool

	lastActive atomic.Int64 // unix nanos of the last byte moved either way
	stopping   atomic.Bool
	// eofs counts the directions that read their source to EOF. The
	// second has no half-close to pass on: both sockets have been read to
	// their end, so the close that follows sends the FIN by itself.
	eofs atomic.Int32
	mig  migration
}

func (s *tcpSession) Info() SessionInfo {
	i := s.info
	asked, deadline := s.mig.state()
	i.Migrating, i.Deadline = !asked.IsZero(), deadline
	return i
}

func (s *tcpSession) migrationResult() (time.Time, string) {
	asked, _ := s.mig.state()
	return asked, s.mig.result()
}

// Migrate closes the session at deadline (at once if it has passed, or if
// the listener's drain mode is immediate): raw TCP has no way to ask a
// client to reconnect, so the deadline gives it time to finish on its own.
// Closing delivers every byte already read, then half-closes both sides.
func (s *tcpSession) Migrate(deadline time.Time) {
	if !s.mig.begin(deadline, s.Close) {
		return
	}
	if s.closeAtOnce {
		s.mig.closedByPolicy()
		s.Close()
	}
}

// Close stops both directions at their next read; everything already read
// is written out, then each side gets a FIN and the session ends.
func (s *tcpSession) Close() {
	s.stopping.Store(true)
	now := time.Now()
	s.client.SetReadDeadline(now)
	s.backend.SetReadDeadline(now)
	// A peer that stopped reading must not hold the session forever.
	s.client.SetWriteDeadline(now.Add(closeGrace))
	s.backend.SetWriteDeadline(now.Add(closeGrace))
}

// closeGrace bounds how long Close waits to write out bytes already read.
const closeGrace = 5 * time.Second

var errIdle = errors.New("idle timeout")

func (s *tcpSession) relay(up, down interface{ Add(float64) }) {
	s.lastActive.Store(time.Now().UnixNano())
	errc := make(chan error, 1)
	defer guard.Recover("tcp", s.abort)
	go func() {
		defer guard.Recover("tcp", func() { s.abort(); errc <- errPanicked })
		errc <- s.half(s.backend, s.client, s.backendTCP, up)
	}()
	err1 := s.half(s.client, s.backend, s.clientTCP, down)
	if err1 != nil {
		// A reset or a timeout on one side ends both.
		s.Close()
	}
	err2 := <-errc
	if err2 != nil && err1 == nil {
		s.Close()
	}
	s.client.Close()
	s.backend.Close()
	s.mig.end()
}

// half copies src to dst until EOF, then half-closes dst. It returns nil on
// a clean EOF.
func (s *tcpSession) half(dst, src net.Conn, dstTCP *net.TCPConn, bytes interface{ Add(float64) }) error {
	if testHookRelay != nil {
		testHookRelay(s, dst == s.backend)
	}
	for {
		if s.idle > 0 && !s.stopping.Load() {
			src.SetReadDeadline(time.Now().Add(s.idle))
			if s.stopping.Load() { // Close ran meanwhile: keep its deadline
				src.SetReadDeadline(time.Now())
			}
		}
		var n int64
		var err error
		if dstTCP != nil {
			n, err = io.CopyN(dstTCP, src, relayRound)
		} else {
			n, err = io.CopyN(dst, src, relayRound)
		}
		if n > 0 {
			s.lastActive.Store(time.Now().UnixNano())
			bytes.Add(float64(n))
		}
		switch {
		case err == nil:
			continue
		case errors.Is(err, io.EOF):
			if s.eofs.Add(1) == 1 {
				closeWrite(dst)
			}
			return nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			if s.stopping.Load() {
				closeWrite(dst)
				return nil
			}
			if time.Since(time.Unix(0, s.lastActive.Load())) < s.idle {
				continue // the other direction is busy, or bytes moved this round
			}
			closeWrite(dst)
			return errIdle
		default:
			return err
		}
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}
