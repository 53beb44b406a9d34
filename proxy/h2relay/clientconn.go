package h2relay

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
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

	// Under mu: the highest client stream id seen; goaway: a GOAWAY went
	// out, streams above goawayLast are ignored; finalGoAway: the real last
	// stream id went out, close when no stream is left.
	maxSeen     uint32
	goaway      bool
	goawayLast  uint32
	finalGoAway bool
	idleTimer   *time.Timer

	done chan struct{} // closed when ServeConn is over
}

func newClientConn(srv *Server, nc net.Conn) *clientConn {
	cc := &clientConn{srv: srv, done: make(chan struct{})}
	cfg := &srv.cfg
	cc.init(nc, cfg.MaxHeaderListSize, cfg.ConnWindow, cfg.StreamWindow)
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
	go cc.writeLoop()
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
	cc.idleTimer = time.AfterFunc(cfg.IdleTimeout, cc.checkIdle)
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
		} else {
			cc.queueRST(nil, se.StreamID, se.Code)
		}
		return nil
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
	code := http2.ErrCodeProtocol
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		code = http2.ErrCode(ce)
	}
	debug := ""
	if d := cc.fr.ErrorDetail(); d != nil {
		debug = d.Error()
	}
	cc.mu.Lock()
	last := cc.maxSeen
	cc.mu.Unlock()
	cc.goAway(last, code, debug)
	return fmt.Errorf("connection error %v: %w", code, err)
}

// cleanup ends every stream still open (RST_STREAM CANCEL to their
// endpoints) and waits for the writer.
func (cc *clientConn) cleanup() {
	if cc.idleTimer != nil {
		cc.idleTimer.Stop()
	}
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

func (cc *clientConn) queueRST(b *batch, id uint32, code http2.ErrCode) {
	cc.mu.Lock()
	if !cc.closed {
		cc.out = appendRSTStream(cc.out, id, code)
		cc.kickB(b)
	}
	cc.mu.Unlock()
}

// release removes a finished stream and gives back n bytes of connection
// window it held.
func (cc *clientConn) release(id uint32, n int) {
	cc.mu.Lock()
	if _, ok := cc.streams[id]; ok {
		delete(cc.streams, id)
		cc.active--
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

func (cc *clientConn) dispatch(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.DataFrame:
		return cc.onData(f)
	case *http2.MetaHeadersFrame:
		return cc.onHeaders(f)
	case *http2.RSTStreamFrame:
		return cc.onRST(f)
	case *http2.SettingsFrame:
		return cc.onSettings(f)
	case *http2.PingFrame:
		if f.IsAck() {
			if f.Data == shutdownPing {
				cc.sendFinalGoAway()
			}
			return nil
		}
		cc.mu.Lock()
		if !cc.closed {
			cc.out = appendPing(cc.out, true, f.Data)
			cc.kickB(&cc.batch)
		}
		cc.mu.Unlock()
	case *http2.WindowUpdateFrame:
		return cc.onWindowUpdate(f)
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			if s := cc.lookup(f.StreamID); s != nil {
				s.mu.Lock()
				s.resetClient(http2.ErrCodeProtocol)
				s.mu.Unlock()
			} else {
				cc.queueRST(nil, f.StreamID, http2.ErrCodeProtocol)
			}
		}
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	case *http2.GoAwayFrame:
		// The client will open no more streams; those open run on.
	}
	return nil
}

func (cc *clientConn) isIdle(id uint32) bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return id > cc.maxSeen
}

func (cc *clientConn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	delta, _, _, err := cc.applySettings(f, &cc.batch)
	if err != nil {
		return err
	}
	if delta == 0 {
		return nil
	}
	for _, s := range cc.snapshot() {
		s.mu.Lock()
		if !s.finished {
			s.resp.sendWindow += int64(delta)
			if s.resp.sendWindow > maxWindow {
				s.mu.Unlock()
				return http2.ConnectionError(http2.ErrCodeFlowControl)
			}
			if delta > 0 {
				s.pump(&s.resp, nil)
			}
		}
		s.mu.Unlock()
	}
	return nil
}

