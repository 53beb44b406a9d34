package tcpproxy

import (
	"cmp"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/longhaul-proxy/longhaul/proxy/metrics"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/internal/guard"
	"github.com/longhaul-proxy/longhaul/proxy/accesslog"
	"github.com/longhaul-proxy/longhaul/proxy/listen"
	"github.com/longhaul-proxy/longhaul/proxy/readiness"
	"github.com/longhaul-proxy/longhaul/proxy/route"
	"github.com/longhaul-proxy/longhaul/proxy/upstream"
)

// KeyFunc derives the balancing key of a client connection from its address.
type KeyFunc func(client netip.AddrPort) uint64

// KeyClientIP hashes the client's IP address (the default L4 key).
func KeyClientIP(c netip.AddrPort) uint64 { return balancer.HashAddr(c.Addr()) }

// KeyClientIPPort hashes the client's IP address and port.
func KeyClientIPPort(c netip.AddrPort) uint64 { return balancer.HashAddrPort(c) }

// Parker waits for sockets to become readable without a goroutine each
// (readiness.Poller): Park calls wake once rc's socket is readable, has hung
// up or failed; the Cancel of what it returns withdraws the wait and
// reports whether wake will never run.
type Parker interface {
	Park(rc syscall.RawConn, wake func()) (interface{ Cancel() bool }, error)
}

// defaultPark is Config.Park's zero value.
const defaultPark = 100 * time.Millisecond

// Config configures a raw TCP listener.
type Config struct {
	Name           string
	Key            KeyFunc       // nil means KeyClientIP
	ConnectTimeout time.Duration // per attempt; 0 means 2s
	IdleTimeout    time.Duration // both directions quiet this long ends a session; 0 means none
	// HalfClosedTimeout ends a session once one side's EOF was passed on
	// (a half-close) and nothing moved either way for this long; 0 means
	// 60s. It is never longer than IdleTimeout.
	HalfClosedTimeout time.Duration
	// MaxConnections bounds the sessions open at once: at the bound the
	// listener stops accepting, and connections wait in the kernel's
	// backlog until a session ends. 0 means unlimited.
	MaxConnections int
	// MaxConnectionsPerClient bounds the sessions of one client IP address
	// (the PROXY header's source with AcceptProxy); one above it is closed
	// at once, counted as rejected with reason "per_client". 0 means none.
	MaxConnectionsPerClient int
	// KeepAlive is the TCP keep-alive probe period of endpoint connections
	// dialled by the default Dial, turned on once a session lived a second
	// (client connections get theirs from Listen); 0 sends none.
	KeepAlive time.Duration
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
	// Routes, when set, route each connection to a backend of a route
	// (see Routes) rather than to New's upstream; SetRoutes replaces
	// them. Every backend's upstream shares the Registry and Metrics of
	// New's.
	Routes *Routes
	// HelloTimeout bounds the wait for the whole ClientHello that TLS
	// routes go by, from the accept (from the PROXY header's end with
	// AcceptProxy); a client still sending it then is closed. 0 means 10s.
	HelloTimeout time.Duration
	// Dial opens endpoint connections; nil means upstream's default
	// dialer (see DialLease), with keep-alive probes of period KeepAlive
	// turned on once a session lived a second.
	Dial   upstream.DialFunc
	Logger *zap.Logger
	// AccessLog configures the listener's access log: a line per session
	// on Logger's child "access".
	AccessLog accesslog.Config
	// Parker, when set, holds the sockets of directions quiet for Park, so
	// that an idle session keeps no goroutine (readiness.Poller); nil keeps
	// a goroutine per direction. A direction that turned to splicing (a
	// bulk transfer) does not park.
	Parker Parker
	// Park is how long a direction waits for bytes on its goroutine before
	// it parks (see readiness.ParkWait); 0 means 100ms.
	Park time.Duration
}

// relayRound is the most one io.CopyN round moves before the idle deadline
// is pushed forward. io.CopyN wraps the source in an *io.LimitedReader,
// which the runtime still splices.
const relayRound = 4 << 20

