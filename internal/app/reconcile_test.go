package app

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/internal/testnet"
)

// gatewayListener is a routed listener named name on addr: /cart to
// backend cart, /api to api (when api is not ""), the rest to web.
func gatewayListener(t *testing.T, name, addr, cart, web, api string) config.Listener {
	t.Helper()
	apiBackend, apiRule := "", ""
	if api != "" {
		apiBackend = fmt.Sprintf("\n      - {name: api, endpoints: {static: [%q]}}", api)
		apiRule = "\n            - matches: [{path: {value: /api}}]\n              backendRefs: [{name: api}]"
	}
	cartBackend, cartRule := "", ""
	if cart != "" {
		cartBackend = fmt.Sprintf("\n      - {name: cart, endpoints: {static: [%q]}}", cart)
		cartRule = "\n            - matches: [{path: {value: /cart}}]\n              backendRefs: [{name: cart}]"
	}
	c, err := config.Parse(fmt.Appendf(nil, `
listeners:
  - name: %s
    address: %q
    protocol: http
    drain: {timeout: 5s}
    http: {webSocket: {closeCode: 1012}}
    backends:%s%s
      - {name: web, endpoints: {static: [%q]}}
    routes:
      http:
        - name: all
          rules:%s%s
            - backendRefs: [{name: web}]
`, name, addr, cartBackend, apiBackend, web, cartRule, apiRule))
	if err != nil {
		t.Fatal(err)
	}
	return c.Listeners[0]
}

// TestApplyReconciles: Apply changes a running App's listeners in place,
// beside the configuration's own (which stay).
// A backend whose endpoints change drains its sessions off the endpoint
// that left, a backend added serves at once, a backend removed drains its
// sessions (close 1012), and sessions on backends that stay are not
// touched; a listener added is bound and served, one removed stops
// accepting; an invalid set changes nothing.
func TestApplyReconciles(t *testing.T) {
	cart, web0, web1, api := routeBackend(t, "cart-0"), routeBackend(t, "web-0"), routeBackend(t, "web-1"), routeBackend(t, "api-0")
	addr := testnet.FreeAddr(t)
	r := start(t, fmt.Sprintf(`
admin: {address: %q}
log: {level: warn}
listeners:
  - {name: boot, address: %q, protocol: http, endpoints: {static: [%q]}}
`, testnet.FreeAddr(t), testnet.FreeAddr(t), web0))
	// ready waits until every backend has its first endpoints.
	ready := func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for r.a.Ready().Check() != nil {
			if time.Now().After(deadline) {
				t.Fatalf("not ready: %v", r.a.Ready().Check())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if _, err := r.a.Apply([]config.Listener{gatewayListener(t, "gw", addr, cart, web0, "")}); err != nil {
		t.Fatal(err)
	}
	ready()
	get := func(a, path string) string {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			resp, err := http.Get("http://" + a + path)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return string(b)
				}
				err = fmt.Errorf("status %d: %s", resp.StatusCode, b)
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s%s: %v", a, path, err)
			}
			time.Sleep(10 * time.Millisecond) // the new backend's first endpoints
		}
	}
	if got := get(addr, "/cart/x"); !strings.HasPrefix(got, "cart-0 /cart/x") {
		t.Fatalf("/cart/x: %q", got)
	}
	dial := func(path string) *websocket.Conn { return wsDial(t, addr, path, "") }
	echo := func(c *websocket.Conn, msg, want string) { t.Helper(); wsEcho(t, c, msg, want) }
	closed1012 := func(c *websocket.Conn, what string) { t.Helper(); wsClosed1012(t, c, what) }
	wsCart, wsWeb := dial("/cart/ws"), dial("/ws")
	echo(wsCart, "a", "cart-0:a")
	echo(wsWeb, "b", "web-0:b")

	// web's endpoint changes, api is added: the web session moves, the
	// cart one stays.
	if _, err := r.a.Apply([]config.Listener{gatewayListener(t, "gw", addr, cart, web1, api)}); err != nil {
		t.Fatal(err)
	}
	ready()
	closed1012(wsWeb, "the web WebSocket after web's endpoint changed")
	if got := get(addr, "/api/v"); !strings.HasPrefix(got, "api-0 /api/v") {
		t.Errorf("/api/v after api was added: %q", got)
	}
	if got := get(addr, "/other"); !strings.HasPrefix(got, "web-1 ") {
		t.Errorf("/other after web's endpoint changed: %q", got)
	}
	echo(wsCart, "c", "cart-0:c")

	// cart is removed: its session moves off (1012); /cart goes to web.
	gw2 := testnet.FreeAddr(t)
	if _, err := r.a.Apply([]config.Listener{gatewayListener(t, "gw", addr, "", web1, api), gatewayListener(t, "gw2", gw2, "", web0, "")}); err != nil {
		t.Fatal(err)
	}
	ready()
	closed1012(wsCart, "the cart WebSocket after cart was removed")
	if got := get(addr, "/cart/x"); !strings.HasPrefix(got, "web-1 /cart/x") {
		t.Errorf("/cart/x after cart was removed: %q", got)
	}
	if got := get(gw2, "/"); !strings.HasPrefix(got, "web-0 /") {
		t.Errorf("the listener added: %q", got)
	}
	if r.a.Upstream("gw/cart") != nil || r.a.Upstream("boot") == nil {
		t.Error("a removed backend is still listed, or the configuration's own listener is gone")
	}

	// An invalid set changes nothing.
	bad := gatewayListener(t, "gw", addr, "", web1, api)
	bad.Routes.HTTP[0].Rules[0].Backends[0].Name = "nosuch"
	if _, err := r.a.Apply([]config.Listener{bad}); err == nil || !strings.Contains(err.Error(), "names no backend") {
		t.Errorf("invalid listeners: %v, want the validation error", err)
	}
	if got := get(gw2, "/"); !strings.HasPrefix(got, "web-0 /") {
		t.Errorf("after an invalid set, gw2: %q", got)
	}

	// gw removed: it stops accepting.
	if _, err := r.a.Apply([]config.Listener{gatewayListener(t, "gw2", gw2, "", web0, "")}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the removed listener still accepts")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
