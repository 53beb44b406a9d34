package h2relay

import (
	"context"
	"math/rand/v2"
	"strconv"
	"time"

	"golang.org/x/net/http2"
)

// Paced ends of the streams of a drained endpoint (see Server.DrainEndpoint).

// drainedMsg is the grpc-message of a stream ended by a drain.
const drainedMsg = "endpoint drained"

// pacedEnd is one stream a drain ends when its turn comes, with the
// connection it was on.
type pacedEnd struct {
	s  *stream
	up *upConn
}

// endPaced waits for plan.Start(), then ends the streams still open on
// conns one per turn of plan.Ends, each at its time, in random order. A
// stream that ended, or moved, before its turn is left alone. It returns
// when every turn passed, every connection closed or ctx ended. It owns one
// timer, stopped before it returns, and holds no lock while it waits.
func endPaced(ctx context.Context, conns []*upConn, plan StreamPlan) {
	t := time.NewTimer(time.Until(plan.Start()))
	defer t.Stop()
	if !waitTurn(ctx, t, conns) {
		return
	}
	var open []pacedEnd
	for _, up := range conns {
		for _, s := range up.snapshot() {
			open = append(open, pacedEnd{s, up})
		}
	}
	if len(open) == 0 {
		return
	}
	rand.Shuffle(len(open), func(i, j int) { open[i], open[j] = open[j], open[i] })
	at, pushback := plan.Ends(len(open))
	for i, e := range open {
		if i >= len(at) {
			return // the plan gave fewer turns: the rest wait for ctx's end
		}
		t.Reset(time.Until(at[i]))
		if !waitTurn(ctx, t, conns) {
			return
		}
		pb := time.Duration(0)
		if i < len(pushback) {
			pb = pushback[i]
		}
		e.s.mu.Lock()
		if e.s.up == e.up {
			e.s.endDrained(pb)
		}
		e.s.mu.Unlock()
	}
}

// waitTurn waits for t to fire and reports whether it did before ctx ended
// and while a connection of conns is still open.
func waitTurn(ctx context.Context, t *time.Timer, conns []*upConn) bool {
	for {
		var open <-chan struct{}
	find:
		for _, up := range conns {
			select {
			case <-up.readerDone:
			default:
				open = up.readerDone
				break find
			}
		}
		if open == nil {
			return false
		}
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		case <-open:
		}
	}
}

// endDrained ends a stream of a drained endpoint whose turn came: the
// endpoint's stream is reset (CANCEL) and the client's ends. A complete
// response is still forwarded; a gRPC call gets UNAVAILABLE with a
// grpc-retry-pushback-ms of pushback (in whole milliseconds); another
// stream RST_STREAM REFUSED_STREAM if no response header went out, else
// what failToClient gives; a round trip fails with an UpstreamError with
// Drained (and, a gRPC call, Pushback) set.
// Called with s.mu held, s bound to the drained connection.
func (s *stream) endDrained(pushback time.Duration) {
	if s.finished {
		return
	}
	s.resetUpstream(http2.ErrCodeCancel)
	switch {
	case s.resp.end:
		s.upGone = true
		s.pump(&s.resp, nil)
	case s.rt != nil:
		e := &UpstreamError{Addr: s.addr, Drained: true, Reason: drainedMsg}
		if s.head.GRPC {
			e.Pushback = max(pushback, 0)
		}
		s.upGone = true
		s.failRoundTrip(e)
	case s.head.GRPC:
		s.pushback = strconv.FormatInt(max(pushback.Milliseconds(), 0), 10)
		s.failToClient(502, drainedMsg)
	case !s.respHeaders:
		s.upGone = true
		s.resetDownstream(http2.ErrCodeRefusedStream, drainedMsg)
	default:
		s.failToClient(502, drainedMsg)
	}
}
