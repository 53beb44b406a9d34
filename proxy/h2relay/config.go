package h2relay

import (
	"context"
	"net"
	"time"

	"github.com/longhaul-proxy/longhaul/internal/membudget"
)

// Router picks endpoints for request streams. It is called on the client
// connection's reader goroutine and must not block.
type Router interface {
	// Route picks an endpoint for a request stream; tried are the endpoints
	// already attempted for it. ok=false: none available. done must be
	// called once when the stream ends (or the attempt is abandoned).
	Route(h *RequestHead, tried []string) (addr string, done func(), ok bool)
}

// RouteMisser is optionally implemented by a Router that routes by a
// table: Missed reports whether no route serves h (rather than no endpoint
// being available), asked when Route found nothing on a stream's first
// attempt; the relay then answers 404, or gRPC UNIMPLEMENTED, instead of
// 503 or UNAVAILABLE.
type RouteMisser interface {
	Missed(h *RequestHead) bool
}

// Outcome describes a finished request stream, for metrics.
type Outcome struct {
	GRPC bool
	// Status is the response's HTTP status, 0 when none was relayed.
	Status int
	// GRPCStatus is the grpc-status the client saw, -1 when none.
	GRPCStatus int
	Duration   time.Duration
	// Start is when the request's header came; Endpoint the address of
	// the endpoint it last went to ("" if none). Head is the request's,
	// valid only during RequestDone.
	Start    time.Time
	Endpoint string
	Head     *RequestHead
}

// Observer receives events for metrics. Its methods are called on the
// relay's goroutines, with no lock held, and must not block.
type Observer interface {
	RequestDone(o Outcome)
	DialFailed(addr string, err error)
	// Calmed: a client connection went over one of its budgets (reason
	// says which) and is being closed with GOAWAY ENHANCE_YOUR_CALM.
	Calmed(reason string)
}

// Config configures a Server. Zero values take the defaults given.
type Config struct {
	// Router routes every stream, except those of connections that OnConn
	// gave a Router of their own.
	Router Router
	// OnConn, if set, is called once per client connection, on ServeConn's
	// goroutine before the connection's first frame is read, with the
	// connection's handle. A non-nil Router it returns routes that
	// connection's streams instead of Router (so that they can be pinned
	// to one endpoint); it is called as Router is, and must not block.
	OnConn func(c *Conn) Router
	// OnConnEnd, if set with OnConn, is called once for each connection
	// OnConn was given, on ServeConn's goroutine once the connection is
	// over (Done is closed).
	OnConnEnd func(c *Conn)
	Observer  Observer // may be nil
	// Dial connects to an endpoint; nil uses a net.Dialer.
	Dial           func(ctx context.Context, network, addr string) (net.Conn, error)
	ConnectTimeout time.Duration // dial and first SETTINGS; 2s
	// MaxAttempts bounds the endpoints tried for one stream when it is safe
	// to retry (the endpoint never saw the request); 3.
	MaxAttempts          int
	MaxConcurrentStreams uint32        // per client connection; 1000
	MaxHeaderListSize    uint32        // SETTINGS_MAX_HEADER_LIST_SIZE; 64 KiB
	StreamWindow         int32         // per-stream receive window, both sides (and the most a stream buffers each way); 256 KiB
	ConnWindow           int32         // per-connection receive window, both sides; 4 MiB
	PrefaceTimeout       time.Duration // client preface and first SETTINGS; 10s
	IdleTimeout          time.Duration // client connection with no stream; 5m
	UpstreamIdleTimeout  time.Duration // endpoint connection with no stream; 90s
	// WriteTimeout bounds one write of the queued output (a few hundred
	// KiB at most): a client or an endpoint that stops reading its socket
	// while flow control still lets the relay send loses its connection
	// after it; 60s.
	WriteTimeout time.Duration
	// StreamStallTimeout ends a stream (RST_STREAM CANCEL both ways) that
	// holds buffered data and forwarded none for this long: its reader
	// stopped reading or granting window; 60s. StreamIdleTimeout ends a
	// stream with no frame either way for this long (gRPC UNAVAILABLE);
	// 1h. See sweep.go.
	StreamStallTimeout time.Duration
	StreamIdleTimeout  time.Duration
	// An endpoint connection with streams and nothing read for
	// UpstreamPingInterval gets a PING; if still nothing is read within
	// UpstreamPingTimeout, it is closed (its streams fail as on a lost
	// connection). 30s and 15s.
	UpstreamPingInterval time.Duration
	UpstreamPingTimeout  time.Duration
	// Budget, if set, is the process's memory budget: each client
	// connection accounts what it holds (output and stream buffers) and
	// the greediest are shed (GOAWAY ENHANCE_YOUR_CALM) when the total
	// goes over it. Nil: no process-wide cap (each connection's own bounds
	// still hold).
	Budget *membudget.Budget

	// now is the clock of the per-connection budgets; time.Now unless a
	// test sets it.
	now func() time.Time
	// lingerGrace is how long a client gets to end a request whose
	// response is complete (and whose endpoint stopped reading it) before
	// the sweep resets it: 10s, long enough that a client sending many
	// streams at once sees them counted, unless a test sets it.
	lingerGrace time.Duration
}

func (c *Config) setDefaults() {
	if c.now == nil {
		c.now = time.Now
	}
	if c.lingerGrace <= 0 {
		c.lingerGrace = 10 * time.Second
	}
	if c.Dial == nil {
		d := &net.Dialer{KeepAlive: -1}
		c.Dial = d.DialContext
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 2 * time.Second
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 3
	}
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = 1000
	}
	if c.MaxHeaderListSize == 0 {
		c.MaxHeaderListSize = 64 << 10
	}
	if c.StreamWindow <= 0 {
		c.StreamWindow = 256 << 10
	}
	if c.ConnWindow <= 0 {
		c.ConnWindow = 4 << 20
	}
	if c.ConnWindow < initialWindow {
		c.ConnWindow = initialWindow
	}
	if c.PrefaceTimeout <= 0 {
		c.PrefaceTimeout = 10 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 5 * time.Minute
	}
	if c.UpstreamIdleTimeout <= 0 {
		c.UpstreamIdleTimeout = 90 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 60 * time.Second
	}
	if c.StreamStallTimeout <= 0 {
		c.StreamStallTimeout = 60 * time.Second
	}
	if c.StreamIdleTimeout <= 0 {
		c.StreamIdleTimeout = time.Hour
	}
	if c.UpstreamPingInterval <= 0 {
		c.UpstreamPingInterval = 30 * time.Second
	}
	if c.UpstreamPingTimeout <= 0 {
		c.UpstreamPingTimeout = 15 * time.Second
	}
}

// initialWindow is the protocol's initial flow-control window (RFC 9113
// section 6.9.2), before any SETTINGS or WINDOW_UPDATE.
const initialWindow = 65535

// maxWindow is the largest legal flow-control window.
const maxWindow = 1<<31 - 1
