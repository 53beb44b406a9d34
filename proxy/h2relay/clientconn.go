package h2relay

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/longhaul-proxy/longhaul/internal/guard"
)

// shutdownPing is the payload of the PING that Shutdown's first GOAWAY
// carries: its ACK means the client saw the GOAWAY, so no stream it opens
// afterwards is in flight.
var shutdownPing = [8]byte{'l', 'h', 's', 'h', 'u', 't', 'd', 'n'}

// clientConn is a client's HTTP/2 connection. Its reader goroutine is
// ServeConn's caller.
type clientConn struct {
	frameConn
	srv    *Server
	router Router // routes this connection's streams; set before serve
	client netip.AddrPort
	tls    bool
	// ip, proto and fwdBase are set once: the client's address and
	// protocol as forwarding headers carry them.
	ip, proto, fwdBase string
	// lastAuth and lastFwd cache the Forwarded value of the last
	// :authority (reader goroutine only).
	lastAuth, lastFwd string
	// batch collects the connections this reader goroutine produced
	// output for (reader goroutine only).
	batch batch
	// streamsBudget bounds new and early-reset streams (reader goroutine
	// only).
	streamsBudget streamBudget

	// Under mu: the highest client stream id seen; goaway: a GOAWAY went
	// out, streams above goawayLast are ignored; finalGoAway: the real last
	// stream id went out, close when no stream is left.
	maxSeen     uint32
	headerBytes int // headerListSize of the open streams' request headers
	goaway      bool
	goawayLast  uint32
	finalGoAway bool
	idleTimer   *time.Timer
	// sweepTimer runs sweep while streams are open; sweeping: it is armed.
	sweepTimer *time.Timer
	sweeping   bool

	done chan struct{} // closed when ServeConn is over

	// held is what the connection holds in user space (its output and its
	// streams' buffers), as accounted in Config.Budget.
	held atomic.Int64
}

// addHeld accounts n bytes held (negative: given back).
func (cc *clientConn) addHeld(n int64) {
	cc.held.Add(n)
	cc.srv.cfg.Budget.Add(n)
}

// Held and Shed make the connection a membudget.Holder.
func (cc *clientConn) Held() int64 { return cc.held.Load() }

// Shed closes the connection for the process's memory budget: GOAWAY
// ENHANCE_YOUR_CALM, then the close (within closeFlushTimeout if the
// client does not read).
func (cc *clientConn) Shed() {
	cc.calm("process memory budget")
	// The reader may be waiting for a frame that never comes.
	cc.nc.SetReadDeadline(time.Now().Add(closeFlushTimeout))
}

func newClientConn(srv *Server, nc net.Conn) *clientConn {
	cc := &clientConn{srv: srv, done: make(chan struct{})}
	cfg := &srv.cfg
	cc.init(nc, cfg.now, cfg.MaxHeaderListSize, cfg.ConnWindow, cfg.StreamWindow)
	cc.writeTimeout = cfg.WriteTimeout
	if cfg.Budget != nil {
		cc.account = cc.addHeld
	}
	cc.fr.SetMaxReadFrameSize(16 << 10)
	cc.client, cc.tls = clientAddrOf(nc)
	addr := cc.client.Addr().Unmap()
	cc.ip = addr.String()
	cc.proto = "http"
	if cc.tls {
		cc.proto = "https"
	}
	if addr.Is6() {
		cc.fwdBase = `for="[` + cc.ip + `]";proto=` + cc.proto
	} else {
		cc.fwdBase = "for=" + cc.ip + ";proto=" + cc.proto
	}
	return cc
}

// forwarded returns the Forwarded field value for a request to authority.
// Reader goroutine only.
func (cc *clientConn) forwarded(authority string) string {
	if authority == cc.lastAuth && cc.lastFwd != "" {
		return cc.lastFwd
	}
	v := cc.fwdBase
	if authority != "" && !strings.ContainsAny(authority, "\"\\") {
		v += `;host="` + authority + `"`
	}
	cc.lastAuth, cc.lastFwd = authority, v
	return v
}