// Listener relays raw TCP connections to endpoints chosen per connection.
// Both sides stay *net.TCPConn so that the kernel splices the bytes.
type Listener struct {
	cfg Config
	// def is the listener's own backend, nil with routes; routes is the
	// table otherwise.
	def     *Backend
	routes  atomic.Pointer[Routes]
	reg     *upstream.Registry
	metrics *metrics.Metrics
	log     *zap.Logger
	access  *accesslog.Logger // nil: no access log

	active  atomic.Int64
	gate    *listen.Gate
	wg      sync.WaitGroup
	mu      sync.Mutex
	ln      net.Listener
	closing atomic.Bool
	// keepAlive is the keep-alive period that sessions set on their
	// endpoint sockets keepAliveAfter after they start (0: none, or
	// cfg.Dial set, which then owns the endpoints' socket options).
	keepAlive, keepAliveAfter time.Duration
	bytesUp                   interface{ Add(float64) }
	bytesDn                   interface{ Add(float64) }
}

// New returns a TCP listener that balances over up, or with cfg.Routes
// routes over their backends: its sessions are registered in up's
// Registry and counted in up's Metrics.
func New(cfg Config, up *upstream.Upstream) *Listener {
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
	if cfg.HalfClosedTimeout <= 0 {
		cfg.HalfClosedTimeout = 60 * time.Second
	}
	if cfg.HelloTimeout <= 0 {
		cfg.HelloTimeout = defaultHelloTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	m := up.Metrics()
	l := &Listener{cfg: cfg, reg: up.Registry(), metrics: m, log: cfg.Logger.With(zap.String("listener", cfg.Name)),
		gate: listen.NewGate(cfg.MaxConnections, cfg.MaxConnectionsPerClient,
			m.Rejected.WithLabelValues(cfg.Name, "per_client")),
		bytesUp: m.Bytes.WithLabelValues(cfg.Name, "upstream"),
		bytesDn: m.Bytes.WithLabelValues(cfg.Name, "downstream"),
	}
	if cfg.Dial == nil {
		// upstream's default dialer (nil), with no keep-alive: the
		// session sets it once it lived keepAliveAfter.
		l.keepAlive, l.keepAliveAfter = cfg.KeepAlive, keepAliveAfter
	}
	l.access = accesslog.New(cfg.AccessLog, cfg.Name, cfg.Logger, m.AccessLogDropped)
	if cfg.Routes != nil {
		l.routes.Store(cfg.Routes)
	} else {
		l.def = &Backend{Up: up}
	}
	l.cfg.Routes = nil // the table is l.routes
	return l
}

// Serve accepts connections on ln until ctx ends or Shutdown is called. It
// closes ln before returning. Sessions outlive Serve; Shutdown ends them.
func (l *Listener) Serve(ctx context.Context, ln net.Listener) error {
	l.mu.Lock()
	l.ln = ln
	l.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { l.gate.Stop(); ln.Close() })
	defer stop()
	defer ln.Close()
	var backoff time.Duration
	for {
		// At the connection bound, wait for a slot before accepting:
		// meanwhile new connections wait in the kernel's backlog.
		if l.gate.Wait() != nil {
			return nil
		}
		c, err := ln.Accept()
		if err != nil {
			l.gate.Free()
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
		// Adds are ordered before Shutdown's Wait: once closing is set
		// under mu, no session starts.
		l.mu.Lock()
		if l.closing.Load() {
			l.mu.Unlock()
			l.gate.Free()
			c.Close()
			return nil
		}
		l.wg.Add(1)
		l.active.Add(1)
		l.mu.Unlock()
		go func() {
			defer guard.Recover("tcp", func() { c.Close() })
			l.handle(ctx, c, func() {
				l.active.Add(-1)
				l.gate.Free()
				l.wg.Done()
			})
		}()
	}
}

// Active returns the number of client connections being handled.
func (l *Listener) Active() int { return int(l.active.Load()) }

// Shutdown stops accepting, lets sessions end by themselves until ctx ends,
// then closes those left (delivering what was already read) and waits for
// them to finish.
func (l *Listener) Shutdown(ctx context.Context) error {
	l.mu.Lock()
	l.closing.Store(true)
	l.gate.Stop()
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

// handle serves one client connection and calls release once it is done
// with it: before it returns, or, once the session's relay started, when
// the session ends (its directions may outlive this call, parked).
func (l *Listener) handle(ctx context.Context, c net.Conn, release func()) {
	handedOff := false // once true, the session's end calls release and what is deferred below
	defer func() {
		if !handedOff {
			release()
		}
	}()
	start := time.Now()
	client, _ := c.(*net.TCPConn)
	clientAddr := listen.AddrPort(c.RemoteAddr())
	if l.cfg.AcceptProxy {
		c.SetReadDeadline(time.Now().Add(l.cfg.HeaderTimeout))
		h, err := listen.ReadProxyHeader(c)
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
	if !l.gate.Admit(clientAddr.Addr()) {
		l.log.Debug("closing client: too many connections from its address", zap.Stringer("client", clientAddr))
		c.Close()
		return
	}
	defer func() {
		if !handedOff {
			l.gate.Leave(clientAddr.Addr())
		}
	}()
	b := l.def
	// hello is what was read of c to route it (into buf, from helloBufs,
	// which goes back once hello is written): the backend gets it first.
	var hello []byte
	var buf *[maxHello]byte
	defer func() {
		if buf != nil {
			helloBufs.Put(buf)
		}
	}()
	var meta *route.Meta
	if routes := l.routes.Load(); routes != nil {
		var ok bool
		if b, meta, hello, buf, ok = l.routeConn(c, routes); !ok {
			c.Close()
			return
		}
	}
	key := l.cfg.Key
	if b.Key != nil {
		key = b.Key
	}
	sampled := l.access.Sample()
	n0 := len(hello) // bytes of the client's already relayed (its ClientHello)
	var backend net.Conn
	info := upstream.SessionInfo{Listener: l.cfg.Name, Protocol: "tcp", Client: clientAddr.String()}
	lease, err := b.Up.Try(upstream.Attempt{Key: key(clientAddr), Info: &info, Max: l.cfg.MaxAttempts},
		func(ls *upstream.Lease) (err error) {
			backend, err = upstream.DialLease(ctx, l.cfg.Dial, l.cfg.ConnectTimeout, ls)
			return err
		}, upstream.RetryDial)
	if err != nil {
		l.log.Debug("closing client: no endpoint", zap.Stringer("client", c.RemoteAddr()), zap.String("upstream", b.Up.Name()), zap.Error(err))
		if sampled {
			e := accesslog.Entry{Kind: accesslog.KindTCP, Start: start, Duration: time.Since(start),
				Client: clientAddr, Backend: b.Up.Name(), Rule: -1, End: "no_endpoint"}
			if meta != nil {
				e.RouteNamespace, e.RouteName = meta.Namespace, meta.Name
			}
			l.access.Log(&e)
		}
		c.Close()
		return
	}
	defer func() {
		if !handedOff {
			lease.Release()
		}
	}()
	if l.cfg.SendProxy {
		var hb [64]byte
		hdr := listen.AppendProxyV2(hb[:0], clientAddr, listen.AddrPort(c.LocalAddr()))
		if _, err := backend.Write(hdr); err != nil {
			l.metrics.DialErrors.WithLabelValues(l.cfg.Name, lease.Addr()).Inc()
			c.Close()
			backend.Close()
			return
		}
	}
	if len(hello) > 0 {
		// Bounded like the relay's writes: an endpoint that reads
		// nothing must not hold the session here.
		backend.SetWriteDeadline(time.Now().Add(l.cfg.ConnectTimeout))
		_, err := backend.Write(hello)
		backend.SetWriteDeadline(time.Time{})
		if err != nil {
			l.log.Debug("closing client: writing its ClientHello to the endpoint failed", zap.String("endpoint", lease.Addr()), zap.Error(err))
			c.Close()
			backend.Close()
			return
		}
		l.bytesUp.Add(float64(len(hello)))
		helloBufs.Put(buf)
		buf, hello = nil, nil
	}
	s := &tcpSession{
		info:   lease.Base(),
		client: c, backend: backend, clientTCP: client, idle: l.cfg.IdleTimeout,
		halfClosed:  min(l.cfg.HalfClosedTimeout, cmp.Or(l.cfg.IdleTimeout, l.cfg.HalfClosedTimeout)),
		closeAtOnce: l.cfg.DrainImmediate,
		keepAlive:   l.keepAlive, keepAliveAt: time.Now().Add(l.keepAliveAfter),
		parker: l.cfg.Parker, parkAfter: cmp.Or(l.cfg.Park, defaultPark),
	}
	s.backendTCP, _ = backend.(*net.TCPConn)
	s.bytesIn.Store(int64(n0))
	lease.Attach(s)
	handedOff = true
	s.relay(l.bytesUp, l.bytesDn, func() {
		defer release()
		defer l.gate.Leave(clientAddr.Addr())
		defer lease.Release()
		if !sampled {
			return
		}
		e := accesslog.Entry{Kind: accesslog.KindTCP, Start: start, Duration: time.Since(start),
			Client: clientAddr, Backend: b.Up.Name(), Endpoint: lease.Addr(), Rule: -1,
			BytesIn: s.bytesIn.Load(), BytesOut: s.bytesOut.Load(), End: s.end}
		if meta != nil {
			e.RouteNamespace, e.RouteName = meta.Namespace, meta.Name
		}
		if asked, _ := s.mig.State(); !asked.IsZero() {
			e.MigrationReason, e.MigrationOutcome = lease.MigrationReason(), s.mig.Result()
		}
		l.access.Log(&e)
	})
}

// tcpSession relays one client connection to one endpoint.
type tcpSession struct {
	info                  upstream.SessionInfo
	client, backend       net.Conn
	clientTCP, backendTCP *net.TCPConn  // nil when not TCP (no splice, no half-close)
	idle                  time.Duration // 0: no idle timeout
	halfClosed            time.Duration // replaces idle once a side's EOF was passed on

	// closeAtOnce makes Migrate close the session at once rather than at
	// its deadline.
	closeAtOnce bool

	lastActive atomic.Int64 // unix nanos of the last byte moved either way

	// watch, once a side's EOF was passed on, ends the session when nothing
	// moved on either socket for halfClosed (see watchHalfClosed); nil
	// before. ended: the relay is over, no timer is started.
	watchMu  sync.Mutex
	watch    *time.Timer
	ended    bool
	stopping atomic.Bool
	// eofs counts the directions that read their source to EOF. The
	// second has no half-close to pass on: both sockets have been read to
	// their end, so the close that follows sends the FIN by itself.
	eofs atomic.Int32
	mig  upstream.Migration

	// keepAlive, when not 0, is the endpoint socket's keep-alive period,
	// set by arm once the session lived keepAliveAfter (keepAliveAt);
	// keepAliveSet: done (or given up on).
	keepAlive    time.Duration
	keepAliveAt  time.Time
	keepAliveSet atomic.Bool
	// armed: arm set a read deadline on the client (0), the endpoint (1).
	armed [2]atomic.Bool

	// halves are the relay's directions: 0 the client's bytes to the
	// endpoint, 1 the endpoint's to the client. live counts those not
	// done for good (running or parked); the last one ends the session
	// (finish, then onEnd). parkTimer, while a direction is parked, wakes
	// the parked ones when the session's timeout would pass. mu guards
	// live, the halves' parked and cancel, and parkTimer.
	halves    [2]halfState
	mu        sync.Mutex
	live      int
	parkTimer *time.Timer
	onEnd     func()
	parker    Parker
	parkAfter time.Duration

	// readers: readSmall's state of the client's direction (0) and the
	// endpoint's (1); spliced: that direction switched from readSmall to
	// splice (tests).
	readers [2]smallReader
	spliced [2]atomic.Bool

	// The half-closed watch's last count, and whether it took one (under
	// watchMu).
	watchLast    uint64
	watchCounted bool

	// For the access log: bytes from the client (in) and to it (out), how
	// the session ended (set by relay: eof, idle, closed, migrated,
	// error), and whether the half-closed timeout ended it.
	bytesIn, bytesOut atomic.Int64
	end               string
	halfIdle          atomic.Bool
}

func (s *tcpSession) Info() upstream.SessionInfo {
	i := s.info
	asked, deadline := s.mig.State()
	i.Migrating, i.Deadline = !asked.IsZero(), deadline
	return i
}

func (s *tcpSession) MigrationResult() (time.Time, string) {
	asked, _ := s.mig.State()
	return asked, s.mig.Result()
}

// Migrate closes the session at deadline (at once if it has passed, or if
// the listener's drain mode is immediate): raw TCP has no way to ask a
// client to reconnect, so the deadline gives it time to finish on its own.
// Closing delivers every byte already read, then half-closes both sides.
func (s *tcpSession) Migrate(deadline time.Time) {
	if !s.mig.Begin(deadline, s.Close) {
		return
	}
	if s.closeAtOnce {
		s.mig.ClosedByPolicy()
		s.Close()
	}
}

// Close stops both directions at their next read; everything already read
// is written out, then each side gets a FIN and the session ends.
func (s *tcpSession) Close() { s.stop(closeGrace) }

// stop ends both directions at their next read and bounds the writes of
// what was already read by grace: a peer that stopped reading must not
// hold the session forever.
func (s *tcpSession) stop(grace time.Duration) {
	s.stopping.Store(true)
	now := time.Now()
	s.client.SetReadDeadline(now)
	s.backend.SetReadDeadline(now)
	s.client.SetWriteDeadline(now.Add(grace))
	s.backend.SetWriteDeadline(now.Add(grace))
	s.kickAll()
}

// watchHalfClosed starts, once, the check that ends a half-closed session
// in which nothing moves: every halfClosed it compares the bytes the
// kernel acknowledged and received on both sockets (so that a write
// blocked on a peer that does not read counts as nothing moving, and a
// slow one that progresses as moving), and stops the session, with no
// grace, when they did not change.
//
// The first count is taken halfClosedFirst (at most a quarter of
// halfClosed) after the half-close rather than at it: a short session
// whose other side closes meanwhile ends with no getsockopt at all. The
// session is thereby never ended earlier than before, and at most that
// much later.
func (s *tcpSession) watchHalfClosed() {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	if s.ended || s.watch != nil || s.halfClosed <= 0 {
		return
	}
	s.watch = time.AfterFunc(min(halfClosedFirst, s.halfClosed/4), s.checkHalfClosed)
}

// checkHalfClosed is the half-closed watch's timer function (its calls do
// not overlap: the timer is reset at the end of one).
func (s *tcpSession) checkHalfClosed() {
	now := s.moved()
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	if s.watchCounted && now == s.watchLast {
		s.halfIdle.Store(true)
		s.stop(0)
		return
	}
	s.watchLast, s.watchCounted = now, true
	if !s.ended {
		s.watch.Reset(s.halfClosed)
	}
}

// halfClosedFirst bounds the wait of watchHalfClosed's first count.
const halfClosedFirst = time.Second

// moved returns a number that changes whenever a byte moves on the
// session: the kernel's acknowledged and received byte counts of both
// sockets, and the time of the relay's last round with bytes (for
// connections that are not TCP).
func (s *tcpSession) moved() uint64 {
	return tcpBytesMoved(s.clientTCP) + tcpBytesMoved(s.backendTCP) + uint64(s.lastActive.Load())
}

// tcpBytesMoved returns the bytes acknowledged by the peer plus the bytes
// received from it on c, or 0 when they cannot be read.
func tcpBytesMoved(c *net.TCPConn) uint64 {
	if c == nil {
		return 0
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	var n uint64
	rc.Control(func(fd uintptr) {
		if ti, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			n = ti.Bytes_acked + ti.Bytes_received
		}
	})
	return n
}

// closeGrace bounds how long Close waits to write out bytes already read.
const closeGrace = 5 * time.Second

var errIdle = errors.New("idle timeout")

// halfState is one direction of a session's relay.
type halfState struct {
	dst, src       net.Conn
	dstTCP, srcTCP *net.TCPConn
	bytes          interface{ Add(float64) }
	err            error // how it ended
	started        bool  // its goroutine ran once (testHookRelay)
	// parked: the source is parked and cancel withdraws its wait (under
	// the session's mu). wait is the park backoff, owned by the
	// direction's goroutine.
	parked bool
	cancel interface{ Cancel() bool }
	wait   readiness.ParkWait
}

// relay runs both directions, the endpoint's on the caller's goroutine and
// the client's on one of its own, and returns when the first is done or
// parked; onEnd runs once both are done, after the session's sockets are
// closed, on the last one's goroutine.
func (s *tcpSession) relay(up, down interface{ Add(float64) }, onEnd func()) {
	s.lastActive.Store(time.Now().UnixNano())
	s.onEnd = onEnd
	s.halves[0] = halfState{dst: s.backend, src: s.client, dstTCP: s.backendTCP, srcTCP: s.clientTCP, bytes: up}
	s.halves[1] = halfState{dst: s.client, src: s.backend, dstTCP: s.clientTCP, srcTCP: s.backendTCP, bytes: down}
	s.live = len(s.halves)
	go s.runHalf(0)
	s.runHalf(1)
}

// runHalf runs direction d until it is done or parks. A direction that
// ends with an error (a reset, a timeout) ends the other one too.
func (s *tcpSession) runHalf(d int) {
	h := &s.halves[d]
	parked := false
	defer func() {
		if parked {
			return // the wake-up may run it on another goroutine already
		}
		s.mu.Lock()
		s.live--
		last := s.live == 0
		s.mu.Unlock()
		if last {
			guard.Do("tcp", s.finish)
		}
	}()
	defer guard.Recover("tcp", func() { s.abort(); h.err = guard.ErrPanicked })
	if !h.started {
		h.started = true
		if testHookRelay != nil {
			testHookRelay(s, d == 0)
		}
	}
	err := s.half(d)
	if err == errParked {
		parked = true
		return
	}
	h.err = err
	if err != nil {
		s.Close()
	}
}

// errParked ends half when its source parked.
var errParked = errors.New("tcp: parked")

// finish ends the session once both directions are done: it closes both
// sockets, records how the session ended and calls onEnd.
func (s *tcpSession) finish() {
	err1, err2 := s.halves[1].err, s.halves[0].err
	s.mu.Lock()
	if s.parkTimer != nil {
		s.parkTimer.Stop()
	}
	s.mu.Unlock()
	s.watchMu.Lock()
	s.ended = true
	if s.watch != nil {
		s.watch.Stop()
	}
	s.watchMu.Unlock()
	s.client.Close()
	s.backend.Close()
	s.mig.End()
	asked, _ := s.mig.State()
	switch {
	case !asked.IsZero():
		s.end = "migrated"
	case s.halfIdle.Load() || errors.Is(err1, errIdle) || errors.Is(err2, errIdle):
		s.end = "idle"
	case s.stopping.Load():
		s.end = "closed"
	case err1 != nil || err2 != nil:
		s.end = "error"
	default:
		s.end = "eof"
	}
	s.onEnd()
}

// parkWait is how long direction d waits for bytes before it parks, or 0
// when it does not park.
func (s *tcpSession) parkWait(d int, bulk bool) time.Duration {
	if s.parker == nil || bulk || s.readers[d].raw == nil {
		return 0
	}
	return s.halves[d].wait.Wait(s.parkAfter)
}

// park hands direction d's source to the Parker, reporting whether it
// did: then its goroutine ends, and the wake-up (or a kick) starts another.
// A session that is stopping does not park. Parking turns the endpoint's
// keep-alive probes on if they are still due, and bounds the wait by the
// session's timeout (parkTimer).
func (s *tcpSession) park(d int) bool {
	if s.keepAlive > 0 && !s.keepAliveSet.Load() {
		s.setKeepAlive()
	}
	h := &s.halves[d]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping.Load() {
		return false
	}
	c, err := s.parker.Park(s.readers[d].raw, func() { s.wake(d) })
	if err != nil {
		return false // the Parker is closed: wait on the goroutine
	}
	h.parked, h.cancel = true, c
	h.wait.Parked()
	if t := s.timeout(); t > 0 {
		rest := t - time.Since(time.Unix(0, s.lastActive.Load()))
		if s.parkTimer == nil {
			s.parkTimer = time.AfterFunc(rest, s.kickAll)
		} else {
			s.parkTimer.Reset(rest)
		}
	}
	return true
}

// wake runs on the Parker's goroutine once direction d's parked source is
// readable: it runs the direction again on a goroutine of its own.
func (s *tcpSession) wake(d int) {
	go func() {
		h := &s.halves[d]
		s.mu.Lock()
		h.parked, h.cancel = false, nil
		s.mu.Unlock()
		h.wait.Woke(s.parkAfter)
		s.runHalf(d)
	}()
}

// kickAll runs the parked directions again, so that they see what changed:
// the session stopping (Close, the half-closed watch, abort) or its
// timeout passing (parkTimer).
func (s *tcpSession) kickAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for d := range s.halves {
		if h := &s.halves[d]; h.parked && h.cancel.Cancel() {
			h.parked, h.cancel = false, nil
			go s.runHalf(d)
		}
	}
}

// half copies src to dst until EOF, then half-closes dst. It returns nil on
// a clean EOF.
//
// It starts by reading into a pooled buffer and writing that out (see
// readSmall): a short session's few bytes cost a read and a write rather
// than two splices through a pipe. The first read that fills the buffer
// marks a bulk transfer, and from then on the direction splices (both
// sides *net.TCPConn: io.CopyN goes to (*net.TCPConn).ReadFrom, which
// splices socket to pipe to socket in the kernel).
func (s *tcpSession) half(dir int) error {
	h := &s.halves[dir]
	dst, src, dstTCP, srcTCP, bytes := h.dst, h.src, h.dstTCP, h.srcTCP, h.bytes
	r := &s.readers[dir]
	if srcTCP != nil && r.raw == nil {
		raw, _ := srcTCP.SyscallConn()
		r.init(raw)
	}
	bulk := false
	for {
		parkBound := s.arm(src, s.parkWait(dir, bulk))
		var n int64
		var err error
		switch {
		case !bulk:
			n, bulk, err = s.readSmall(dst, src, r)
			if bulk {
				s.spliced[dir].Store(dstTCP != nil && srcTCP != nil)
			}
		case dstTCP != nil:
			n, err = io.CopyN(dstTCP, src, relayRound)
		default:
			n, err = io.CopyN(dst, src, relayRound)
		}
		if n > 0 {
			s.lastActive.Store(time.Now().UnixNano())
			bytes.Add(float64(n))
			if dst == s.backend {
				s.bytesIn.Add(n)
			} else {
				s.bytesOut.Add(n)
			}
		}
		switch {
		case err == nil:
			continue
		case errors.Is(err, io.EOF):
			if s.eofs.Add(1) == 1 {
				listen.CloseWrite(dst)
				// Half-closed: the other direction's wait is bounded by
				// halfClosed from now on, and so is its writing.
				s.arm(dst, 0)
				s.watchHalfClosed()
			}
			return nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			if s.stopping.Load() {
				listen.CloseWrite(dst)
				return nil
			}
			if d := s.timeout(); d > 0 && time.Since(time.Unix(0, s.lastActive.Load())) >= d {
				listen.CloseWrite(dst)
				return errIdle
			}
			// The wait before parking, the keep-alive deadline (see
			// arm), the other direction busy, or bytes moved this
			// round: park, or wait on.
			if parkBound && s.park(dir) {
				return errParked
			}
			continue
		default:
			return err
		}
	}
}

// smallBuf is the size of readSmall's buffers: a read that fills one
// switches its direction to splice.
const smallBuf = 16 << 10

var smallBufs = sync.Pool{New: func() any { return new([smallBuf]byte) }}

// smallReader is one direction's reading state for readSmall: read, made
// once per direction, is what the poller calls when src may be readable.
type smallReader struct {
	raw  syscall.RawConn // src's; nil: src.Read
	read func(fd uintptr) bool
	buf  *[smallBuf]byte // taken once src had bytes (or for src.Read)
	n    int
	err  error // the read(2) error
}

// init sets r up to read from src (raw: its raw connection, nil when src is
// not a *net.TCPConn).
func (r *smallReader) init(raw syscall.RawConn) {
	r.raw = raw
	if raw != nil {
		r.read = r.readFD
	}
}

// readFD reads fd into a buffer from smallBufs, taken for the read and
// given back when there was nothing to read (false: the poller waits until
// fd is readable and calls again).
func (r *smallReader) readFD(fd uintptr) bool {
	b := smallBufs.Get().(*[smallBuf]byte)
	for {
		r.n, r.err = unix.Read(int(fd), b[:])
		if r.err != unix.EINTR {
			break
		}
	}
	if r.err == unix.EAGAIN {
		smallBufs.Put(b)
		return false
	}
	r.buf = b
	return true
}

// readSmall reads what src has, at most smallBuf bytes, and writes it to
// dst; full reports that the read filled the buffer (a bulk transfer). The
// buffer is taken from smallBufs only once src is readable and goes back
// before readSmall returns, so a session waiting for bytes holds none
// (with a src that is not a *net.TCPConn it is held while src.Read waits).
// It returns io.EOF, with n 0, at src's end.
func (s *tcpSession) readSmall(dst, src net.Conn, r *smallReader) (n int64, full bool, err error) {
	defer func() {
		if r.buf != nil {
			smallBufs.Put(r.buf)
			r.buf = nil
		}
	}()
	var got int
	if r.raw == nil {
		r.buf = smallBufs.Get().(*[smallBuf]byte)
		got, err = src.Read(r.buf[:])
	} else {
		r.n, r.err = 0, nil
		err = r.raw.Read(r.read)
		switch {
		case err != nil: // a deadline or a closed socket, wrapped by net
		case r.err != nil:
			err = os.NewSyscallError("read", r.err)
		case r.n == 0:
			err = io.EOF
		}
		got = max(r.n, 0)
	}
	if got > 0 {
		if w, werr := dst.Write(r.buf[:got]); werr != nil {
			return int64(w), false, werr
		}
		// Bytes that came with an error (src.Read only) are relayed; the
		// error comes back from the next read.
		return int64(got), got == smallBuf, nil
	}
	return 0, false, err
}

// timeout is how long the session may go with nothing moving: idle, or
// halfClosed once a side's EOF was passed on; 0 means no bound.
func (s *tcpSession) timeout() time.Duration {
	if s.eofs.Load() > 0 {
		return s.halfClosed
	}
	return s.idle
}

// arm bounds the next read of src by the session's timeout. The deadline
// is re-armed before every read, so it never outlives the wait it bounds;
// once Close set its own deadline, that one stays. While the endpoint's
// keep-alive is still to be set, the deadline is at most keepAliveAt, and
// the first arm past it sets it.
//
// park, when not 0, bounds the wait too: parkBound reports that it is the
// deadline set (the direction parks if it passes with nothing read).
func (s *tcpSession) arm(src net.Conn, park time.Duration) (parkBound bool) {
	if s.stopping.Load() {
		return false
	}
	d := s.timeout()
	if s.keepAlive > 0 && !s.keepAliveSet.Load() {
		if due := time.Until(s.keepAliveAt); due > 0 {
			if d <= 0 || due < d {
				d = due
			}
		} else {
			s.setKeepAlive()
		}
	}
	if park > 0 && (d <= 0 || park < d) {
		d, parkBound = park, true
	}
	armed := &s.armed[0]
	if src == s.backend {
		armed = &s.armed[1]
	}
	switch {
	case d > 0:
		armed.Store(true)
		src.SetReadDeadline(time.Now().Add(d))
	case armed.Swap(false): // no bound, but the keep-alive's wait left one
		src.SetReadDeadline(time.Time{})
	default:
		return false
	}
	if s.stopping.Load() { // Close ran meanwhile: keep its deadline
		src.SetReadDeadline(time.Now())
		return false
	}
	return parkBound
}

// setKeepAlive turns the endpoint socket's keep-alive probes on, once.
func (s *tcpSession) setKeepAlive() {
	if s.keepAliveSet.Swap(true) || s.backendTCP == nil {
		return
	}
	// It fails only on a socket already closed: the session is over.
	if rc, err := s.backendTCP.SyscallConn(); err == nil {
		listen.SetKeepAlive(rc, s.keepAlive)
	}
	if testHookKeepAlive != nil {
		testHookKeepAlive(s)
	}
}

// keepAliveAfter is how long a session lives before its endpoint socket's
// keep-alive probes are turned on (a variable for tests). Setting them
// costs four system calls that a short session is spared; the probes start
// after the keep-alive period without traffic, so on a long session they
// go out at most keepAliveAfter later than had they been set at connect.
var keepAliveAfter = time.Second
