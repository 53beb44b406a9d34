// Package soak holds long-lived connections of every protocol longhaul
// relays open through it at a steady pace, for minutes or hours, and
// reports what failed, whether any connection was replaced, and how the
// process's figures (goroutines, memory) moved meanwhile.
//
// It runs in two places: the soak test tier (this package's test, with
// longhaul in-process through internal/app) and benchmarks/cmd/soak (the
// built binary, for half an hour). Both use the same backends (Backends),
// configuration (Config), clients (Drive) and checks (Result.Problems).
//
// Traffic is split into lanes, one longhaul listener and one backend each:
//
//   - grpc: ClientConns each making a unary health check every Interval and
//     holding bidi echo streams that send a message every Interval;
//   - grpc-quiet: one bidi stream that sends a message every QuietGap, so
//     that its endpoint connection has a stream open and nothing to read
//     for longer than the relay's upstream PING interval and timeout;
//   - http2: HTTP/2 (h2c) connections, a GET every Interval, toward an h2c
//     backend through the frame relay;
//   - http2-quiet: one HTTP/2 connection with a GET every QuietGap, so that
//     its endpoint connection idles past the relay's UpstreamIdle and is
//     replaced, and the client's idles past KeepAliveIdle and is closed
//     with GOAWAY (the next GET dials again, and does not fail);
//   - http1: HTTP/1.1 keep-alive connections, a GET every Interval, toward
//     an HTTP/1.1 backend (longhaul's own endpoint client, h1Client);
//   - http1-quiet: one HTTP/1.1 connection with a GET every QuietGap, so
//     that its endpoint connection idles past the endpoint client's idle
//     timeout (H1UpstreamIdle) and is replaced, and the client's idles past
//     KeepAliveIdle and is closed (the next GET dials again, and does not
//     fail);
//   - websocket: WebSocket connections, a message echoed every Interval;
//   - tcp: raw TCP connections, a line echoed every Interval.
//
// Invariants the checks hold a run to: no call fails; every client stays on
// the connection it opened first (but the quiet HTTP ones, past
// KeepAliveIdle); no endpoint connection opens after the warm-up, except
// one per quiet gap longer than UpstreamIdle (H1UpstreamIdle) on the
// http2-quiet (http1-quiet) lane; each bounded figure ends within its
// bound of its value after the warm-up.
package soak

import (
	"errors"
	"fmt"
	"time"
)

// Lane is one kind of traffic: a longhaul listener (named after the lane)
// and the backend behind it.
type Lane string

// The lanes, in report order.
const (
	GRPC       Lane = "grpc"
	GRPCQuiet  Lane = "grpc-quiet"
	HTTP2      Lane = "http2"
	HTTP2Quiet Lane = "http2-quiet"
	HTTP1      Lane = "http1"
	HTTP1Quiet Lane = "http1-quiet"
	WebSocket  Lane = "websocket"
	TCP        Lane = "tcp"
)

// Lanes lists every lane in report order.
var Lanes = []Lane{GRPC, GRPCQuiet, HTTP2, HTTP2Quiet, HTTP1, HTTP1Quiet, WebSocket, TCP}

// Addrs is one loopback host:port per lane.
type Addrs map[Lane]string

// UpstreamIdle is the HTTP/2 relay's default UpstreamIdleTimeout: an
// endpoint connection without a stream for this long is closed, and the
// next request dials a new one.
const UpstreamIdle = 90 * time.Second

// H1UpstreamIdle is the idle timeout of longhaul's HTTP/1.1 endpoint
// client: an endpoint connection unused for this long is closed, and the
// next request dials a new one.
const H1UpstreamIdle = 90 * time.Second

// KeepAliveIdle is the default timeouts.keepAliveIdle: an HTTP/2 client
// connection with no stream for this long is closed (GOAWAY), and so is an
// HTTP/1.1 one waiting this long for its next request; the client's next
// request dials a new one.
const KeepAliveIdle = 75 * time.Second

// quietMargin keeps QuietGap clearly on one side of every idle timer a
// quiet connection meets (UpstreamIdle, H1UpstreamIdle, KeepAliveIdle), so
// that whether it closes is never a race.
const quietMargin = 5 * time.Second

