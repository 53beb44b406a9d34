package tcpproxy

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/internal/proxytest"
	"github.com/longhaul-proxy/longhaul/proxy/accesslog"
)

// TestAccessLogSessions: a TCP session's line comes when it ends, with
// its bytes each way, its endpoint and how it ended; a drained one's with
// the reason and outcome of its migration. A listener without an access
// log writes none.
func TestAccessLogSessions(t *testing.T) {
	backend := proxytest.StartServer(t, proxytest.Echo)
	core, logs := observer.New(zapcore.InfoLevel)
	cfg := Config{DrainImmediate: true, Logger: zap.New(core), AccessLog: accesslog.Config{Enabled: true, Sample: 1}}
	p := startProxy(t, cfg, balancer.Policy{Kind: balancer.Maglev}, backend.Addr())
	off := startProxy(t, Config{Name: "off", Logger: zap.New(core)}, balancer.Policy{Kind: balancer.Maglev}, backend.Addr())
	wait := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.reg.Wait(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if err := off.reg.Wait(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}

	// Ends by itself: the client half-closes, the echo answers and ends.
	for _, addr := range []string{p.addr, off.addr} {
		c := proxytest.Dial(t, addr)
		c.Write([]byte("hello"))
		c.CloseWrite()
		if b, err := io.ReadAll(c); err != nil || string(b) != "hello" {
			t.Fatalf("echo: %q, %v", b, err)
		}
		c.Close()
	}
	wait()

	// Drained, closed at once by policy.
	c := proxytest.Dial(t, p.addr)
	c.Write([]byte("abc"))
	io.ReadFull(c, make([]byte, 3))
	ss := p.reg.Endpoint(backend.Addr())
	if len(ss) != 1 {
		t.Fatalf("%d sessions, want 1", len(ss))
	}
	ss[0].(interface{ SetMigrationReason(string) }).SetMigrationReason("rebalance")
	ss[0].Migrate(time.Now().Add(time.Second))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.ReadAll(c)
	c.Close()
	wait()

	all := logs.FilterLoggerName("access").All()
	if len(all) != 2 {
		t.Fatalf("%d access lines, want 2: %v", len(all), all)
	}
	for i, want := range []map[string]any{
		{"listener": "test", "kind": "tcp", "backend": "test", "endpoint": backend.Addr(), "bytes_in": 5, "bytes_out": 5, "end": "eof", "status": nil},
		{"kind": "tcp", "bytes_in": 3, "bytes_out": 3, "end": "migrated", "migration_reason": "rebalance", "migration_outcome": "closed"},
	} {
		line := all[i].ContextMap()
		for k, v := range want {
			if g := line[k]; fmt.Sprint(g) != fmt.Sprint(v) {
				t.Errorf("line %d: %s = %v, want %v (%v)", i, k, g, v, line)
			}
		}
		if d, _ := line["duration"].(time.Duration); d <= 0 {
			t.Errorf("line %d: duration %v", i, line["duration"])
		}
	}
}

// TestAccessLogNoEndpoint: a connection no endpoint takes is logged as
// such when it is closed.
func TestAccessLogNoEndpoint(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	p := startProxy(t, Config{Logger: zap.New(core), AccessLog: accesslog.Config{Enabled: true, Sample: 1}},
		balancer.Policy{Kind: balancer.Maglev})
	c := proxytest.Dial(t, p.addr)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.ReadAll(c) // closed by the proxy, after the line is written
	c.Close()
	all := logs.FilterLoggerName("access").All()
	if len(all) != 1 || all[0].ContextMap()["end"] != "no_endpoint" {
		t.Fatalf("lines %v, want one ending no_endpoint", all)
	}
}