// serve runs the connection: preface, SETTINGS, then the frame loop.
func (cc *clientConn) serve() error {
	defer close(cc.done)
	go func() {
		// A panic closes the socket only: the writer may hold cc.mu.
		defer guard.Recover("h2relay", func() { cc.nc.Close() })
		cc.writeLoop()
	}()
	defer cc.cleanup()
	cfg := &cc.srv.cfg
	cc.nc.SetReadDeadline(time.Now().Add(cfg.PrefaceTimeout))
	var pre [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(cc.br, pre[:]); err != nil {
		return fmt.Errorf("read client preface: %w", err)
	}
	if string(pre[:]) != http2.ClientPreface {
		cc.goAway(0, http2.ErrCodeProtocol, "invalid connection preface")
		return errors.New("invalid client preface")
	}
	cc.mu.Lock()
	cc.out = appendSettings(cc.out,
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: cfg.MaxConcurrentStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(cfg.StreamWindow)},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: cfg.MaxHeaderListSize},
	)
	if inc := int64(cfg.ConnWindow) - initialWindow; inc > 0 {
		cc.out = appendWindowUpdate(cc.out, 0, uint32(inc))
		cc.recvWindow += inc
	}
	cc.kick()
	cc.mu.Unlock()
	f, err := cc.fr.ReadFrame()
	if err != nil {
		return cc.readError(err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		cc.goAway(0, http2.ErrCodeProtocol, "first frame is not SETTINGS")
		return errors.New("client did not start with SETTINGS")
	}
	if err := cc.onSettings(sf); err != nil {
		return cc.connError(err)
	}
	cc.batch.flush()
	cc.nc.SetReadDeadline(time.Time{})
	cc.idleTimer = stoppedTimer(cc.nc, cc.checkIdle)
	cc.idleTimer.Reset(cfg.IdleTimeout)
	cc.mu.Lock()
	cc.sweepTimer = stoppedTimer(cc.nc, cc.sweep)
	cc.mu.Unlock()
	defer cc.batch.flush()
	for {
		f, err := cc.fr.ReadFrame()
		if err == nil {
			err = cc.dispatch(f)
			if err != nil {
				err = cc.connError(err)
			}
		} else {
			err = cc.readError(err)
		}
		if err != nil {
			return err
		}
		if !cc.nextFrameBuffered() {
			cc.batch.flush()
		}
	}
}

// readError handles an error of ReadFrame: a stream error resets that
// stream (nil: go on reading); anything else ends the connection, with
// GOAWAY for protocol errors.
func (cc *clientConn) readError(err error) error {
	var se http2.StreamError
	if errors.As(err, &se) {
		cc.mu.Lock()
		if se.StreamID > cc.maxSeen && se.StreamID%2 == 1 {
			cc.maxSeen = se.StreamID
		}
		cc.mu.Unlock()
		if s := cc.lookup(se.StreamID); s != nil {
			s.mu.Lock()
			s.resetClient(se.Code)
			s.mu.Unlock()
			return nil
		}
		return cc.queueRST(nil, se.StreamID, se.Code)
	}
	var calm *calmError
	if errors.As(err, &calm) {
		return cc.connError(err)
	}
	if errors.Is(err, http2.ErrFrameTooLarge) {
		return cc.connError(http2.ConnectionError(http2.ErrCodeFrameSize))
	}
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		return cc.connError(ce)
	}
	return fmt.Errorf("read frame: %w", err)
}

// connError answers a connection error with GOAWAY; the connection closes
// once it is written.
func (cc *clientConn) connError(err error) error {
	var calm *calmError
	if errors.As(err, &calm) {
		cc.calm(calm.reason)
		return fmt.Errorf("connection error %v: %w", http2.ErrCodeEnhanceYourCalm, err)
	}
	code := http2.ErrCodeProtocol
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		code = http2.ErrCode(ce)
	}
	debug := ""
	if d := cc.fr.ErrorDetail(); d != nil {
		debug = d.Error()
	}
	cc.goAwayLast(code, debug)
	return fmt.Errorf("connection error %v: %w", code, err)
}

