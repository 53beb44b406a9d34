package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/net/http2"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/internal/guard"
)

// captureGuard sends guard's reports to an observer for the test.
func captureGuard(t *testing.T) *observer.ObservedLogs {
	core, logs := observer.New(zap.ErrorLevel)
	guard.SetLogger(zap.New(core))
	t.Cleanup(func() { guard.SetLogger(nil) })
	return logs
}

// echoRound writes msg on c and reads it back, within 5s.
func echoRound(c net.Conn, msg string) error {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo: got %q, want %q", buf, msg)
	}
	return nil
}

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
	logs := captureGuard(t)
	be := startServer(t, echo)
	p := startProxy(t, TCPConfig{}, balancer.Policy{Kind: balancer.Maglev}, be.addr())

	const others = 8
	var calm []net.Conn
	for i := range others {
		c := dial(t, p.addr)
		if err := echoRound(c, fmt.Sprint("hello ", i)); err != nil {
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
			victim := dial(t, p.addr)
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
				if err := echoRound(c, payload); err != nil {
					t.Fatalf("calm session %d after the panic: %v", i, err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			victimAddr := victim.LocalAddr().String()
			if err := p.reg.Wait(ctx, func(in SessionInfo) bool { return in.Client == victimAddr }); err != nil {
				t.Fatalf("the panicking session is still registered: %v", err)
			}
			if n := p.reg.Len(); n != others {
				t.Errorf("%d sessions registered, want the %d calm ones", n, others)
			}
			// The listener still accepts.
			if err := echoRound(dial(t, p.addr), "after"); err != nil {
				t.Fatalf("new session after the panic: %v", err)
			}
		})
	}
}

// TestHTTPPanicClosesOneConnection: a panic on the goroutine that sniffs
// and serves one accepted HTTP connection closes that connection; an
// HTTP/2 client connection already open on the same listener keeps
// serving requests on it.
func TestHTTPPanicClosesOneConnection(t *testing.T) {
	var panicNext atomic.Bool
	testHookConn = func(net.Conn) {
		if panicNext.CompareAndSwap(true, false) {
			panic("test: conn bug")
		}
	}
	t.Cleanup(func() { testHookConn = nil })
	captureGuard(t)
	be := startH2CBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	p := startHTTPProxy(t, HTTPConfig{UpstreamH2: true}, balancer.Policy{Kind: balancer.Maglev}, be)
	var dials atomic.Int32
	c := &http.Client{Transport: &http2.Transport{AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, n, a string, _ *tls.Config) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, n, a)
		}}}
	defer c.CloseIdleConnections()
	get := func() error {
		resp, err := c.Get("http://" + p.addr + "/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "ok" {
			return fmt.Errorf("got %d %q", resp.StatusCode, b)
		}
		return nil
	}
	if err := get(); err != nil {
		t.Fatal(err)
	}
	before := guard.Count("http")
	panicNext.Store(true)
	victim, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	victim.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	victim.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := victim.Read(make([]byte, 1)); n != 0 || err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("victim read %d, %v; want the connection closed", n, err)
	}
	if got := guard.Count("http") - before; got != 1 {
		t.Errorf("longhaul_panics_total{where=http} rose by %v, want 1", got)
	}
	for i := range 10 {
		if err := get(); err != nil {
			t.Fatalf("request %d on the open connection after the panic: %v", i, err)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("the client dialled %d times, want its one connection kept", n)
	}
}