func (cc *clientConn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	if f.StreamID == 0 {
		if !cc.addSendWindow(f.Increment) {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		return nil
	}
	if cc.isIdle(f.StreamID) {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	s := cc.lookup(f.StreamID)
	if s == nil {
		return nil
	}
	s.lockB(&cc.batch)
	defer s.unlockB()
	if s.finished {
		return nil
	}
	s.resp.sendWindow += int64(f.Increment)
	if s.resp.sendWindow > maxWindow {
		s.resetClient(http2.ErrCodeFlowControl)
		return nil
	}
	s.pump(&s.resp, nil)
	return nil
}

func (cc *clientConn) onRST(f *http2.RSTStreamFrame) error {
	if cc.isIdle(f.StreamID) {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if s := cc.lookup(f.StreamID); s != nil {
		s.lockB(&cc.batch)
		if !s.finished {
			s.resetUpstream(http2.ErrCodeCancel)
			s.finish()
		}
		s.unlockB()
	}
	return nil
}

func (cc *clientConn) onData(f *http2.DataFrame) error {
	id := f.StreamID
	n := int(f.Length)
	if !cc.takeRecv(n) {
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	s := cc.lookup(id)
	if s == nil {
		if cc.isIdle(id) {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		cc.credit(n)
		cc.queueRST(nil, id, http2.ErrCodeStreamClosed)
		return nil
	}
	s.lockB(&cc.batch)
	defer s.unlockB()
	if s.finished || s.req.end {
		cc.credit(n)
		if !s.finished {
			s.resetClient(http2.ErrCodeStreamClosed)
		} else {
			cc.queueRST(nil, id, http2.ErrCodeStreamClosed)
		}
		return nil
	}
	s.req.recvWindow -= int64(n)
	if s.req.recvWindow < 0 {
		cc.credit(n)
		s.resetClient(http2.ErrCodeFlowControl)
		return nil
	}
	data := f.Data()
	if pad := n - len(data); pad > 0 {
		s.credit(&s.req, &cc.frameConn, id, pad)
	}
	s.received += int64(len(data))
	if f.StreamEnded() {
		s.req.end = true
	}
	if cl := s.contentLength; cl >= 0 && (s.received > cl || s.req.end && s.received != cl) {
		cc.credit(len(data))
		s.resetClient(http2.ErrCodeProtocol)
		return nil
	}
	s.pump(&s.req, data)
	return nil
}

func (cc *clientConn) onHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if s := cc.lookup(id); s != nil {
		return cc.onTrailers(s, f)
	}
	cfg := &cc.srv.cfg
	cc.mu.Lock()
	if id <= cc.maxSeen {
		cc.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	cc.maxSeen = id
	ignore := cc.goaway && id > cc.goawayLast
	full := cc.active >= int(cfg.MaxConcurrentStreams)
	cc.mu.Unlock()
	if ignore {
		return nil
	}
	if f.HasPriority() && f.Priority.StreamDep == id {
		cc.queueRST(nil, id, http2.ErrCodeProtocol)
		return nil
	}
	if full {
		cc.queueRST(nil, id, http2.ErrCodeRefusedStream)
		return nil
	}
	s := &stream{srv: cc.srv, cc: cc, id: id, grpcStatus: -1}
	s.head.Client, s.head.TLS = cc.client, cc.tls
	cl, isConnect, err := parseRequest(f.Fields, &s.head)
	if err != nil {
		cc.queueRST(nil, id, http2.ErrCodeProtocol)
		return nil
	}
	if f.Truncated {
		cc.refuse(id, f.StreamEnded(), s.head.GRPC, 431, 8, "request header list too large")
		return nil
	}
	if isConnect {
		cc.refuse(id, f.StreamEnded(), false, 405, 12, "CONNECT is not supported")
		return nil
	}
	if f.StreamEnded() && cl > 0 {
		cc.queueRST(nil, id, http2.ErrCodeProtocol)
		return nil
	}
	s.start = time.Now()
	s.contentLength = cl
	s.fwd = cc.forwarded(s.head.Authority)
	s.req.recvWindow = int64(cfg.StreamWindow)
	s.resp.recvWindow = int64(cfg.StreamWindow)
	s.req.end = f.StreamEnded()
	cc.mu.Lock()
	s.resp.sendWindow = int64(cc.peerInitWindow)
	cc.streams[id] = s
	cc.active++
	cc.mu.Unlock()
	s.lockB(&cc.batch)
	s.route()
	s.unlockB()
	return nil
}

func (cc *clientConn) onTrailers(s *stream, f *http2.MetaHeadersFrame) error {
	s.lockB(&cc.batch)
	defer s.unlockB()
	if s.finished {
		return nil
	}
	if s.req.end {
		return http2.ConnectionError(http2.ErrCodeStreamClosed)
	}
	if !f.StreamEnded() || checkTrailers(f.Fields) != nil ||
		s.contentLength >= 0 && s.received != s.contentLength {
		s.resetClient(http2.ErrCodeProtocol)
		return nil
	}
	s.req.trailers = f.Fields
	s.req.end = true
	s.pump(&s.req, nil)
	return nil
}

// refuse answers a request the relay does not forward with a response of
// its own: HTTP status code, or for gRPC a trailers-only response with
// grpcCode. A request still sending its body is then reset (NO_ERROR).
func (cc *clientConn) refuse(id uint32, ended, grpc bool, code, grpcCode int, msg string) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.closed {
		return
	}
	cc.hbuf.Reset()
	writeLocalResponse(cc.enc, grpc, code, grpcCode, msg)
	cc.out = appendHeaderBlock(cc.out, id, cc.hbuf.Bytes(), true, cc.peerMaxFrame)
	if !ended {
		cc.out = appendRSTStream(cc.out, id, http2.ErrCodeNo)
	}
	cc.kick()
}

// writeLocalResponse encodes a header-only response the relay makes itself.
func writeLocalResponse(enc *hpack.Encoder, grpc bool, code, grpcCode int, msg string) {
	if grpc {
		enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		enc.WriteField(hpack.HeaderField{Name: "content-type", Value: "application/grpc"})
		enc.WriteField(hpack.HeaderField{Name: "grpc-status", Value: itoa(grpcCode)})
		enc.WriteField(hpack.HeaderField{Name: "grpc-message", Value: msg})
		return
	}
	enc.WriteField(hpack.HeaderField{Name: ":status", Value: itoa(code)})
	enc.WriteField(hpack.HeaderField{Name: "content-length", Value: "0"})
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
