package h2relay

import (
	"time"

	"golang.org/x/net/http2"
)

// The client connection's frame handlers, on its reader goroutine. A
// returned error is a connection error (GOAWAY); stream errors are
// answered here with RST_STREAM.

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
		data := f.Data
		return cc.answer(&cc.batch, func(b []byte) []byte { return appendPing(b, true, data) })
	case *http2.WindowUpdateFrame:
		return cc.onWindowUpdate(f)
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			if s := cc.lookup(f.StreamID); s != nil {
				s.mu.Lock()
				s.resetClient(http2.ErrCodeProtocol)
				s.mu.Unlock()
			} else {
				return cc.queueRST(nil, f.StreamID, http2.ErrCodeProtocol)
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
		var err error
		if !s.finished {
			err = s.addSendWindow(&s.resp, delta)
		}
		s.mu.Unlock()
		if err != nil {
			return err
		}
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
		early := !s.finished && !s.respHeaders
		if !s.finished {
			s.resetUpstream(http2.ErrCodeCancel)
			s.finish()
		}
		s.unlockB()
		if early {
			return cc.streamsBudget.reset(cc.srv.cfg.now())
		}
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
		return cc.queueRST(nil, id, http2.ErrCodeStreamClosed)
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
	if err := cc.streamsBudget.open(cfg.now()); err != nil {
		return err
	}
	if f.HasPriority() && f.Priority.StreamDep == id {
		return cc.queueRST(nil, id, http2.ErrCodeProtocol)
	}
	if full {
		return cc.queueRST(nil, id, http2.ErrCodeRefusedStream)
	}
	s := &stream{srv: cc.srv, cc: cc, id: id, grpcStatus: -1}
	s.head.Client, s.head.TLS = cc.client, cc.tls
	cl, isConnect, err := parseRequest(f.Fields, &s.head)
	if err != nil {
		return cc.queueRST(nil, id, http2.ErrCodeProtocol)
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
		return cc.queueRST(nil, id, http2.ErrCodeProtocol)
	}
	s.start = time.Now()
	s.contentLength = cl
	s.fwd = cc.forwarded(s.head.Authority)
	s.req.recvWindow = int64(cfg.StreamWindow)
	s.resp.recvWindow = int64(cfg.StreamWindow)
	s.req.end = f.StreamEnded()
	s.headerBytes = headerListSize(f.Fields)
	cc.mu.Lock()
	if cc.headerBytes+s.headerBytes > heldHeaderFactor*int(cfg.MaxHeaderListSize) {
		cc.mu.Unlock()
		return cc.queueRST(nil, id, http2.ErrCodeRefusedStream)
	}
	cc.headerBytes += s.headerBytes
	s.resp.sendWindow = int64(cc.peerInitWindow)
	cc.streams[id] = s
	cc.active++
	cc.armSweep()
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
