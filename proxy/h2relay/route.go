package h2relay

import (
	"errors"
	"strconv"

	"golang.org/x/net/http2"

	"github.com/longhaul-proxy/longhaul/internal/guard"
	"golang.org/x/net/http2/hpack"
)

// Binding streams to endpoints, retries, and the answers the relay gives
// when no endpoint can.

// route picks an endpoint and binds the stream to a stream on one of its
// connections, or starts a dial for it. Called with s.mu held, on any
// goroutine.
func (s *stream) route() {
	cfg := &s.srv.cfg
	for !s.finished {
		if s.attempts >= cfg.MaxAttempts {
			s.failToClient(502, "no endpoint reachable")
			return
		}
		addr, done, ok := s.cc.router.Route(&s.head, s.tried)
		if !ok {
			if m, isMisser := s.cc.router.(RouteMisser); isMisser && s.attempts == 0 && m.Missed(&s.head) {
				s.failToClientCode(404, 12, "no route") // gRPC UNIMPLEMENTED
				return
			}
			if s.attempts > 0 {
				s.failToClient(502, "no endpoint reachable")
			} else {
				s.failToClient(503, "no endpoint available")
			}
			return
		}
		s.attempts++
		s.addr, s.routeDone = addr, done
		if up := s.srv.pool.reserve(addr); up != nil {
			if s.bind(up) {
				return
			}
			s.releaseRoute()
			continue
		}
		s.srv.wg.Add(1)
		go s.dialThenBind(addr)
		return
	}
}

// dialThenBind waits for a connection to addr (dialling one if needed) and
// binds the stream to it, or tries another endpoint.
func (s *stream) dialThenBind(addr string) {
	defer s.srv.wg.Done()
	defer guard.Recover("h2relay", nil)
	up, err := s.srv.pool.get(s.srv.ctx, addr)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished {
		if up != nil {
			up.release(0)
		}
		return
	}
	if err != nil {
		var de *DialError
		if o := s.srv.cfg.Observer; o != nil && errors.As(err, &de) {
			o.DialFailed(addr, err)
		}
		s.retry()
		return
	}
	if !s.bind(up) {
		s.retry()
	}
}

// releaseRoute tells the Router the current attempt is over.
func (s *stream) releaseRoute() {
	if s.routeDone != nil {
		s.routeDone()
		s.routeDone = nil
	}
}

// retry abandons the current endpoint, which did not process the request,
// for another.
func (s *stream) retry() {
	s.releaseRoute()
	s.tried = append(s.tried, s.addr)
	s.route()
}

// bind opens the upstream stream on up, where a slot was reserved, with
// the request header and whatever request data is waiting. false: up took
// no new stream after all (its slot is given back).
func (s *stream) bind(up *upConn) bool {
	up.mu.Lock()
	if up.closed || up.closeAfter || up.goaway {
		up.mu.Unlock()
		up.release(0)
		return false
	}
	id := up.nextID
	up.nextID += 2
	if up.nextID > 1<<31-1 {
		up.goaway = true // ids exhausted: this is its last stream
	}
	up.streams[id] = s
	s.up, s.upID = up, id
	s.upGone, s.upClosed = false, false
	s.req.sendWindow = int64(up.peerInitWindow)
	s.resp.recvWindow = int64(up.streamWindow)
	end := s.req.end && len(s.req.buf) == 0 && s.req.trailers == nil
	up.encodeRequest(s.b, id, end, s)
	up.mu.Unlock()
	if end {
		s.req.endSent = true
		return true
	}
	s.pump(&s.req, nil)
	return true
}

// resetClient resets the stream toward the client with code and cancels
// its upstream stream. Called with s.mu held.
func (s *stream) resetClient(code http2.ErrCode) {
	s.resetUpstream(http2.ErrCodeCancel)
	s.resetDownstream(code, "stream reset")
}

// resetDownstream ends the stream toward its client with RST_STREAM code
// (a round trip fails with an UpstreamError saying why); its upstream
// stream is over or detached. Called with s.mu held.
func (s *stream) resetDownstream(code http2.ErrCode, reason string) {
	if s.rt != nil {
		s.failRoundTrip(&UpstreamError{Addr: s.addr, Reset: true, Code: code, Reason: reason,
			NotProcessed: code == http2.ErrCodeRefusedStream && !s.respHeaders})
		return
	}
	s.cc.queueRST(s.b, s.id, code)
	s.finish()
}

