package httpproxy

import (
	"bufio"
	"cmp"
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

	"go.uber.org/zap"

	"github.com/longhaul-proxy/longhaul/internal/guard"
	"github.com/longhaul-proxy/longhaul/proxy/accesslog"
	"github.com/longhaul-proxy/longhaul/proxy/listen"
	"github.com/longhaul-proxy/longhaul/proxy/upstream"
	"github.com/longhaul-proxy/longhaul/proxy/wsframe"
)

// WebSocketConfig configures upgraded WebSocket sessions.
type WebSocketConfig struct {
	// MaxFrame bounds a frame's payload; 0 means 16 MiB.
	MaxFrame int64
	// CloseCode is sent to clients whose endpoint drains: 1012 (service
	// restart, the default) or 1001 (going away).
	CloseCode uint16
	// CloseTimeout bounds the close handshake after a drain; 0 means 5s.
	CloseTimeout time.Duration
	// IdleTimeout ends a WebSocket with no frame relayed either way for
	// this long (HAProxy's timeout tunnel): Close 1001 to both sides, then
	// the close handshake within CloseTimeout. 0 means 1h.
	IdleTimeout time.Duration
	// Parker, when set, holds the sockets of directions quiet for
	// ParkAfter, so that an idle WebSocket keeps no goroutine or buffer
	// (see wsframe.Options.Parker); nil keeps a goroutine per direction.
	Parker wsframe.Parker
	// ParkAfter: see wsframe.Options.ParkAfter; 0 means 100ms.
	ParkAfter time.Duration
}

// defaultWebSocketIdle is WebSocketConfig.IdleTimeout's zero value: long,
// since long-lived WebSockets are the point.
const defaultWebSocketIdle = time.Hour

