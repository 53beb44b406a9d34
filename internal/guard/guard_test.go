package guard

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRecoverContainsLogsAndCounts: a panic on one goroutine is recovered
// there, logged once with its stack, counted under its where, and onPanic
// runs; the goroutine next to it is untouched.
func TestRecoverContainsLogsAndCounts(t *testing.T) {
	core, logs := observer.New(zap.ErrorLevel)
	SetLogger(zap.New(core))
	defer SetLogger(nil)
	before := Count("test_conn")
	var wg sync.WaitGroup
	closed := make(chan bool, 1)
	calm := make(chan int, 1)
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer Recover("test_conn", func() { closed <- true })
		var m map[string]int
		m["boom"]++ // a nil map write: a runtime panic
	}()
	go func() {
		defer wg.Done()
		defer Recover("test_conn", func() { t.Error("onPanic ran without a panic") })
		calm <- 42
	}()
	wg.Wait()
	if !<-closed || <-calm != 42 {
		t.Fatal("onPanic did not run, or the calm goroutine did not finish")
	}
	if got := Count("test_conn") - before; got != 1 {
		t.Errorf("longhaul_panics_total{where=test_conn} rose by %v, want 1", got)
	}
	entries := logs.All()
	if len(entries) != 1 {
		t.Fatalf("%d log entries, want 1", len(entries))
	}
	f := entries[0].ContextMap()
	if f["where"] != "test_conn" || !strings.Contains(f["stack"].(string), "guard_test.go") ||
		!strings.Contains(f["panic"].(string), "nil map") {
		t.Errorf("log fields %v: want where, the panic and a stack through the panicking line", f)
	}
}

func TestDo(t *testing.T) {
	SetLogger(zap.NewNop())
	defer SetLogger(nil)
	before := Count("test_round")
	if Do("test_round", func() {}) {
		t.Error("a calm round reported a panic")
	}
	if !Do("test_round", func() { panic("round") }) {
		t.Error("a panicking round not reported")
	}
	if got := Count("test_round") - before; got != 1 {
		t.Errorf("counter rose by %v, want 1", got)
	}
}

// TestAbortHandlerIsNotAFault: http.ErrAbortHandler is an abort on purpose:
// onPanic runs, nothing is counted.
func TestAbortHandlerIsNotAFault(t *testing.T) {
	before := Count("test_abort")
	if !Do("test_abort", func() { panic(http.ErrAbortHandler) }) {
		t.Error("an abort did not run onPanic")
	}
	if got := Count("test_abort") - before; got != 0 {
		t.Errorf("an abort counted %v panics", got)
	}
}

func TestCollectorRegistersOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(Collector())
	before := Count("test_scrape")
	Do("test_scrape", func() { panic("x") })
	n, err := testutil.GatherAndCount(reg, "longhaul_panics_total")
	if err != nil || n < 1 {
		t.Fatalf("scraped %d longhaul_panics_total series (%v), want ours among them", n, err)
	}
	if got := Count("test_scrape") - before; got != 1 {
		t.Errorf("test_scrape rose by %v, want 1", got)
	}
	if err := reg.Register(Collector()); err == nil {
		t.Error("registered twice in one registry without an error")
	}
}
