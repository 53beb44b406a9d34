// Package guard contains a panic to the goroutine it happens on, so that a
// bug met by one connection (or one worker round) ends that connection, not
// the process and every session it carries.
//
// Each per-connection goroutine and each long-lived worker goroutine defers
// Recover first thing:
//
//	go func() {
//		defer guard.Recover("tcp", func() { conn.Close() })
//		...
//	}()
//
// A recovered panic is logged with its stack and counted in
// longhaul_panics_total{where}; then onPanic runs, to close what the
// goroutine owned and to tell whoever waits for it.
package guard

import (
	"errors"
	"net/http"
	"runtime/debug"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
)

// panics counts recovered panics by where they happened. It is the one
// counter of the process: register it with Collector.
var panics = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "longhaul_panics_total",
	Help: "Panics recovered, by where (the goroutine kind); each closed one connection or ended one worker round.",
}, []string{"where"})

// Collector returns the panics counter, to register once per registry.
func Collector() prometheus.Collector { return panics }

// Count returns how many panics were recovered at where so far.
func Count(where string) float64 {
	var m dto.Metric
	_ = panics.WithLabelValues(where).Write(&m)
	return m.GetCounter().GetValue()
}

var logger atomic.Pointer[zap.Logger]

// SetLogger sets the logger that recovered panics are reported to (one for
// the process; nil restores the default, which writes to stderr).
func SetLogger(l *zap.Logger) { logger.Store(l) }

func log() *zap.Logger {
	if l := logger.Load(); l != nil {
		return l
	}
	return fallback
}

// fallback reports to stderr when no logger was set: a panic is never
// silent.
var fallback = func() *zap.Logger {
	l, err := zap.NewProduction()
	if err != nil {
		return zap.NewNop()
	}
	return l
}()

// ErrPanicked is the error of work (a relay direction, a copy) whose
// goroutine panicked, for whoever waits on its result.
var ErrPanicked = errors.New("a goroutine panicked")

// Recover, deferred, recovers a panic of the goroutine it is deferred on,
// logs it with the stack, counts it under where, and then calls onPanic
// (which may be nil) on the same goroutine. Without a panic it does nothing.
//
// It must be deferred directly (defer guard.Recover(...)), not called from
// another deferred function, or it recovers nothing. Locks the panicking
// code held through defers are released by the time onPanic runs; onPanic
// must not panic itself.
//
// A panic with http.ErrAbortHandler is an abort on purpose, as net/http
// treats it: onPanic runs but nothing is logged or counted.
func Recover(where string, onPanic func()) {
	v := recover()
	if v == nil {
		return
	}
	if err, ok := v.(error); !ok || !errors.Is(err, http.ErrAbortHandler) {
		panics.WithLabelValues(where).Inc()
		log().Error("panic recovered; closing what it was serving",
			zap.String("where", where), zap.Any("panic", v), zap.ByteString("stack", debug.Stack()))
	}
	if onPanic != nil {
		onPanic()
	}
}

// Do runs fn and reports whether it panicked; a panic is recovered as
// Recover does. For one round of a worker loop that must go on after it.
func Do(where string, fn func()) (panicked bool) {
	defer Recover(where, func() { panicked = true })
	fn()
	return false
}