func isWebSocketUpgrade(r *http.Request) bool {
	return r.ProtoMajor == 1 && headerHasToken(r.Header, "Connection", "upgrade") &&
		strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h[name] {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// serveWebSocket forwards the upgrade handshake to an endpoint and, once it
// answers 101, relays frames both ways with a frame-aware relay so that a
// drain can inject a close frame at a frame boundary.
//
// The session is leased before the endpoint is dialled; the dial and the
// handshake are one attempt of Try, so an endpoint asked to let go of its
// sessions meanwhile is left before the 101 reaches the client.
//
// aw, when the request is sampled into the access log, hands its entry
// to the session once upgraded: the session's line is written when it
// ends.
func (l *Listener) serveWebSocket(w http.ResponseWriter, r *http.Request, client netip.AddrPort, rt routed, aw *accessWriter) {
	l.wsMu.RLock()
	if l.wsClosed {
		l.wsMu.RUnlock()
		http.Error(w, "longhaul: shutting down", http.StatusServiceUnavailable)
		return
	}
	l.wsWG.Add(1)
	l.wsMu.RUnlock()
	handedOff := false // once true, the relay goroutine calls Done and releases the lease
	var lease *upstream.Lease
	defer func() {
		if !handedOff {
			lease.Release()
			l.wsWG.Done()
		}
	}()
	upgrade := r.Header["Upgrade"] // outRequest removes it with the other hop-by-hop headers
	out := l.outRequest(r, client)
	out.Header["Upgrade"] = upgrade
	out.Header["Connection"] = []string{"Upgrade"}
	out.URL.Scheme = "http"
	br := handshakeReaders.Get().(*bufio.Reader)
	defer func() { br.Reset(nil); handshakeReaders.Put(br) }()
	var backend net.Conn
	var resp *http.Response
	info := upstream.SessionInfo{Listener: l.cfg.Name, Protocol: "websocket", Client: client.String()}
	lease, err := rt.b.Up.Try(upstream.Attempt{Key: rt.b.Key.Hash(r, client), Info: &info, Max: l.cfg.MaxAttempts},
		func(ls *upstream.Lease) error {
			c, err := upstream.DialLease(r.Context(), l.cfg.Dial, l.cfg.ConnectTimeout, ls)
			if err != nil {
				return err
			}
			out.URL.Host = ls.Addr()
			br.Reset(c)
			if resp, err = l.handshake(c, out, br); err != nil {
				c.Close()
				return err
			}
			if resp.StatusCode == http.StatusSwitchingProtocols && ls.Asked() {
				c.Close()
				return upstream.ErrLeaving
			}
			backend = c
			return nil
		}, upstream.RetryDial)
	aw.leased(lease)
	switch {
	case errors.Is(err, upstream.ErrLeaving):
		http.Error(w, "longhaul: shutting down", http.StatusServiceUnavailable)
		return
	case errors.Is(err, upstream.ErrNoEndpoint):
		http.Error(w, "longhaul: no endpoint available", http.StatusServiceUnavailable)
		return
	case errors.Is(err, os.ErrDeadlineExceeded):
		http.Error(w, "longhaul: no handshake answer from the endpoint within "+l.cfg.ResponseHeaderTimeout.String(), http.StatusGatewayTimeout)
		return
	case err != nil:
		l.log.Debug("websocket upgrade failed", zap.Error(err))
		http.Error(w, "longhaul: upstream handshake failed", http.StatusBadGateway)
		return
	}
	rt.resp.Apply(resp.Header)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		// Refused: pass the answer on as an ordinary response.
		l.copyResponse(w, resp, false, time.Time{})
		backend.Close()
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		backend.Close()
		l.log.Warn("websocket hijack failed", zap.Error(err))
		return
	}
	// The 101 goes to the client as the endpoint sent it, hop-by-hop
	// Connection/Upgrade included: they are the point of a 101.
	if err := writeBuffered(conn, resp.Write); err != nil {
		conn.Close()
		backend.Close()
		return
	}
	if fc, ok := conn.(*framingConn); ok {
		// The framing watcher served the handshake; the session keeps
		// only what closing needs (the connection slot under it).
		conn = fc.Conn
	}
	clientBuf := drainBuffered(brw.Reader)
	backendBuf := drainBuffered(br)
	// The relay reads and writes the socket itself; closing goes through
	// conn (s.conns, below), which gives back its connection slot.
	relay := wsframe.New(listen.Socket(conn), clientBuf, backend, backendBuf, wsframe.Options{
		MaxFrame:     l.cfg.WebSocket.MaxFrame,
		Extensions:   resp.Header.Get("Sec-WebSocket-Extensions") != "",
		CloseTimeout: l.cfg.WebSocket.CloseTimeout,
		Parker:       l.cfg.WebSocket.Parker,
		ParkAfter:    l.cfg.WebSocket.ParkAfter,
	})
	s := &wsSession{relay: relay, code: cmp.Or(l.cfg.WebSocket.CloseCode, 1012), lease: lease,
		conns: [2]net.Conn{conn, backend}}
	// The relay runs in the background and the handler returns, so that
	// the server lets go of what it kept for the connection (its buffers,
	// the request): a long-lived WebSocket holds only the relay, and while
	// it is idle with a Parker, no goroutine.
	var e *accesslog.Entry
	if aw != nil {
		aw.handed = true
		e = new(accesslog.Entry)
		*e = aw.e
		e.Kind, e.Status = accesslog.KindWebSocket, http.StatusSwitchingProtocols
	}
	lease.Attach(s)
	handedOff = true
	stopIdle := s.watchIdle(cmp.Or(l.cfg.WebSocket.IdleTimeout, defaultWebSocketIdle))
	// end runs once, on the relay's last goroutine, when it has ended.
	end := func(err error) {
		defer l.wsWG.Done()
		defer lease.Release()
		defer guard.Recover("websocket", s.Close)
		stopIdle()
		if err != nil {
			l.log.Debug("websocket relay ended", zap.Error(err))
		}
		s.mig.End()
		conn.Close()
		backend.Close()
		if e != nil {
			s.fillAccess(e, err, lease)
			l.access.Log(e)
		}
	}
	if err := relay.Start(end); err != nil {
		end(err) // not reached: the relay is new
	}
}

// handshake writes the upgrade request to the endpoint on c and reads its
// answer through br, both within ResponseHeaderTimeout; the deadline is
// cleared once the answer is read.
func (l *Listener) handshake(c net.Conn, out *http.Request, br *bufio.Reader) (*http.Response, error) {
	c.SetDeadline(time.Now().Add(l.cfg.ResponseHeaderTimeout))
	if err := writeBuffered(c, out.Write); err != nil {
		return nil, fmt.Errorf("write upgrade request: %w", err)
	}
	resp, err := http.ReadResponse(br, out)
	if err != nil {
		return nil, fmt.Errorf("read upgrade answer: %w", err)
	}
	c.SetDeadline(time.Time{})
	return resp, nil
}

// handshakeWriters buffer a handshake's request or answer, so that it goes
// out in one write and allocates no buffer of its own.
var handshakeWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}

// writeBuffered runs write (a Request's or Response's Write) into a pooled
// buffer over c, then flushes it.
func writeBuffered(c net.Conn, write func(io.Writer) error) error {
	bw := handshakeWriters.Get().(*bufio.Writer)
	bw.Reset(c)
	defer func() { bw.Reset(nil); handshakeWriters.Put(bw) }()
	if err := write(bw); err != nil {
		return err
	}
	return bw.Flush()
}

