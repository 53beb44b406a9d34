package accesslog

import (
	"io"
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func newObserved(t testing.TB, cfg Config) (*Logger, *observer.ObservedLogs, *prometheus.CounterVec) {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dropped"}, []string{"listener", "reason"})
	return New(cfg, "web", zap.New(core), dropped), logs, dropped
}

func TestDisabled(t *testing.T) {
	l, logs, _ := newObserved(t, Config{Sample: 1})
	if l != nil {
		t.Fatal("New with Enabled false returned a Logger")
	}
	if l.Sample() {
		t.Error("a nil Logger sampled a request in")
	}
	l.Log(&Entry{Kind: KindHTTP})
	if logs.Len() != 0 {
		t.Errorf("a nil Logger wrote %d lines", logs.Len())
	}
}

func TestEntryFields(t *testing.T) {
	l, logs, _ := newObserved(t, Config{Enabled: true, Sample: 1})
	start := time.Unix(1700000000, 0)
	if !l.Sample() {
		t.Fatal("sample 1 left a request out")
	}
	l.Log(&Entry{Kind: KindGRPC, Start: start, Duration: 1500 * time.Millisecond,
		Client:         netip.MustParseAddrPort("127.0.0.1:5000"),
		RouteNamespace: "shop", RouteName: "cart", Rule: 2, Backend: "web/cart", Endpoint: "10.0.0.1:80",
		Method: "POST", Host: "cart", Path: "/cart.Cart/Get", Proto: "HTTP/2.0",
		Status: 200, GRPCStatus: 5, BytesIn: 10, BytesOut: 20,
		MigrationReason: "endpoint", MigrationOutcome: "moved"})
	all := logs.All()
	if len(all) != 1 {
		t.Fatalf("%d lines, want 1", len(all))
	}
	if all[0].LoggerName != "access" || all[0].Message != "access" {
		t.Errorf("logger %q message %q, want access and access", all[0].LoggerName, all[0].Message)
	}
	got := all[0].ContextMap()
	want := map[string]any{
		"listener": "web", "kind": "grpc", "start": start, "duration": 1500 * time.Millisecond,
		"client": "127.0.0.1:5000", "route": "shop/cart", "rule": 2, "backend": "web/cart",
		"endpoint": "10.0.0.1:80", "method": "POST", "host": "cart", "path": "/cart.Cart/Get",
		"proto": "HTTP/2.0", "status": 200, "grpc_status": 5, "bytes_in": int64(10),
		"bytes_out": int64(20), "migration_reason": "endpoint", "migration_outcome": "moved",
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			if gt, ok := g.(time.Time); !ok || !gt.Equal(v.(time.Time)) {
				t.Errorf("%s = %v (%T), want %v (%T)", k, g, g, v, v)
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("fields %v, want %d of them", got, len(want))
	}
}

// TestSample: half of 4000 requests are sampled in, within 5 standard
// deviations (about 4.9%: sigma is sqrt(4000/4) = 31.6).
func TestSample(t *testing.T) {
	l, _, dropped := newObserved(t, Config{Enabled: true, Sample: 0.5})
	const n = 4000
	in := 0
	for range n {
		if l.Sample() {
			in++
		}
	}
	if tol := 5 * math.Sqrt(n*0.25); math.Abs(float64(in)-n/2) > tol {
		t.Errorf("%d of %d sampled in at 0.5, want %d ± %.0f", in, n, n/2, tol)
	}
	if got := testutil.ToFloat64(dropped.WithLabelValues("web", DropSampled)); int(got) != n-in {
		t.Errorf("dropped{sampled} = %v, want %d", got, n-in)
	}
	zero, _, _ := newObserved(t, Config{Enabled: true, Sample: 0})
	for range 100 {
		if zero.Sample() {
			t.Fatal("sample 0 let a request in")
		}
	}
}

// TestRateCap: with a clock that does not move, the burst (MaxPerSecond
// lines) is written and the rest dropped; a second later a second's worth
// comes back.
func TestRateCap(t *testing.T) {
	l, logs, dropped := newObserved(t, Config{Enabled: true, Sample: 1, MaxPerSecond: 100})
	now := time.Unix(1700000000, 0)
	l.now = func() time.Time { return now }
	l.last = now
	for range 250 {
		l.Log(&Entry{Kind: KindTCP})
	}
	if logs.Len() != 100 {
		t.Errorf("%d lines, want the burst of 100", logs.Len())
	}
	if got := testutil.ToFloat64(dropped.WithLabelValues("web", DropRate)); got != 150 {
		t.Errorf("dropped{rate} = %v, want 150", got)
	}
	now = now.Add(500 * time.Millisecond)
	for range 100 {
		l.Log(&Entry{Kind: KindTCP})
	}
	if logs.Len() != 150 {
		t.Errorf("after half a second, %d lines, want 150", logs.Len())
	}
}

// benchEntry is a request's entry as the HTTP proxy fills it.
func benchEntry() *Entry {
	return &Entry{Kind: KindHTTP, Start: time.Now(), Duration: time.Millisecond,
		Client: netip.MustParseAddrPort("127.0.0.1:5000"), RouteNamespace: "shop", RouteName: "cart",
		Backend: "web/cart", Endpoint: "10.0.0.1:80", Method: "GET", Host: "cart.example.com",
		Path: "/items/42", Proto: "HTTP/1.1", Status: 200, BytesOut: 512}
}

// jsonLogger is a production-like JSON logger writing to io.Discard.
func jsonLogger() *zap.Logger {
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(io.Discard), zapcore.InfoLevel))
}

// BenchmarkLog is the access log's cost per request, from the sampling
// decision to the line: enabled (JSON to io.Discard), disabled (a nil
// Logger) and sampled out.
func BenchmarkLog(b *testing.B) {
	e := benchEntry()
	for _, bc := range []struct {
		name string
		cfg  Config
	}{
		{"enabled", Config{Enabled: true, Sample: 1}},
		{"disabled", Config{}},
		{"sampled-out", Config{Enabled: true, Sample: 0}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			dropped := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dropped"}, []string{"listener", "reason"})
			l := New(bc.cfg, "web", jsonLogger(), dropped)
			b.ReportAllocs()
			for b.Loop() {
				if l.Sample() {
					l.Log(e)
				}
			}
		})
	}
}
