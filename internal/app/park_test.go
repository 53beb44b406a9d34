package app

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/internal/testnet"
)

// TestIdleWebSocketsPark: through the App, WebSockets quiet past
// timeouts.park park both their sockets, /metrics shows them, a
// message still echoes, and they stop being parked when they close.
func TestIdleWebSocketsPark(t *testing.T) {
	backend := routeBackend(t, "echo")
	admin, lis := testnet.FreeAddr(t), testnet.FreeAddr(t)
	start(t, fmt.Sprintf(`
admin: {address: %q}
listeners:
  - name: web
    address: %q
    protocol: http
    endpoints: {static: [%q]}
    timeouts: {park: 20ms}
`, admin, lis, backend))
	const n = 5
	parked := func(want int) {
		t.Helper()
		line := fmt.Sprintf("longhaul_parked_sockets %d\n", want)
		var m string
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if _, m = get(t, "http://"+admin+"/metrics"); strings.Contains(m, line) {
				return
			}
		}
		i := strings.Index(m, "longhaul_parked_sockets ")
		t.Fatalf("/metrics: want %q, have %q", line, m[i:min(len(m), i+40)])
	}
	var closers []func()
	for i := range n {
		c := wsDial(t, lis, "/ws", "")
		wsEcho(t, c, fmt.Sprint(i), fmt.Sprintf("echo:%d", i))
		closers = append(closers, func() { c.Close() })
	}
	parked(2 * n)
	c := wsDial(t, lis, "/ws", "")
	wsEcho(t, c, "x", "echo:x") // a new one, while the others are parked
	parked(2*n + 2)
	wsEcho(t, c, "y", "echo:y") // woken, and parked again
	parked(2*n + 2)
	for _, cl := range closers {
		cl()
	}
	c.Close()
	parked(0)
}