// Plan is what Drive runs.
type Plan struct {
	// Duration is how long the clients run, warm-up included.
	Duration time.Duration
	// WarmUp is when the first sample is taken (connections open, first
	// calls done); the bounds and the "no new connection" rule are
	// measured from there.
	WarmUp time.Duration
	// SampleEvery is the period of the samples after the warm-up.
	SampleEvery time.Duration
	// Interval is the time between two calls (or messages) of one busy
	// client: a unary caller, a stream, an HTTP/2 connection, a WebSocket
	// or a TCP connection.
	Interval time.Duration
	// QuietGap is the time between two messages of the quiet lanes.
	QuietGap time.Duration
	// CallTimeout bounds one call or one echo.
	CallTimeout time.Duration
	// GRPCConns is the number of gRPC ClientConns of the grpc lane, each
	// with one unary caller and StreamsPerConn bidi streams.
	GRPCConns, StreamsPerConn int
	// HTTP2Conns, HTTP1Conns, WSConns and TCPConns are the connections of
	// those lanes.
	HTTP2Conns, HTTP1Conns, WSConns, TCPConns int
}

// DefaultPlan is the plan of the soak test for a run of d: one client of
// each kind, a call a second, samples every 10s after a warm-up of 15.5s
// (less for short runs; samples fall half a second off the clients' ticks,
// when no call is in flight), and a quiet gap past UpstreamIdle when the
// run has room for one, else a quarter of the run.
func DefaultPlan(d time.Duration) Plan {
	p := Plan{
		Duration: d, WarmUp: min(15*time.Second, (d/4).Truncate(time.Second)) + time.Second/2,
		SampleEvery: min(10*time.Second, max((d/8).Truncate(time.Second), time.Second)),
		Interval:    time.Second, CallTimeout: 10 * time.Second,
		GRPCConns: 1, StreamsPerConn: 1, HTTP2Conns: 1, HTTP1Conns: 1, WSConns: 1, TCPConns: 1,
	}
	p.QuietGap = QuietGapFor(d)
	return p
}

// QuietGapFor is the default quiet gap for a run of d: UpstreamIdle plus
// 10s when two quiet messages fit around a gap that long (past every idle
// timer), else d/4, at most KeepAliveIdle less 10s (below every idle timer).
func QuietGapFor(d time.Duration) time.Duration {
	g := UpstreamIdle + 2*quietMargin
	if d >= 2*g {
		return g
	}
	return min(d/4, KeepAliveIdle-2*quietMargin)
}

// Validate reports a plan that cannot run or whose checks would be a race.
func (p Plan) Validate() error {
	var errs []error
	for name, d := range map[string]time.Duration{"duration": p.Duration, "warm-up": p.WarmUp,
		"sample period": p.SampleEvery, "interval": p.Interval, "quiet gap": p.QuietGap, "call timeout": p.CallTimeout} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %v", name, d))
		}
	}
	if p.WarmUp >= p.Duration {
		errs = append(errs, fmt.Errorf("warm-up %v must end before the run's %v", p.WarmUp, p.Duration))
	}
	for _, t := range []struct {
		what string
		d    time.Duration
	}{{"the HTTP/2 relay's upstream idle timeout", UpstreamIdle}, {"the HTTP/1.1 endpoint client's idle timeout", H1UpstreamIdle},
		{"the client keep-alive idle timeout", KeepAliveIdle}} {
		if d := p.QuietGap - t.d; d > -quietMargin && d < quietMargin {
			errs = append(errs, fmt.Errorf("quiet gap %v is within %v of %s %v: whether a quiet connection closes would be a race",
				p.QuietGap, quietMargin, t.what, t.d))
		}
	}
	for name, n := range map[string]int{"gRPC connections": p.GRPCConns, "streams per gRPC connection": p.StreamsPerConn,
		"HTTP/2 connections": p.HTTP2Conns, "HTTP/1.1 connections": p.HTTP1Conns, "WebSocket connections": p.WSConns, "TCP connections": p.TCPConns} {
		if n <= 0 || n > 1000 {
			errs = append(errs, fmt.Errorf("%s must be from 1 to 1000, got %d", name, n))
		}
	}
	return errors.Join(errs...)
}

// Clients is the number of client connections a lane opens: the number it
// must still have, and no more, at the end.
func (p Plan) Clients(l Lane) int {
	switch l {
	case GRPC:
		return p.GRPCConns
	case HTTP2:
		return p.HTTP2Conns
	case HTTP1:
		return p.HTTP1Conns
	case WebSocket:
		return p.WSConns
	case TCP:
		return p.TCPConns
	default: // the quiet lanes
		return 1
	}
}

// maxCalls caps the calls of one client paced every gap over the run.
func (p Plan) maxCalls(gap time.Duration) int64 { return int64(p.Duration/gap) + 2 }
