package h2relay

import (
	"time"

	"golang.org/x/net/http2"
)

// A client connection's sweep: while the connection has streams, a timer
// (sweepTimer, owned by the connection, stopped by cleanup) looks at each
// stream every sweepInterval and ends those a peer left in a state that
// would otherwise last forever:
//
//   - stalled: data buffered in the relay and none forwarded for
//     StreamStallTimeout (the destination does not read, or grants no
//     window): RST_STREAM CANCEL to both sides, and the buffer is freed;
//   - idle: nothing at all on the stream for StreamIdleTimeout: gRPC
//     UNAVAILABLE (504 for other requests before their response, else
//     RST_STREAM CANCEL), and the endpoint's stream is cancelled;
//   - lingering: the endpoint is done (complete response, and it stopped
//     the request) but the client has not ended its request: RST_STREAM
//     NO_ERROR once quiet for Config.lingerGrace (at least one sweep). Until then the stream still counts toward
//     SETTINGS_MAX_CONCURRENT_STREAMS, as a stream open on one side does.
//
// Progress is counted on the hot path with two increments under the
// stream's lock (no clock read); the sweep compares counts.

// sweepInterval is how often the sweep runs: a quarter of the shorter
// stream timeout, within [50ms, lingerGrace].
func (c *Config) sweepInterval() time.Duration {
	d := min(c.StreamStallTimeout, c.StreamIdleTimeout) / 4
	return min(max(d, 50*time.Millisecond), c.lingerGrace)
}

// armSweep starts the sweep if it is not running. Called with cc.mu held.
func (cc *clientConn) armSweep() {
	if !cc.sweeping && cc.sweepTimer != nil && !cc.closed {
		cc.sweeping = true
		cc.sweepTimer.Reset(cc.srv.cfg.sweepInterval())
	}
}

// sweep is the sweep timer's function.
func (cc *clientConn) sweep() {
	cfg := &cc.srv.cfg
	every := cfg.sweepInterval()
	for _, s := range cc.snapshot() {
		s.mu.Lock()
		s.sweepOne(every)
		s.mu.Unlock()
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.sweeping = false
	if cc.active > 0 {
		cc.armSweep()
	}
}

// sweepOne applies the stream timeouts to s. Called with s.mu held.
func (s *stream) sweepOne(every time.Duration) {
	if s.finished {
		return
	}
	cfg := &s.srv.cfg
	if s.events != s.sweptEvents {
		s.sweptEvents, s.quietSweeps = s.events, 0
	} else {
		s.quietSweeps++
	}
	if s.moved != s.sweptMoved {
		s.sweptMoved, s.stuckSweeps = s.moved, 0
	} else {
		s.stuckSweeps++
	}
	buffered := len(s.req.buf)+len(s.resp.buf) > 0
	switch {
	case s.resp.endSent && s.upGone && !s.req.end && time.Duration(s.quietSweeps)*every >= cfg.lingerGrace:
		s.cc.queueRST(nil, s.id, http2.ErrCodeNo)
		s.finish()
	case buffered && time.Duration(s.stuckSweeps)*every >= cfg.StreamStallTimeout:
		s.resetClient(http2.ErrCodeCancel)
	case time.Duration(s.quietSweeps)*every >= cfg.StreamIdleTimeout:
		s.resetUpstream(http2.ErrCodeCancel)
		s.failToClient(504, "stream idle timeout")
	}
}
