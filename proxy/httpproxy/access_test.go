package httpproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/proxy/accesslog"
)

// accessLogged returns a Config whose access log (with ac) goes to the
// returned observer.
func accessLogged(cfg Config, ac accesslog.Config) (Config, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.InfoLevel)
	ac.Enabled = true
	cfg.Logger, cfg.AccessLog = zap.New(core), ac
	return cfg, logs
}

// accessLines returns the access log's lines as field maps.
func accessLines(logs *observer.ObservedLogs) []map[string]any {
	var out []map[string]any
	for _, e := range logs.FilterLoggerName("access").All() {
		out = append(out, e.ContextMap())
	}
	return out
}

// wantFields reports the fields of line that differ from want.
func wantFields(t *testing.T, what string, line map[string]any, want map[string]any) {
	t.Helper()
	for k, v := range want {
		if g := line[k]; fmt.Sprint(g) != fmt.Sprint(v) {
			t.Errorf("%s: %s = %v, want %v (line %v)", what, k, g, v, line)
		}
	}
}

func TestAccessLogHTTP1(t *testing.T) {
	backend := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "hello world")
	}))
	cfg, logs := accessLogged(Config{}, accesslog.Config{Sample: 1})
	p := startHTTPProxy(t, cfg, balancer.Policy{Kind: balancer.Maglev}, backend)
	for range 3 {
		resp, err := http.Post("http://"+p.addr+"/items?secret=1", "text/plain", strings.NewReader("abcde"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// A request no endpoint serves is logged too.
	proxytest404 := startHTTPProxy(t, func() Config { c := cfg; c.Name = "none"; return c }(), balancer.Policy{Kind: balancer.Maglev})
	resp, err := http.Get("http://" + proxytest404.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	lines := accessLines(logs)
	if len(lines) != 4 {
		t.Fatalf("%d access lines, want 4: %v", len(lines), lines)
	}
	for i, l := range lines[:3] {
		wantFields(t, fmt.Sprint("request ", i), l, map[string]any{
			"listener": "web", "kind": "http", "method": "POST", "path": "/items", "proto": "HTTP/1.1",
			"status": 201, "bytes_in": 5, "bytes_out": 11, "endpoint": backend, "backend": "web",
		})
		if d, ok := l["duration"].(time.Duration); !ok || d <= 0 {
			t.Errorf("request %d: duration %v", i, l["duration"])
		}
		if c, _ := l["client"].(string); !strings.HasPrefix(c, "127.0.0.1:") {
			t.Errorf("request %d: client %q", i, c)
		}
	}
	wantFields(t, "no endpoint", lines[3], map[string]any{"listener": "none", "status": 503, "endpoint": nil})
}

// TestAccessLogGRPCRelay: gRPC calls through the HTTP/2 relay
// (UpstreamH2) get a line each, with their grpc-status.
func TestAccessLogGRPCRelay(t *testing.T) {
	b := startGRPCBackend(t)
	cfg, logs := accessLogged(Config{UpstreamH2: true}, accesslog.Config{Sample: 1})
	p := startHTTPProxy(t, cfg, balancer.Policy{Kind: balancer.Maglev}, b.addr)
	c := grpcClient(t, p.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("got %v, want NotFound", err)
	}
	lines := waitLines(t, logs, 2)
	for i, st := range []int{0, 5} {
		wantFields(t, fmt.Sprint("call ", i), lines[i], map[string]any{
			"kind": "grpc", "method": "POST", "path": "/grpc.health.v1.Health/Check", "status": 200,
			"grpc_status": st, "endpoint": b.addr, "proto": "HTTP/2.0",
		})
	}
}

// TestAccessLogGRPCRouted: gRPC calls on the net/http path of a listener
// with routes name their route, rule and backend; HTTP requests theirs.
func TestAccessLogGRPCRouted(t *testing.T) {
	rpc, web := startEchoBackend(t), startH1Backend(t)
	cfg, logs := accessLogged(Config{}, accesslog.Config{Sample: 1})
	p := startMixedProxy(t, cfg, []string{web.addr()}, []string{rpc.addr})
	cc := dialGRPC(t, p.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := echoStream(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := echoRound(s, "hi"); err != nil {
		t.Fatal(err)
	}
	s.CloseSend()
	if err := s.RecvMsg(new(any)); !errors.Is(err, io.EOF) {
		t.Fatalf("end of stream: %v", err)
	}
	resp, err := http.Get("http://" + p.addr + "/page")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	lines := waitLines(t, logs, 2)
	wantFields(t, "call", lines[0], map[string]any{"kind": "grpc", "route": "gw/rpc", "rule": 0,
		"backend": "gw/rpc", "endpoint": rpc.addr, "grpc_status": 0, "status": 200})
	wantFields(t, "request", lines[1], map[string]any{"kind": "http", "route": "gw/site", "rule": 0,
		"backend": "gw/web", "endpoint": web.addr(), "status": 200, "path": "/page"})
}

// waitLines waits for n access lines: a relayed stream's line is written
// as the relay finishes it, which may be just after the client has its
// answer.
func waitLines(t *testing.T, logs *observer.ObservedLogs, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for logs.FilterLoggerName("access").Len() < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // no event to await: the line is the event
	}
	lines := accessLines(logs)
	if len(lines) != n {
		t.Fatalf("%d access lines, want %d: %v", len(lines), n, lines)
	}
	return lines
}

// TestAccessLogWebSocketDrained: a WebSocket's line comes when it ends,
// with its bytes, the close code sent and the drain's reason and outcome.
func TestAccessLogWebSocketDrained(t *testing.T) {
	backend := startWSEcho(t)
	cfg, logs := accessLogged(Config{}, accesslog.Config{Sample: 1})
	p := startHTTPProxy(t, cfg, balancer.Policy{Kind: balancer.Maglev}, backend)
	c, _, err := websocket.DefaultDialer.Dial("ws://"+p.addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := bytes.Repeat([]byte("x"), 1000)
	if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	if n := logs.FilterLoggerName("access").Len(); n != 0 {
		t.Fatalf("%d lines before the session ended, want none", n)
	}
	ss := p.reg.Endpoint(backend)
	if len(ss) != 1 {
		t.Fatalf("%d sessions, want 1", len(ss))
	}
	// As drain does: the reason first, then Migrate.
	ss[0].(interface{ SetMigrationReason(string) }).SetMigrationReason("endpoint")
	ss[0].Migrate(time.Now().Add(5 * time.Second))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseServiceRestart) {
		t.Fatalf("got %v, want close 1012", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.reg.Wait(ctx, nil); err != nil {
		t.Fatal(err)
	}
	lines := accessLines(logs)
	if len(lines) != 1 {
		t.Fatalf("%d access lines, want 1: %v", len(lines), lines)
	}
	l := lines[0]
	wantFields(t, "websocket", l, map[string]any{"kind": "websocket", "status": 101, "path": "/ws",
		"endpoint": backend, "end": "migrated", "close_code": 1012,
		"migration_reason": "endpoint", "migration_outcome": "moved"})
	// A masked frame of 1000 bytes has a header of 8; the echo's is 4.
	if in, out := l["bytes_in"].(int64), l["bytes_out"].(int64); in < 1008 || out < 1004 {
		t.Errorf("bytes in %d, out %d; want at least 1008 and 1004", in, out)
	}
}

// get sends n GET requests to addr from conc clients.
func get(t *testing.T, addr string, n, conc int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, conc)
	per := n / conc
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range per {
				resp, err := http.Get("http://" + addr + "/")
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func okBackend(t *testing.T) string {
	return startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
}

// TestAccessLogSampled: at sample 0.5, about half of 400 requests are
// logged (within 4 standard deviations, 10 each), the rest counted.
func TestAccessLogSampled(t *testing.T) {
	cfg, logs := accessLogged(Config{}, accesslog.Config{Sample: 0.5})
	p := startHTTPProxy(t, cfg, balancer.Policy{Kind: balancer.Maglev}, okBackend(t))
	const n = 400
	get(t, p.addr, n, 4)
	got := logs.FilterLoggerName("access").Len()
	if sd := math.Sqrt(n * 0.25); math.Abs(float64(got)-n/2) > 4*sd {
		t.Errorf("%d of %d requests logged at sample 0.5, want %d ± %.0f", got, n, n/2, 4*sd)
	}
	dropped := testutil.ToFloat64(p.up.Metrics().AccessLogDropped.WithLabelValues("web", accesslog.DropSampled))
	if int(dropped) != n-got {
		t.Errorf("dropped{sampled} = %v, want %d", dropped, n-got)
	}
}

// TestAccessLogRateCap: 2000 requests at a cap of 100 a second write the
// burst (100) and 100 a second after it, no more; the rest are counted.
func TestAccessLogRateCap(t *testing.T) {
	cfg, logs := accessLogged(Config{}, accesslog.Config{Sample: 1, MaxPerSecond: 100})
	p := startHTTPProxy(t, cfg, balancer.Policy{Kind: balancer.Maglev}, okBackend(t))
	const n = 2000
	start := time.Now()
	get(t, p.addr, n, 8)
	took := time.Since(start)
	got := logs.FilterLoggerName("access").Len()
	if max := 100 + int(math.Ceil(took.Seconds()*100)) + 1; got < 100 || got > max {
		t.Errorf("%d lines of %d requests in %v at 100/s, want 100 to %d", got, n, took, max)
	}
	dropped := testutil.ToFloat64(p.up.Metrics().AccessLogDropped.WithLabelValues("web", accesslog.DropRate))
	if int(dropped) != n-got {
		t.Errorf("dropped{rate} = %v, want %d", dropped, n-got)
	}
}

func TestAccessLogDisabled(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	p := startHTTPProxy(t, Config{Logger: zap.New(core)}, balancer.Policy{Kind: balancer.Maglev}, okBackend(t))
	get(t, p.addr, 20, 2)
	if n := logs.FilterLoggerName("access").Len(); n != 0 {
		t.Errorf("disabled: %d access lines", n)
	}
}
