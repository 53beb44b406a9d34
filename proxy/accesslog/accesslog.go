package accesslog

import (
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Config configures one listener's access log.
type Config struct {
	Enabled bool
	// Sample is the share of requests and sessions logged, in [0, 1];
	// values outside are clamped.
	Sample float64
	// MaxPerSecond caps the lines written per second, with a burst of as
	// many; 0 means no cap.
	MaxPerSecond int
	// Logger, if set, is the logger the access log is the child "access"
	// of, in place of the one New is given: one without a listener field,
	// which the access log adds itself.
	Logger *zap.Logger
}

// Reasons a line is dropped, the reason label of the dropped counter.
const (
	DropSampled = "sampled"
	DropRate    = "rate"
)

// Logger is one listener's access log; nil is disabled. It is safe for
// concurrent use.
type Logger struct {
	log *zap.Logger
	// all: every request is sampled in; else one is when a uniform draw
	// in [0, 1) is below sample.
	all    bool
	sample float64

	// The token bucket: tokens (at most burst) refill at rate per second.
	// rate 0: no cap.
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
	now    func() time.Time // time.Now; tests replace it

	sampledOut, rateOut prometheus.Counter
}

// New returns the access log of the listener named listener, writing to
// the child named "access" of cfg.Logger, or of log if that is nil, or nil
// when cfg is not Enabled. dropped is
// the counter vector of dropped lines by listener and reason (nil counts
// nothing).
func New(cfg Config, listener string, log *zap.Logger, dropped *prometheus.CounterVec) *Logger {
	if cfg.Logger != nil {
		log = cfg.Logger
	}
	if !cfg.Enabled || log == nil {
		return nil
	}
	l := &Logger{
		log:    log.Named("access").With(zap.String("listener", listener)),
		sample: min(max(cfg.Sample, 0), 1),
		now:    time.Now,
	}
	l.all = l.sample >= 1
	if cfg.MaxPerSecond > 0 {
		l.rate = float64(cfg.MaxPerSecond)
		l.burst, l.tokens = l.rate, l.rate
		l.last = l.now()
	}
	if dropped != nil {
		l.sampledOut = dropped.WithLabelValues(listener, DropSampled)
		l.rateOut = dropped.WithLabelValues(listener, DropRate)
	} else {
		l.sampledOut = prometheus.NewCounter(prometheus.CounterOpts{Name: "access_log_sampled_out"})
		l.rateOut = prometheus.NewCounter(prometheus.CounterOpts{Name: "access_log_rate_dropped"})
	}
	return l
}

// Sample reports whether the request or session starting now is to be
// logged; false on a nil Logger. A request sampled out is counted as
// dropped here, so the caller builds nothing for it.
func (l *Logger) Sample() bool {
	if l == nil {
		return false
	}
	if l.all || rand.Float64() < l.sample {
		return true
	}
	l.sampledOut.Inc()
	return false
}

// allow takes a token from the bucket, reporting false when none is left.
func (l *Logger) allow() bool {
	if l.rate == 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if d := now.Sub(l.last); d > 0 {
		l.tokens = min(l.burst, l.tokens+d.Seconds()*l.rate)
		l.last = now
	}
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}

// Log writes e's line if the rate cap lets it, counting it as dropped
// otherwise. Call it only for a request or session Sample let in; e is
// not kept.
func (l *Logger) Log(e *Entry) {
	if l == nil {
		return
	}
	if !l.allow() {
		l.rateOut.Inc()
		return
	}
	if ce := l.log.Check(zapcore.InfoLevel, "access"); ce != nil {
		ce.Write(zap.Inline(e))
	}
}

// Kinds of entry.
const (
	KindHTTP      = "http"
	KindGRPC      = "grpc"
	KindWebSocket = "websocket"
	KindTCP       = "tcp"
)

// Entry is one request's or session's line. Zero fields are left out of
// the line, but for the byte counts and Status (which a TCP line has
// not).
type Entry struct {
	Kind     string // KindHTTP, KindGRPC, KindWebSocket or KindTCP
	Start    time.Time
	Duration time.Duration
	Client   netip.AddrPort

	// Route is the matched route's "{namespace}/{name}" parts, and Rule
	// the index of its rule (with its name, if it has one), for a
	// listener with routes; RouteName empty otherwise.
	RouteNamespace, RouteName string
	Rule                      int
	RuleName                  string
	// Backend is the upstream the request went to ("listener" or
	// "listener/backend"), Endpoint the endpoint's address.
	Backend, Endpoint string

	// HTTP and gRPC: the request line, and the status (0: none was
	// sent). GRPCStatus is valid when Kind is KindGRPC (-1: none).
	Method, Host, Path, Proto string
	Status                    int
	GRPCStatus                int

	// WebSocket: the close code longhaul sent the client (a drain's 1012
	// or 1001, 1001 on idle, 1002 or 1009 on a violation), 0 for none.
	// End says how a session ended: "migrated" (asked to move; see
	// MigrationOutcome), "idle", "error"; for WebSocket "close" (the
	// close handshake or an EOF), for TCP "eof" (both sides ended),
	// "closed" (by longhaul: its shutdown) or "no_endpoint" (none could
	// be reached: the client was closed).
	CloseCode int
	End       string

	// BytesIn came from the client (request body, or frames and bytes
	// toward the endpoint), BytesOut went to it.
	BytesIn, BytesOut int64

	// MigrationReason (endpoint, rebalance, shutdown) and
	// MigrationOutcome (moved, forced, closed) are set when the session
	// was asked to move.
	MigrationReason, MigrationOutcome string
}

// MarshalLogObject writes e's fields (zapcore.ObjectMarshaler).
func (e *Entry) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("kind", e.Kind)
	enc.AddTime("start", e.Start)
	enc.AddDuration("duration", e.Duration)
	if e.Client.IsValid() {
		enc.AddString("client", e.Client.String())
	}
	if e.RouteName != "" {
		enc.AddString("route", e.RouteNamespace+"/"+e.RouteName)
		enc.AddInt("rule", e.Rule)
		if e.RuleName != "" {
			enc.AddString("rule_name", e.RuleName)
		}
	}
	addString(enc, "backend", e.Backend)
	addString(enc, "endpoint", e.Endpoint)
	addString(enc, "method", e.Method)
	addString(enc, "host", e.Host)
	addString(enc, "path", e.Path)
	addString(enc, "proto", e.Proto)
	switch e.Kind {
	case KindHTTP, KindGRPC, KindWebSocket:
		enc.AddInt("status", e.Status)
		if e.Kind == KindGRPC && e.GRPCStatus >= 0 {
			enc.AddInt("grpc_status", e.GRPCStatus)
		}
	}
	if e.CloseCode != 0 {
		enc.AddInt("close_code", e.CloseCode)
	}
	addString(enc, "end", e.End)
	enc.AddInt64("bytes_in", e.BytesIn)
	enc.AddInt64("bytes_out", e.BytesOut)
	addString(enc, "migration_reason", e.MigrationReason)
	addString(enc, "migration_outcome", e.MigrationOutcome)
	return nil
}

func addString(enc zapcore.ObjectEncoder, key, v string) {
	if v != "" {
		enc.AddString(key, v)
	}
}
