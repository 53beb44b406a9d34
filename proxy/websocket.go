package proxy

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/internal/guard"
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
func (l *HTTPListener) serveWebSocket(w http.ResponseWriter, r *http.Request, client netip.AddrPort) {
	l.wsMu.RLock()
	if l.wsClosed {
		l.wsMu.RUnlock()
		http.Error(w, "longhaul: shutting down", http.StatusServiceUnavailable)
		return
	}
	l.wsWG.Add(1)
	l.wsMu.RUnlock()
	handedOff := false // once true, the relay goroutine calls Done and releases target
	var target *balancer.Target
	defer func() {
		if !handedOff {
			if target != nil {
				target.Release()
			}
			l.wsWG.Done()
		}
	}()
	p := l.up.Picker()
	if p == nil {
		http.Error(w, "longhaul: no endpoints", http.StatusServiceUnavailable)
		return
	}
	upgradeHeaders := map[string][]string{"Upgrade": r.Header["Upgrade"], "Connection": {"Upgrade"}}
	out := l.outRequest(r, client)
	for k, v := range upgradeHeaders {
		out.Header[k] = v
	}
	out.URL.Scheme = "http"
	key := l.cfg.Key.Hash(r, client)

	var triedBuf [8]*balancer.Target
	tried := triedBuf[:0]
	var backend net.Conn
	for attempt := 0; attempt < l.cfg.MaxAttempts && attempt < len(triedBuf); attempt++ {
		target = p.Pick(key, tried)
		if target == nil {
			break
		}
		target.Acquire()
		ctx, cancel := context.WithTimeout(r.Context(), l.cfg.ConnectTimeout)
		c, err := l.cfg.Dial(ctx, "tcp", target.Endpoint.Address)
		cancel()
		if err == nil {
			backend = c
			break
		}
		target.Release()
		l.metrics.DialErrors.WithLabelValues(l.cfg.Name, target.Endpoint.Address).Inc()
		tried = append(tried, target)
		target = nil
	}
	if backend == nil {
		http.Error(w, "longhaul: no endpoint available", http.StatusBadGateway)
		return
	}
	out.URL.Host = target.Endpoint.Address
	// The handshake, written and answered, within ResponseHeaderTimeout;
	// the deadline is cleared once the answer is read.
	backend.SetDeadline(time.Now().Add(l.cfg.ResponseHeaderTimeout))
	if err := writeBuffered(backend, out.Write); err != nil {
		backend.Close()
		http.Error(w, "longhaul: upstream handshake failed", http.StatusBadGateway)
		return
	}
	br := handshakeReaders.Get().(*bufio.Reader)
	br.Reset(backend)
	defer func() { br.Reset(nil); handshakeReaders.Put(br) }()
	resp, err := http.ReadResponse(br, out)
	if err != nil {
		backend.Close()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			http.Error(w, "longhaul: no handshake answer from the endpoint within "+l.cfg.ResponseHeaderTimeout.String(), http.StatusGatewayTimeout)
			return
		}
		http.Error(w, "longhaul: upstream handshake failed", http.StatusBadGateway)
		return
	}
	backend.SetDeadline(time.Time{})
	if resp.StatusCode != http.StatusSwitchingProtocols {
		// Refused: pass the answer on as an ordinary response.
		l.copyResponse(w, resp, false)
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
	clientBuf := drainBuffered(brw.Reader)
	backendBuf := drainBuffered(br)
	// The relay reads and writes the socket itself; closing goes through
	// conn (s.conns, below), which gives back its connection slot.
	relay := wsframe.New(socketOf(conn), clientBuf, backend, backendBuf, wsframe.Options{
		MaxFrame:     l.cfg.WebSocket.MaxFrame,
		Extensions:   resp.Header.Get("Sec-WebSocket-Extensions") != "",
		CloseTimeout: l.cfg.WebSocket.CloseTimeout,
	})
	s := &wsSession{relay: relay, code: l.cfg.WebSocket.CloseCode, info: SessionInfo{
		ID: l.reg.NewID(), Listener: l.cfg.Name, Protocol: "websocket",
		Endpoint: target.Endpoint.Address, Client: client.String(), Started: time.Now(),
	}, conns: [2]net.Conn{conn, backend}}
	if s.code == 0 {
		s.code = 1012
	}
	// The relay runs on a goroutine of its own and the handler returns, so
	// that the server lets go of what it kept for the connection (its
	// buffers, the request): a long-lived WebSocket holds only the relay.
	remove := l.reg.Register(target.Endpoint.Address, s.info.ID, s)
	active := l.metrics.SessionsActive.WithLabelValues(l.cfg.Name, target.Endpoint.Address)
	active.Inc()
	l.metrics.SessionsTotal.WithLabelValues(l.cfg.Name, target.Endpoint.Address).Inc()
	if l.closing.Load() {
		// Upgraded while the listener shuts down: ask it to leave at once,
		// with the usual close handshake time.
		grace := l.cfg.WebSocket.CloseTimeout
		if grace <= 0 {
			grace = 5 * time.Second
		}
		s.Migrate(time.Now().Add(grace))
	}
	handedOff = true
	go func() {
		defer l.wsWG.Done()
		defer target.Release()
		defer remove()
		defer active.Dec()
		defer guard.Recover("websocket", s.Close)
		defer s.watchIdle(cmp.Or(l.cfg.WebSocket.IdleTimeout, defaultWebSocketIdle))()
		if err := relay.Run(); err != nil {
			l.log.Debug("websocket relay ended", zap.Error(err))
		}
		s.mig.end()
		conn.Close()
		backend.Close()
	}()
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
	info  SessionInfo
	relay *wsframe.Relay
	code  uint16
	conns [2]net.Conn
	mig   migration
}

func (s *wsSession) Info() SessionInfo {
	i := s.info
	asked, deadline := s.mig.state()
	i.Migrating, i.Deadline = !asked.IsZero(), deadline
	return i
}

func (s *wsSession) migrationResult() (time.Time, string) {
	asked, _ := s.mig.state()
	return asked, s.mig.result()
}

// Migrate injects a close frame (1012 by default) toward the client at the
// next frame boundary, and a close toward the endpoint; the client
// reconnects, through longhaul, to another endpoint.
//
// A session still open at deadline (a client that does not answer the
// close) is closed.
func (s *wsSession) Migrate(deadline time.Time) {
	if !s.mig.begin(deadline, s.Close) {
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
	var (
		mu      sync.Mutex
		stopped bool
		last    int64
		quiet   time.Duration
		t       *time.Timer
	)
	moved := func() int64 { _, _, up, down := s.relay.Stats(); return up + down }
	last = moved()
	step := max(idle/idleChecks, time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	t = time.AfterFunc(step, func() {
		if n := moved(); n != last {
			last, quiet = n, 0
		} else {
			quiet += step
		}
		if quiet >= idle {
			s.relay.Migrate(1001, "idle timeout")
			return
		}
		mu.Lock()
		if !stopped {
			t.Reset(step)
		}
		mu.Unlock()
	})
	return func() {
		mu.Lock()
		stopped = true
		t.Stop()
		mu.Unlock()
	}
}

// Close ends the session at once.
func (s *wsSession) Close() {
	for _, c := range s.conns {
		c.Close()
	}
}
