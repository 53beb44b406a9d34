package soak_test

import (
	"context"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/internal/app"
	"github.com/longhaul-proxy/longhaul/internal/soak"
	"github.com/longhaul-proxy/longhaul/internal/testnet"
)

// defaultSoak outlasts every timer a long-lived connection meets with the
// defaults: the HTTP/2 relay's 60s write timeout, its 90s upstream idle
// timeout (the http2-quiet lane's 100s gap), the HTTP/1.1 endpoint client's
// 90s idle timeout and the 75s client keep-alive idle timeout (the
// http1-quiet lane's 100s gap) and its 30s+15s upstream PING (the
// grpc-quiet lane's silent stream).
const defaultSoak = 3*time.Minute + 20*time.Second

// Bounds on the growth of the whole process (clients, backends and
// longhaul) from the warm-up to the end. Samples fall half a second off
// the clients' ticks, when no call is in flight.
const (
	goroutineBound = 5
	heapBound      = 4 << 20
)

// TestSoak starts longhaul the way users do (internal/app from a parsed
// configuration, every timer at its default) in front of real backends on
// loopback, one listener per soak lane, and holds one client of each kind
// for 3m20s: a grpc-go ClientConn with a unary call and a bidi stream
// message every second, a quiet bidi stream, an HTTP/2 connection with a
// GET every second, a quiet one, the same two over HTTP/1.1, a WebSocket
// and a TCP connection each
// echoing every second (see package soak). It asserts no failed call, no
// client connection replaced (each client dialled longhaul once), no
// endpoint connection replaced after the warm-up (the quiet HTTP lanes
// excepted, whose endpoint connections must close after each 100s gap),
// goroutines within 5 and the heap within 4 MiB of their warm-up values,
// and no warning or error logged by longhaul.
//
// LONGHAUL_SOAK sets the duration for local runs, e.g. LONGHAUL_SOAK=10s
// for a quick check (the quiet gaps shrink to a quarter of the run, below
// the timers). It is skipped with -short; CI runs it.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("a soak of 3m20s; run without -short")
	}
	d := defaultSoak
	if s := os.Getenv("LONGHAUL_SOAK"); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d < 4*time.Second {
			t.Fatalf("LONGHAUL_SOAK=%q: want a duration of at least 4s", s)
		}
	}
	plan := soak.DefaultPlan(d)

	be, err := soak.StartBackends()
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	admin, listen := testnet.FreeAddr(t), soak.Addrs{}
	for _, l := range soak.Lanes {
		listen[l] = testnet.FreeAddr(t)
	}
	cfg, err := config.Parse(soak.Config(admin, listen, be.Addrs))
	if err != nil {
		t.Fatalf("soak config: %v", err)
	}
	core, logs := observer.New(zap.WarnLevel)
	a, err := app.New(cfg, app.Options{Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	// Shut down before the backends close (deferred below, run first).
	defer func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("longhaul did not shut down")
		}
	}()
	for deadline := time.Now().Add(10 * time.Second); a.Ready().Check() != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("longhaul not ready: %v", a.Ready().Check())
		}
	}

	probes := []soak.Probe{
		{Name: "goroutines (test process)", Bound: goroutineBound, Read: func() (float64, error) {
			return float64(runtime.NumGoroutine()), nil
		}},
		{Name: "heap in use after GC (test process)", Unit: "MiB", Bound: heapBound, Read: func() (float64, error) {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			return float64(ms.HeapAlloc), nil
		}},
	}
	res, err := soak.Drive(context.Background(), listen, be, plan, probes)
	if err != nil {
		t.Fatal(err)
	}
	var md strings.Builder
	res.Markdown(&md)
	t.Logf("soak of %v through longhaul:\n%s", d, md.String())
	for _, p := range res.Problems() {
		t.Error(p)
	}
	for _, e := range logs.All() {
		t.Errorf("longhaul logged %s %q %v", e.Level, e.Message, e.ContextMap())
	}
}