// calm ends a connection that went over a budget: the Observer is told,
// and GOAWAY ENHANCE_YOUR_CALM with reason goes out before the close.
func (cc *clientConn) calm(reason string) {
	if o := cc.srv.cfg.Observer; o != nil {
		o.Calmed(reason)
	}
	cc.goAwayLast(http2.ErrCodeEnhanceYourCalm, reason)
}

// goAwayLast is goAway with the last stream the client opened.
func (cc *clientConn) goAwayLast(code http2.ErrCode, debug string) {
	cc.mu.Lock()
	last := cc.maxSeen
	cc.mu.Unlock()
	cc.goAway(last, code, debug)
}

// cleanup ends every stream still open (RST_STREAM CANCEL to their
// endpoints) and waits for the writer.
func (cc *clientConn) cleanup() {
	if cc.idleTimer != nil {
		cc.idleTimer.Stop()
	}
	cc.mu.Lock()
	if cc.sweepTimer != nil {
		cc.sweepTimer.Stop()
		cc.sweepTimer = nil // a sweep under way does not re-arm it (armSweep)
	}
	cc.mu.Unlock()
	for _, s := range cc.snapshot() {
		s.mu.Lock()
		s.resetUpstream(http2.ErrCodeCancel)
		s.finish()
		s.mu.Unlock()
	}
	cc.mu.Lock()
	flushing := cc.closeAfter && !cc.closed
	if !flushing {
		cc.closed = true
	}
	cc.cond.Signal()
	cc.mu.Unlock()
	if !flushing {
		cc.nc.Close() // unblocks a write the client does not read
	}
	<-cc.writerDone
	cc.nc.Close()
}

// queueRST queues RST_STREAM toward the client. An error means the client
// provoked more answers than it read (see controlQueued); callers on the
// reader goroutine return it, others leave it to the next frame.
func (cc *clientConn) queueRST(b *batch, id uint32, code http2.ErrCode) error {
	return cc.answer(b, func(out []byte) []byte { return appendRSTStream(out, id, code) })
}

// release removes a finished stream and gives back n bytes of connection
// window it held.
func (cc *clientConn) release(id uint32, n int) {
	cc.mu.Lock()
	if s, ok := cc.streams[id]; ok {
		delete(cc.streams, id)
		cc.active--
		cc.headerBytes -= s.headerBytes
	}
	if n > 0 {
		cc.creditLocked(n, nil)
	}
	if cc.active == 0 {
		cc.idleSince = time.Now()
		if cc.finalGoAway {
			cc.closeAfter = true
			cc.cond.Signal()
		}
	}
	cc.mu.Unlock()
}

// checkIdle closes the connection when it had no stream for IdleTimeout.
func (cc *clientConn) checkIdle() {
	timeout := cc.srv.cfg.IdleTimeout
	cc.mu.Lock()
	if cc.closed || cc.closeAfter {
		cc.mu.Unlock()
		return
	}
	idle := cc.active == 0 && time.Since(cc.idleSince) >= timeout
	next := timeout
	if cc.active == 0 && !idle {
		next = timeout - time.Since(cc.idleSince)
	}
	last := cc.maxSeen
	cc.mu.Unlock()
	if idle {
		cc.goAway(last, http2.ErrCodeNo, "idle")
		return
	}
	cc.idleTimer.Reset(next)
}

// startShutdown sends the first GOAWAY (largest stream id) and a PING.
func (cc *clientConn) startShutdown() {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.closed || cc.goaway {
		return
	}
	cc.goaway = true
	cc.goawayLast = 1<<31 - 1
	cc.out = appendGoAway(cc.out, cc.goawayLast, http2.ErrCodeNo, "")
	cc.out = appendPing(cc.out, false, shutdownPing)
	cc.kick()
}

// sendFinalGoAway sends GOAWAY with the last stream accepted, after the
// client acknowledged the first one's PING.
func (cc *clientConn) sendFinalGoAway() {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.closed || cc.finalGoAway {
		return
	}
	cc.goawayLast = cc.maxSeen
	cc.finalGoAway = true
	cc.out = appendGoAway(cc.out, cc.goawayLast, http2.ErrCodeNo, "")
	if cc.active == 0 {
		cc.closeAfter = true
		cc.cond.Signal()
	}
	cc.kick()
}
