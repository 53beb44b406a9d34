package app

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/longhaul-proxy/longhaul/internal/testnet"
)

// TestAccessLogFromConfig: a listener's accessLog reaches its proxy: a
// tcp session and an HTTP request get a line each on the logger named
// "access", with the listener named once; a listener without it logs
// nothing.
func TestAccessLogFromConfig(t *testing.T) {
	web := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	webLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go web.Serve(webLn)
	t.Cleanup(func() { web.Close() })
	echo := echoServer(t)
	core, logs := observer.New(zapcore.InfoLevel)
	admin, tcpAddr, httpAddr, quiet := testnet.FreeAddr(t), testnet.FreeAddr(t), testnet.FreeAddr(t), testnet.FreeAddr(t)
	startWith(t, fmt.Sprintf(`
admin: {address: %q}
listeners:
  - name: raw
    address: %q
    endpoints: {static: [%q]}
    accessLog: {enabled: true}
  - name: web
    address: %q
    protocol: http
    endpoints: {static: [%q]}
    accessLog: {enabled: true, sample: 1, maxPerSecond: 10}
  - name: quiet
    address: %q
    protocol: http
    endpoints: {static: [%q]}
`, admin, tcpAddr, echo, httpAddr, webLn.Addr().String(), quiet, webLn.Addr().String()), Options{Logger: zap.New(core)})

	c, err := net.Dial("tcp", tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, "hello")
	c.Close()
	for _, a := range []string{httpAddr, quiet} {
		if code, body := get(t, "http://"+a+"/x"); code != 200 || body != "ok" {
			t.Fatalf("GET: %d %q", code, body)
		}
	}
	var lines []observer.LoggedEntry
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		// The tcp line is written when the session ends, after the client closed.
		if lines = logs.FilterLoggerName("access").All(); len(lines) >= 2 || time.Now().After(deadline) {
			break
		}
	}
	if len(lines) != 2 {
		t.Fatalf("%d access lines, want 2: %v", len(lines), lines)
	}
	got := map[string]map[string]any{}
	for _, l := range lines {
		n := 0
		for _, f := range l.Context {
			if f.Key == "listener" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("a line names its listener %d times: %v", n, l.Context)
		}
		m := l.ContextMap()
		got[m["listener"].(string)] = m
	}
	if m := got["raw"]; m == nil || m["kind"] != "tcp" || m["bytes_in"] != int64(5) || m["endpoint"] != echo {
		t.Errorf("tcp line %v", m)
	}
	if m := got["web"]; m == nil || m["kind"] != "http" || fmt.Sprint(m["status"]) != "200" || m["path"] != "/x" {
		t.Errorf("http line %v", m)
	}
}