// upstreamFailed handles the loss of the upstream stream without a reset
// to forward: its connection died, was drained past its deadline, or a
// GOAWAY excluded it (retryable: the endpoint did not process it). Called
// with s.mu held.
func (s *stream) upstreamFailed(retryable bool, msg string) {
	if s.finished {
		return
	}
	s.upClosed = true
	s.detach()
	if s.resp.end {
		// The whole response is here; only its forwarding remains.
		s.upGone = true
		s.pump(&s.resp, nil)
		return
	}
	if retryable && !s.respHeaders {
		if s.rt == nil && !s.reqDataSent && s.attempts < s.srv.cfg.MaxAttempts {
			s.retry()
			return
		}
		// The endpoint did not process the request, but its body is gone
		// (or the caller of a round trip retries): REFUSED_STREAM lets the
		// client retry it (RFC 9113 section 8.7; gRPC clients retry it
		// transparently).
		s.upGone = true
		s.resetDownstream(http2.ErrCodeRefusedStream, msg)
		return
	}
	s.failToClient(502, msg)
}

// failToClient ends the client's stream for want of an endpoint: gRPC
// calls get UNAVAILABLE (in the trailers if the response header went out,
// else as a trailers-only response; with s.pushback, if set, as
// grpc-retry-pushback-ms), other requests httpStatus if no
// response header went out, else RST_STREAM INTERNAL_ERROR. Called with
// s.mu held, with no upstream stream bound.
func (s *stream) failToClient(httpStatus int, msg string) {
	s.failToClientCode(httpStatus, 14, msg)
}

// failToClientCode is failToClient with gRPC status grpcCode instead of
// UNAVAILABLE (the pushback goes with UNAVAILABLE only).
func (s *stream) failToClientCode(httpStatus, grpcCode int, msg string) {
	defer s.reaccount()
	if s.finished {
		return
	}
	s.upGone = true
	if s.rt != nil {
		s.failRoundTrip(&UpstreamError{Addr: s.addr, Reason: msg})
		return
	}
	s.relayAnswered = true
	if s.routeDone != nil {
		s.releaseRoute()
	}
	if s.req.buf != nil {
		s.cc.credit(len(s.req.buf))
		s.req.buf = nil
	}
	if s.resp.endSent {
		s.ended(&s.resp)
		return
	}
	switch {
	case s.head.GRPC && s.respHeaders:
		s.resp.buf = nil
		s.resp.trailers = append([]hpack.HeaderField{
			{Name: "grpc-status", Value: strconv.Itoa(grpcCode)},
			{Name: "grpc-message", Value: msg},
		}, s.pushbackFor(grpcCode)...)
		s.resp.end = true
		s.grpcStatus = grpcCode
		s.pump(&s.resp, nil)
	case s.respHeaders:
		s.resetClient(http2.ErrCodeInternal)
	default:
		s.cc.mu.Lock()
		if !s.cc.closed {
			s.cc.hbuf.Reset()
			writeLocalResponse(s.cc.enc, s.head.GRPC, httpStatus, grpcCode, msg, s.pushbackFor(grpcCode)...)
			s.cc.out = appendHeaderBlock(s.cc.out, s.id, s.cc.hbuf.Bytes(), true, s.cc.peerMaxFrame)
			s.cc.kickB(s.b)
		}
		s.cc.mu.Unlock()
		if s.head.GRPC {
			s.status, s.grpcStatus = 200, grpcCode
		} else {
			s.status = httpStatus
		}
		s.resp.end, s.resp.endSent = true, true
		s.ended(&s.resp)
	}
}

// pushbackFor returns pushbackField for UNAVAILABLE, nothing for other
// codes. Called with s.mu held.
func (s *stream) pushbackFor(grpcCode int) []hpack.HeaderField {
	if grpcCode != 14 {
		return nil
	}
	return s.pushbackField()
}

// pushbackField returns the grpc-retry-pushback-ms field (gRPC proposal A6)
// of s.pushback, or nothing when it is not set. Called with s.mu held.
func (s *stream) pushbackField() []hpack.HeaderField {
	if s.pushback == "" {
		return nil
	}
	return []hpack.HeaderField{{Name: "grpc-retry-pushback-ms", Value: s.pushback}}
}
