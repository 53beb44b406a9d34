package tcpproxy

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/internal/guard"
	"github.com/longhaul-proxy/longhaul/internal/proxytest"
	"github.com/longhaul-proxy/longhaul/proxy/upstream"
)

// TestTCPPanicClosesOneSession: a panic in one session's relay, on either
// direction's goroutine, closes that session only: the sessions next to it
// on the same listener keep relaying, the panic is counted once and logged
// with its stack, and the panicking session leaves the registry.
func TestTCPPanicClosesOneSession(t *testing.T) {
	var panicNext atomic.Int32 // 1: up direction, 2: down direction
	testHookRelay = func(s *tcpSession, up bool) {
		if want := map[bool]int32{true: 1, false: 2}[up]; panicNext.CompareAndSwap(want, 0) {
			panic("test: relay bug")
		}
	}
	t.Cleanup(func() { testHookRelay = nil }) // after the proxy's cleanup
	logs := proxytest.CaptureGuard(t)
	be := proxytest.StartServer(t, proxytest.Echo)
	p := startProxy(t, Config{}, balancer.Policy{Kind: balancer.Maglev}, be.Addr())

	const others = 8
	var calm []net.Conn
	for i := range others {
		c := proxytest.Dial(t, p.addr)
		if err := proxytest.EchoRound(c, fmt.Sprint("hello ", i)); err != nil {
			t.Fatal(err)
		}
		calm = append(calm, c)
	}
	for _, dir := range []struct {
		name string
		code int32
	}{{"up", 1}, {"down", 2}} {
		t.Run(dir.name, func(t *testing.T) {
			before := guard.Count("tcp")
			logsBefore := logs.Len()
			panicNext.Store(dir.code)
			victim := proxytest.Dial(t, p.addr)
			victim.SetReadDeadline(time.Now().Add(5 * time.Second))
			start := time.Now()
			n, err := victim.Read(make([]byte, 1))
			if n != 0 || err == nil || strings.Contains(fmt.Sprint(err), "timeout") {
				t.Fatalf("victim read %d, %v; want the connection closed", n, err)
			}
			t.Logf("panicking session closed %v after it was accepted", time.Since(start).Round(time.Millisecond))
			if got := guard.Count("tcp") - before; got != 1 {
				t.Errorf("longhaul_panics_total{where=tcp} rose by %v, want 1", got)
			}
			if got := logs.Len() - logsBefore; got != 1 {
				t.Errorf("%d panic reports logged, want 1", got)
			} else if f := logs.All()[logs.Len()-1].ContextMap(); !strings.Contains(fmt.Sprint(f["stack"]), "panics_test.go") {
				t.Errorf("panic logged without its stack: %v", f)
			}
			// The others carry on, each with 64 KiB more each way.
			payload := strings.Repeat("x", 64<<10)
			for i, c := range calm {
				if err := proxytest.EchoRound(c, payload); err != nil {
					t.Fatalf("calm session %d after the panic: %v", i, err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			victimAddr := victim.LocalAddr().String()
			if err := p.reg.Wait(ctx, func(in upstream.SessionInfo) bool { return in.Client == victimAddr }); err != nil {
				t.Fatalf("the panicking session is still registered: %v", err)
			}
			if n := p.reg.Len(); n != others {
				t.Errorf("%d sessions registered, want the %d calm ones", n, others)
			}
			// The listener still accepts.
			if err := proxytest.EchoRound(proxytest.Dial(t, p.addr), "after"); err != nil {
				t.Fatalf("new session after the panic: %v", err)
			}
		})
	}
}
