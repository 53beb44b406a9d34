package h2relay

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/longhaul-proxy/longhaul/internal/guard"
)

// upConn is an h2c connection to an endpoint. Its reader and writer
// goroutines are the server's.
type upConn struct {
	frameConn
	srv  *Server
	addr string

	// Under mu: the next stream id; the endpoint's
	// SETTINGS_MAX_CONCURRENT_STREAMS; goaway: no new stream (GOAWAY
	// received, drained, idle, or ids exhausted).
	nextID         uint32
	peerMaxStreams uint32
	goaway         bool
	idleTimer      *time.Timer
	// Health: lastRead (unix ns, atomic) is when the reader last found the
	// connection alive; pingAt, under mu, when the health PING went out (0:
	// none outstanding).
	lastRead    atomic.Int64
	pingAt      int64
	healthTimer *time.Timer
	// batch: as clientConn's, for the reader goroutine.
	batch batch

	settingsCh chan struct{} // closed at the endpoint's first SETTINGS
	readerDone chan struct{} // closed when the connection is over
}

func newUpConn(srv *Server, addr string, nc net.Conn) *upConn {
	cfg := &srv.cfg
	up := &upConn{srv: srv, addr: addr, nextID: 1, peerMaxStreams: 100,
		settingsCh: make(chan struct{}), readerDone: make(chan struct{})}
	up.init(nc, cfg.now, cfg.MaxHeaderListSize, cfg.ConnWindow, cfg.StreamWindow)
	up.writeTimeout = cfg.WriteTimeout
	return up
}

// start sends the preface and SETTINGS and starts the goroutines.
func (up *upConn) start() {
	cfg := &up.srv.cfg
	up.mu.Lock()
	up.out = append(up.out, http2.ClientPreface...)
	up.out = appendSettings(up.out,
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(cfg.StreamWindow)},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: cfg.MaxHeaderListSize},
	)
	if inc := int64(cfg.ConnWindow) - initialWindow; inc > 0 {
		up.out = appendWindowUpdate(up.out, 0, uint32(inc))
		up.recvWindow += inc
	}
	up.mu.Unlock()
	up.idleTimer = stoppedTimer(up.nc, up.checkIdle)
	up.healthTimer = stoppedTimer(up.nc, up.checkHealth)
	up.lastRead.Store(time.Now().UnixNano())
	up.srv.wg.Add(2)
	go func() {
		defer up.srv.wg.Done()
		defer guard.Recover("h2relay", func() { up.nc.Close() })
		up.writeLoop()
	}()
	go func() { defer up.srv.wg.Done(); up.readLoop() }()
	up.idleTimer.Reset(cfg.UpstreamIdleTimeout)
	up.healthTimer.Reset(cfg.UpstreamPingInterval)
}

// healthPing is the payload of the relay's liveness PINGs to endpoints.
var healthPing = [8]byte{'l', 'h', 'h', 'e', 'a', 'l', 't', 'h'}

// checkHealth PINGs a connection with streams that has been silent for
// UpstreamPingInterval, and closes it if the silence outlasts
// UpstreamPingTimeout after that.
func (up *upConn) checkHealth() {
	cfg := &up.srv.cfg
	now := time.Now().UnixNano()
	silent := time.Duration(now - up.lastRead.Load())
	next := cfg.UpstreamPingInterval
	up.mu.Lock()
	if up.closed {
		up.mu.Unlock()
		return
	}
	switch {
	case up.pingAt != 0 && up.lastRead.Load() > up.pingAt:
		up.pingAt = 0 // answered (or something else came)
	case up.pingAt != 0:
		if time.Duration(now-up.pingAt) >= cfg.UpstreamPingTimeout {
			up.mu.Unlock()
			up.abort()
			return
		}
		next = cfg.UpstreamPingTimeout - time.Duration(now-up.pingAt)
	case up.active > 0 && silent >= cfg.UpstreamPingInterval:
		up.pingAt = now
		up.out = appendPing(up.out, false, healthPing)
		up.kick()
		next = cfg.UpstreamPingTimeout
	case silent < cfg.UpstreamPingInterval:
		next = cfg.UpstreamPingInterval - silent
	}
	up.mu.Unlock()
	up.healthTimer.Reset(next)
}

// reserve takes a stream slot if the connection accepts a new stream.
func (up *upConn) reserve() bool {
	up.mu.Lock()
	defer up.mu.Unlock()
	if up.closed || up.closeAfter || up.goaway || up.active >= int(up.peerMaxStreams) {
		return false
	}
	up.active++
	return true
}

// release gives back a stream slot (and the stream id's entry, if not 0);
// the stream's data was credited to the connection as it arrived. A
// connection that takes no new stream closes when its last one is
// released.
func (up *upConn) release(id uint32) {
	up.mu.Lock()
	if id != 0 {
		delete(up.streams, id)
	}
	up.active--
	if up.active == 0 {
		up.idleSince = time.Now()
		if up.goaway {
			up.closeAfter = true
			up.cond.Signal()
		}
	}
	up.mu.Unlock()
}

// drain stops new streams and sends GOAWAY; the connection closes when its
// last stream ends.
func (up *upConn) drain() {
	up.mu.Lock()
	defer up.mu.Unlock()
	up.goaway = true
	if up.closed {
		return
	}
	up.out = appendGoAway(up.out, 0, http2.ErrCodeNo, "draining")
	if up.active == 0 {
		up.closeAfter = true
	}
	up.cond.Signal()
}

