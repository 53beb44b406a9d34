package h2relay

import "golang.org/x/net/http2"

// Events of a stream's upstream side, from the upstream connection's reader
// goroutine. Each takes s.mu and ignores a stream no longer bound to up.

func (s *stream) onUpstreamHeaders(up *upConn, f *http2.MetaHeadersFrame) {
	s.lockB(&up.batch)
	defer s.unlockB()
	if s.finished || s.up != up {
		return
	}
	if s.resp.end {
		s.upstreamProtocolError("HEADERS after the end of the response")
		return
	}
	if f.Truncated {
		s.upstreamProtocolError("response header list too large")
		return
	}
	end := f.StreamEnded()
	if s.respHeaders {
		// Trailers.
		if !end || checkTrailers(f.Fields) != nil {
			s.upstreamProtocolError("malformed trailers from the endpoint")
			return
		}
		if _, gs := statusOf(f.Fields); gs >= 0 {
			s.grpcStatus = gs
		}
		s.resp.trailers = f.Fields
		s.resp.end = true
		if s.req.endSent {
			s.upClosed = true
		}
		s.pump(&s.resp, nil)
		return
	}
	status, gs := statusOf(f.Fields)
	if status < 100 || status == 101 || status < 200 && end {
		s.upstreamProtocolError("malformed response header from the endpoint")
		return
	}
	if status >= 200 {
		s.respHeaders = true
		s.status = status
		if gs >= 0 {
			s.grpcStatus = gs
		}
	}
	if s.rt != nil {
		if status >= 200 {
			s.rt.respond(s, f.Fields, end)
		}
		if end {
			s.resp.end = true
			s.pump(&s.resp, nil)
		}
		return
	}
	cc := s.cc
	cc.mu.Lock()
	if !cc.closed {
		cc.encodeFields(s.b, s.id, end, f.Fields)
	}
	cc.mu.Unlock()
	if end {
		s.resp.end, s.resp.endSent = true, true
		s.ended(&s.resp)
	}
}

func (s *stream) onUpstreamData(up *upConn, f *http2.DataFrame) {
	n := int(f.Length)
	s.lockB(&up.batch)
	defer s.unlockB()
	if s.finished || s.up != up {
		up.credit(n)
		return
	}
	s.resp.recvWindow -= int64(n)
	if s.resp.recvWindow < 0 {
		up.credit(n)
		s.resetUpstream(http2.ErrCodeFlowControl)
		s.failToClient(502, "endpoint overran its flow-control window")
		return
	}
	if !s.respHeaders || s.resp.end {
		up.credit(n)
		s.upstreamProtocolError("DATA outside a response body")
		return
	}
	// The connection window is credited now, not when the data reaches the
	// client: one client stream that does not read holds back at most its
	// own stream window, never the other streams sharing this endpoint
	// connection (the stream window, credited as data leaves, bounds what
	// the stream buffers).
	up.mu.Lock()
	up.creditLocked(n, s.b)
	up.mu.Unlock()
	data := f.Data()
	if pad := n - len(data); pad > 0 {
		s.credit(&s.resp, &up.frameConn, s.upID, pad)
	}
	if f.StreamEnded() {
		s.resp.end = true
		if s.req.endSent {
			s.upClosed = true
		}
	}
	s.pump(&s.resp, data)
}

func (s *stream) onUpstreamReset(up *upConn, code http2.ErrCode) {
	s.lockB(&up.batch)
	defer s.unlockB()
	if s.finished || s.up != up {
		return
	}
	s.upClosed = true
	s.detach()
	if s.rt == nil && code == http2.ErrCodeRefusedStream && !s.reqDataSent && !s.respHeaders && s.attempts < s.srv.cfg.MaxAttempts {
		s.retry()
		return
	}
	if s.resp.end && code == http2.ErrCodeNo {
		// A complete response, and the endpoint wants no more of the
		// request: forward what is left, then stop the client's body.
		s.upGone = true
		s.pump(&s.resp, nil)
		return
	}
	s.resetDownstream(code, "stream reset by the endpoint")
}

func (s *stream) onUpstreamWindow(up *upConn, inc uint32) {
	s.lockB(&up.batch)
	defer s.unlockB()
	if s.finished || s.up != up {
		return
	}
	s.req.sendWindow += int64(inc)
	if s.req.sendWindow > maxWindow {
		s.resetUpstream(http2.ErrCodeFlowControl)
		s.failToClient(502, "endpoint overflowed its flow-control window")
		return
	}
	s.pump(&s.req, nil)
}

// upstreamProtocolError resets the upstream stream of a malformed response
// and fails the client's. Called with s.mu held.
func (s *stream) upstreamProtocolError(msg string) {
	s.resetUpstream(http2.ErrCodeProtocol)
	s.failToClient(502, msg)
}