// handshakeReaders read endpoints' handshake answers; what they buffer past
// the answer is copied out (drainBuffered) before they go back.
var handshakeReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}

// drainBuffered returns a copy of what r has buffered past the handshake.
func drainBuffered(r *bufio.Reader) []byte {
	n := r.Buffered()
	if n == 0 {
		return nil
	}
	b, _ := r.Peek(n)
	return append([]byte(nil), b...)
}

// wsSession is a relayed WebSocket connection.
type wsSession struct {
	lease *upstream.Lease // its Base is the session's info: not copied, an idle session's memory is what it keeps
	relay *wsframe.Relay
	code  uint16
	conns [2]net.Conn
	mig   upstream.Migration
	idled atomic.Bool // closed for its idle timeout
}

// fillAccess completes the access log entry of the session, which ended
// with err (relay.Run's).
func (s *wsSession) fillAccess(e *accesslog.Entry, err error, lease *upstream.Lease) {
	e.Duration = time.Since(e.Start)
	_, _, e.BytesIn, e.BytesOut = s.relay.Stats()
	asked, _ := s.mig.State()
	switch {
	case !asked.IsZero():
		e.End, e.CloseCode = "migrated", int(s.code)
		e.MigrationReason, e.MigrationOutcome = lease.MigrationReason(), s.mig.Result()
	case s.idled.Load():
		e.End, e.CloseCode = "idle", 1001
	case errors.Is(err, wsframe.ErrTooLarge):
		e.End, e.CloseCode = "error", 1009
	case errors.Is(err, wsframe.ErrProtocol):
		e.End, e.CloseCode = "error", 1002
	case err != nil:
		e.End = "error"
	default:
		e.End = "close"
	}
}

func (s *wsSession) Info() upstream.SessionInfo {
	i := s.lease.Base()
	asked, deadline := s.mig.State()
	i.Migrating, i.Deadline = !asked.IsZero(), deadline
	return i
}

func (s *wsSession) MigrationResult() (time.Time, string) {
	asked, _ := s.mig.State()
	return asked, s.mig.Result()
}

// Migrate injects a close frame (1012 by default) toward the client at the
// next frame boundary, and a close toward the endpoint; the client
// reconnects, through longhaul, to another endpoint.
//
// A session still open at deadline (a client that does not answer the
// close) is closed.
func (s *wsSession) Migrate(deadline time.Time) {
	if !s.mig.Begin(deadline, s.Close) {
		return
	}
	reason := "service restart"
	if s.code == 1001 {
		reason = "going away"
	}
	s.relay.Migrate(s.code, reason)
}

// idleChecks is how many times per idle timeout a WebSocket's traffic is
// looked at: it is closed between idle and idle*(1+1/idleChecks) after its
// last frame.
const idleChecks = 4

// watchIdle closes the session, with Close 1001 to both sides, once no
// frame was relayed either way for idle; it returns the function that
// stops watching. It reads the relay's counters every idle/idleChecks: no
// deadline is set on the sockets, whose reads the relay owns.
func (s *wsSession) watchIdle(idle time.Duration) (stop func()) {
	w := &idleWatch{s: s, idle: idle, step: max(idle/idleChecks, time.Millisecond)}
	w.last = w.moved()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t = time.AfterFunc(w.step, w.check)
	return w.stop
}

// idleWatch is watchIdle's state, one allocation per session: an idle
// WebSocket's memory is what it keeps. The timer's function owns last and
// quiet; mu orders stop against the timer's Reset.
type idleWatch struct {
	s          *wsSession
	idle, step time.Duration
	last       int64
	quiet      time.Duration
	mu         sync.Mutex
	stopped    bool
	t          *time.Timer
}

func (w *idleWatch) moved() int64 { _, _, up, down := w.s.relay.Stats(); return up + down }

func (w *idleWatch) check() {
	if n := w.moved(); n != w.last {
		w.last, w.quiet = n, 0
	} else {
		w.quiet += w.step
	}
	if w.quiet >= w.idle {
		w.s.idled.Store(true)
		w.s.relay.Migrate(1001, "idle timeout")
		return
	}
	w.mu.Lock()
	if !w.stopped {
		w.t.Reset(w.step)
	}
	w.mu.Unlock()
}

func (w *idleWatch) stop() {
	w.mu.Lock()
	w.stopped = true
	w.t.Stop()
	w.mu.Unlock()
}

// Close ends the session at once. The relay is aborted before its sockets
// close: a direction parked on a socket closed under it would never wake.
func (s *wsSession) Close() {
	s.relay.Abort()
	for _, c := range s.conns {
		c.Close()
	}
}