func (up *upConn) checkIdle() {
	timeout := up.srv.cfg.UpstreamIdleTimeout
	up.mu.Lock()
	if up.closed {
		up.mu.Unlock()
		return
	}
	next := timeout
	if up.active == 0 {
		if idle := time.Since(up.idleSince); idle >= timeout {
			up.goaway = true
			up.closeAfter = true
			up.out = appendGoAway(up.out, 0, http2.ErrCodeNo, "idle")
			up.cond.Signal()
			up.mu.Unlock()
			return
		} else {
			next = timeout - idle
		}
	}
	up.mu.Unlock()
	up.idleTimer.Reset(next)
}

// failAll ends every stream still on the connection, which is gone.
func (up *upConn) failAll(retryable bool, msg string) {
	for _, s := range up.snapshot() {
		s.mu.Lock()
		if s.up == up {
			s.upstreamFailed(retryable, msg)
		}
		s.mu.Unlock()
	}
}

func (up *upConn) readLoop() {
	defer close(up.readerDone)
	// Why reading ended (an error, a panic) is not passed on: it names the
	// endpoint's address, and clients get no more than the message below.
	guard.Do("h2relay", func() { _ = up.readFrames() })
	up.abort()
	up.idleTimer.Stop()
	up.healthTimer.Stop()
	up.failAll(false, "upstream connection lost")
	up.srv.pool.remove(up)
}

func (up *upConn) readFrames() error {
	defer up.batch.flush()
	for {
		f, err := up.fr.ReadFrame()
		if err == nil {
			err = up.dispatch(f)
			if err != nil {
				var ce http2.ConnectionError
				if errors.As(err, &ce) {
					up.goAway(0, http2.ErrCode(ce), "")
				}
				return fmt.Errorf("from %s: %w", up.addr, err)
			}
		} else if err = up.readError(err); err != nil {
			return err
		}
		if !up.nextFrameBuffered() {
			up.batch.flush()
			up.lastRead.Store(time.Now().UnixNano())
		}
	}
}

// readError handles an error of ReadFrame: a stream error fails that
// stream (nil: go on reading); anything else ends the connection.
func (up *upConn) readError(err error) error {
	var se http2.StreamError
	if errors.As(err, &se) {
		if s := up.lookup(se.StreamID); s != nil {
			s.lockB(&up.batch)
			if s.up == up {
				s.resetUpstream(se.Code)
				s.failToClient(502, "malformed response from the endpoint")
			}
			s.unlockB()
		}
		return nil
	}
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		up.goAway(0, http2.ErrCode(ce), "")
	} else if errors.Is(err, http2.ErrFrameTooLarge) {
		up.goAway(0, http2.ErrCodeFrameSize, "")
	}
	return fmt.Errorf("read frame from %s: %w", up.addr, err)
}

func (up *upConn) dispatch(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.DataFrame:
		n := int(f.Length)
		if !up.takeRecv(n) {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		s := up.lookup(f.StreamID)
		if s == nil {
			up.credit(n)
			return nil
		}
		s.onUpstreamData(up, f)
	case *http2.MetaHeadersFrame:
		if s := up.lookup(f.StreamID); s != nil {
			s.onUpstreamHeaders(up, f)
		}
	case *http2.RSTStreamFrame:
		if s := up.lookup(f.StreamID); s != nil {
			s.onUpstreamReset(up, f.ErrCode)
		}
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		return up.onSettings(f)
	case *http2.PingFrame:
		if !f.IsAck() {
			data := f.Data
			return up.answer(&up.batch, func(b []byte) []byte { return appendPing(b, true, data) })
		}
	case *http2.WindowUpdateFrame:
		if f.StreamID == 0 {
			if !up.addSendWindow(f.Increment) {
				return http2.ConnectionError(http2.ErrCodeFlowControl)
			}
			return nil
		}
		if s := up.lookup(f.StreamID); s != nil {
			s.onUpstreamWindow(up, f.Increment)
		}
	case *http2.GoAwayFrame:
		up.onGoAway(f)
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	return nil
}

func (up *upConn) onSettings(f *http2.SettingsFrame) error {
	delta, maxStreams, hasMax, err := up.applySettings(f, &up.batch)
	if err != nil {
		return err
	}
	up.mu.Lock()
	if hasMax {
		up.peerMaxStreams = maxStreams
	}
	first := false
	select {
	case <-up.settingsCh:
	default:
		first = true
	}
	up.mu.Unlock()
	if first {
		close(up.settingsCh)
	}
	if delta == 0 {
		return nil
	}
	for _, s := range up.snapshot() {
		s.mu.Lock()
		var err error
		if s.up == up && !s.finished {
			err = s.addSendWindow(&s.req, delta)
		}
		s.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// onGoAway stops new streams; those the endpoint did not take (above the
// last stream id) go elsewhere or fail.
func (up *upConn) onGoAway(f *http2.GoAwayFrame) {
	up.mu.Lock()
	up.goaway = true
	var excluded []*stream
	for id, s := range up.streams {
		if id > f.LastStreamID {
			excluded = append(excluded, s)
		}
	}
	if up.active == 0 {
		up.closeAfter = true
		up.cond.Signal()
	}
	up.mu.Unlock()
	for _, s := range excluded {
		s.mu.Lock()
		if s.up == up {
			s.upstreamFailed(true, "endpoint going away")
		}
		s.mu.Unlock()
	}
}

// stoppedTimer returns a timer that will run fn once Reset: the caller
// stores it first, so that fn may use (Reset) it. A panic in fn is
// contained and closes nc, the connection fn serves.
func stoppedTimer(nc net.Conn, fn func()) *time.Timer {
	t := time.AfterFunc(time.Hour, func() {
		defer guard.Recover("h2relay", func() { nc.Close() })
		fn()
	})
	t.Stop()
	return t
}
