package h2relay

import (
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// pipe is one direction of a stream: the request (client to endpoint) or
// the response (endpoint to client). All of it is protected by the
// stream's mu.
type pipe struct {
	// buf holds DATA received from the source and not yet forwarded: never
	// more than the window the relay gave the source. It is the relay's
	// own copy (the Framer reuses its buffer).
	buf []byte
	// end: the source ended its side (END_STREAM, possibly with trailers,
	// which then leave after buf). endSent: forwarded.
	end, endSent bool
	trailers     []hpack.HeaderField
	// sendWindow is what the destination lets us send on this stream; it
	// may be negative after a SETTINGS_INITIAL_WINDOW_SIZE decrease.
	sendWindow int64
	// recvWindow is what the source may still send on this stream;
	// unacked, what it sent and we forwarded without crediting it yet.
	recvWindow, unacked int64
	blocked             bool // listed in the destination's blocked list
}

// stream is one request stream, from a client connection to (at most one at
// a time) an upstream stream. The client connection's reader goroutine
// creates it; afterwards whoever holds mu may act on it: either side's
// reader, a dialing goroutine, a writer that found room, drain or shutdown.
//
// A round trip (Server.RoundTrip) is a stream too, with rt set and cc nil:
// its downstream side is the caller (the request body read by a goroutine
// of the round trip, the response read through http.Response.Body) instead
// of a client connection. Everything upstream (binding, flow control,
// resets, GOAWAY, drain, lost connections) is the same code; the few
// places that reach the client side branch on rt.
type stream struct {
	// Set by the client connection's reader goroutine (or RoundTrip)
	// before the stream is published (in a connection's table, under its
	// mu); read-only afterwards.
	srv   *Server
	cc    *clientConn // nil for a round trip
	rt    *roundTrip  // nil for a client connection's stream
	id    uint32      // on the client connection
	head  RequestHead
	fwd   string // the Forwarded field value
	start time.Time
	// headerBytes is the headerListSize of the request header, counted in
	// the connection's budget while the stream is open.
	headerBytes int

	// The fields below are protected by mu.
	mu sync.Mutex
	// b is the batch of the reader goroutine holding mu, nil for other
	// holders; it is set after Lock and cleared before Unlock (lockB).
	b         *batch
	up        *upConn // nil until bound (or after the endpoint failed)
	upID      uint32
	addr      string
	routeDone func()
	tried     []string
	attempts  int
	upGone    bool // the upstream side is over: request data is dropped
	upClosed  bool // the upstream stream is closed (reset, or both ends)
	// reqDataSent: request DATA left for an endpoint, so the request may
	// have been processed and is not retried.
	reqDataSent bool
	req, resp   pipe
	// respHeaders: the final response header was relayed.
	respHeaders   bool
	status        int
	grpcStatus    int
	finished      bool
	contentLength int64 // declared by the client; -1 if none
	received      int64
	// relayAnswered: the relay ended the response itself (failToClient).
	relayAnswered bool
	// pushback, if not "", is the grpc-retry-pushback-ms failToClient
	// gives a gRPC call (set by a paced drain: endDrained).
	pushback string
	// events counts everything that happened on the stream (pump calls),
	// moved the pump calls that forwarded data; the sweep's copies and
	// counts of sweeps without a change (see sweep.go).
	events, moved            uint32
	sweptEvents, sweptMoved  uint32
	quietSweeps, stuckSweeps int
	// accounted is len(req.buf)+len(resp.buf) as last told to the
	// connection's account (reaccount).
	accounted int
}

// ends returns the connections and stream ids of the pipe's source and
// destination; dst is nil while the request has no upstream stream.
func (s *stream) ends(p *pipe) (src, dst *frameConn, srcID, dstID uint32) {
	var down *frameConn // nil for a round trip
	if s.cc != nil {
		down = &s.cc.frameConn
	}
	if p == &s.req {
		if s.up != nil {
			dst = &s.up.frameConn
		}
		return down, dst, s.id, s.upID
	}
	var src2 *frameConn
	if s.up != nil {
		src2 = &s.up.frameConn
	}
	return src2, down, s.upID, s.id
}

// addSendWindow applies a change of the peer's SETTINGS_INITIAL_WINDOW_SIZE
// (RFC 9113 section 6.9.2) to direction p, which sends toward that peer,
// and sends what a larger window lets through. A window pushed above the
// largest legal one is a connection error. Called with s.mu held.
func (s *stream) addSendWindow(p *pipe, delta int32) error {
	p.sendWindow += int64(delta)
	if p.sendWindow > maxWindow {
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	if delta > 0 {
		s.pump(p, nil)
	}
	return nil
}

// pump forwards what the pipe holds and then data (from a frame just read,
// not retained) as far as the windows and the destination's output allow,
// keeps the rest, credits the source for what left, and forwards the end
// of the direction when everything before it left. Called with s.mu held.
func (s *stream) pump(p *pipe, data []byte) {
	s.forward(p, data)
	s.reaccount()
}

// reaccount tells the client connection's account of the change of the
// bytes the stream buffers since it was last told. Called with s.mu held.
func (s *stream) reaccount() {
	if s.cc == nil || s.cc.account == nil {
		return // no budget: nothing to tell
	}
	if now := len(s.req.buf) + len(s.resp.buf); now != s.accounted {
		s.cc.account(int64(now - s.accounted))
		s.accounted = now
	}
}

// forward is pump without the accounting.
func (s *stream) forward(p *pipe, data []byte) {
	if s.finished {
		return
	}
	s.events++
	if s.rt != nil && p == &s.resp {
		s.rt.deliver(s, data)
		return
	}
	src, dst, srcID, dstID := s.ends(p)
	if p == &s.req && s.upGone {
		// Nobody to send to: drop, but give the client its connection
		// window back; a stream left open after its response ends with
		// the request.
		if s.cc != nil {
			s.cc.credit(len(data))
		}
		if p.end && s.resp.endSent {
			s.finish()
		}
		return
	}
	if dst == nil || p.endSent {
		p.buf = append(p.buf, data...)
		return
	}
	sent := 0
	dst.mu.Lock()
	if dst.closed {
		dst.mu.Unlock()
		p.buf = append(p.buf, data...)
		return
	}
	for {
		chunk, fromBuf := p.buf, true
		if len(chunk) == 0 {
			chunk, fromBuf = data, false
		}
		if len(chunk) == 0 {
			break
		}
		n := int64(min(len(chunk), dst.peerMaxFrame, dst.dataRoom()))
		n = min(n, p.sendWindow, dst.sendWindow)
		if n <= 0 {
			if (dst.sendWindow <= 0 || dst.dataRoom() <= 0) && !p.blocked {
				p.blocked = true
				dst.blocked = append(dst.blocked, blockedPipe{s, p})
			}
			break
		}
		left := len(p.buf) + len(data) - int(n)
		end := p.end && p.trailers == nil && left == 0
		dst.out = appendData(dst.out, dstID, chunk[:n], end)
		p.endSent = p.endSent || end
		p.sendWindow -= n
		dst.sendWindow -= n
		sent += int(n)
		if fromBuf {
			p.buf = p.buf[n:]
		} else {
			data = data[n:]
		}
	}
	if p.end && !p.endSent && len(p.buf) == 0 && len(data) == 0 {
		if p.trailers != nil {
			dst.encodeFields(s.b, dstID, true, p.trailers)
		} else {
			dst.out = appendData(dst.out, dstID, nil, true)
		}
		p.endSent = true
	}
	dst.kickB(s.b)
	dst.mu.Unlock()
	if len(p.buf) == 0 {
		p.buf = nil
	}
	if len(data) > 0 {
		p.buf = append(p.buf, data...)
	}
	if sent > 0 {
		s.moved++
		if p == &s.req {
			s.reqDataSent = true
		}
		s.credit(p, src, srcID, sent)
	}
	if p.endSent {
		s.ended(p)
	}
}

// credit returns n forwarded bytes to the source's windows: the stream's
// while the source may still send, and the connection's for the request
// direction (the response direction credits an endpoint's connection
// window as DATA arrives: see onUpstreamData). Called with s.mu held.
func (s *stream) credit(p *pipe, src *frameConn, srcID uint32, n int) {
	if src == nil {
		if s.rt != nil && p == &s.req {
			notify(s.rt.room) // the body reader may read more
		}
		return
	}
	src.mu.Lock()
	if p == &s.req {
		src.creditLocked(n, s.b)
	}
	if !p.end && !src.closed {
		p.unacked += int64(n)
		target := int64(src.streamWindow)
		if p.unacked >= target/4 || p.recvWindow < target/2 {
			inc := p.unacked
			if p.recvWindow+inc < target {
				inc = target - p.recvWindow
			}
			p.recvWindow += inc
			p.unacked = 0
			src.out = appendWindowUpdate(src.out, srcID, uint32(inc))
			src.kickB(s.b)
		}
	}
	src.mu.Unlock()
}

// ended runs when a direction's end was forwarded. Called with s.mu held.
func (s *stream) ended(p *pipe) {
	if s.rt != nil {
		s.rt.ended(s)
		return
	}
	if s.req.endSent && s.resp.end {
		s.upClosed = true
	}
	if s.resp.endSent && s.upGone && !s.req.end {
		if s.relayAnswered {
			// The relay ended the response itself (no endpoint to take
			// the rest): stop the client's request body.
			s.cc.queueRST(s.b, s.id, http2.ErrCodeNo)
			s.finish()
			return
		}
		// The endpoint answered in full and wants no more of the
		// request. The stream stays open (and counted toward the client's
		// concurrency limit, as a stream open on one side is) until the
		// client ends its request, or the sweep stops it with RST_STREAM
		// NO_ERROR; its request data is dropped.
		return
	}
	if s.resp.endSent && (s.req.endSent || s.upGone) {
		s.finish()
	}
}

// resetUpstream sends RST_STREAM to the endpoint unless the upstream stream
// is closed already, and detaches the stream from it. Called with s.mu held.
func (s *stream) resetUpstream(code http2.ErrCode) {
	if s.up == nil {
		return
	}
	if !s.upClosed {
		up, id := s.up, s.upID
		up.mu.Lock()
		if !up.closed {
			up.out = appendRSTStream(up.out, id, code)
			up.kickB(s.b)
		}
		up.mu.Unlock()
		s.upClosed = true
	}
	s.detach()
}

// detach unbinds the stream from its upstream connection, giving back its
// slot. The response data the stream holds stays, to be forwarded (a
// complete response outlives its upstream stream); it was credited to the
// connection on arrival. Called with s.mu held.
func (s *stream) detach() {
	up := s.up
	if up == nil {
		return
	}
	up.release(s.upID)
	s.up = nil
}

// finish ends the stream: it leaves both connections, gives back the
// connection windows of data it still held, and reports its outcome.
// Called with s.mu held.
func (s *stream) finish() {
	if s.finished {
		return
	}
	if s.up != nil {
		if !s.upClosed {
			s.resetUpstream(http2.ErrCodeCancel)
		} else {
			s.detach()
		}
	}
	s.finished = true
	if s.rt != nil {
		s.req.buf, s.resp.buf = nil, nil
		s.rt.over(s.srv)
		return
	}
	s.cc.release(s.id, len(s.req.buf))
	s.req.buf, s.resp.buf = nil, nil
	s.reaccount()
	if s.routeDone != nil {
		s.routeDone()
		s.routeDone = nil
	}
	if o := s.srv.cfg.Observer; o != nil {
		o.RequestDone(Outcome{GRPC: s.head.GRPC, Status: s.status, GRPCStatus: s.grpcStatus, Duration: time.Since(s.start),
			Start: s.start, Endpoint: s.addr, Head: &s.head})
	}
}

// lockB locks s for a reader goroutine whose output goes into batch b.
func (s *stream) lockB(b *batch) {
	s.mu.Lock()
	s.b = b
}

// unlockB undoes lockB.
func (s *stream) unlockB() {
	s.b = nil
	s.mu.Unlock()
}
