package app

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/longhaul-proxy/longhaul/internal/testnet"
)

// routeBackend is an HTTP server that answers "name path x-route" and
// echoes WebSocket messages prefixed by its name.
func routeBackend(t *testing.T, name string) string {
	t.Helper()
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if websocket.IsWebSocketUpgrade(r) {
			c, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			for {
				mt, msg, err := c.ReadMessage()
				if err != nil {
					return
				}
				if c.WriteMessage(mt, append([]byte(name+":"), msg...)) != nil {
					return
				}
			}
		}
		fmt.Fprintf(w, "%s %s %s", name, r.URL.Path, r.Header.Get("X-Route"))
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// wsDial opens a WebSocket to addr with the Host given ("" for addr's),
// closed when the test ends.
func wsDial(t *testing.T, addr, path, host string) *websocket.Conn {
	t.Helper()
	h := http.Header{}
	if host != "" {
		h.Set("Host", host)
	}
	c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+path, h)
	if err != nil {
		t.Fatalf("websocket %s: %v", path, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// wsEcho sends msg and wants want back within 5 s.
func wsEcho(t *testing.T, c *websocket.Conn, msg, want string) {
	t.Helper()
	if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, got, err := c.ReadMessage(); err != nil || string(got) != want {
		t.Fatalf("echo %q: %q, %v; want %q", msg, got, err, want)
	}
}

// wsClosed1012 wants c closed with 1012 (service restart) within 10 s.
func wsClosed1012(t *testing.T, c *websocket.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err := c.ReadMessage()
	if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != 1012 {
		t.Fatalf("%s: %v, want close 1012", what, err)
	}
}

// TestRoutesToBackends: an http listener with routes sends each request
// to its rule's backend, applies the rule's filters (request headers, a
// prefix rewrite, response headers, a redirect), answers 404 for a host no
// route serves; WebSockets are routed too, and a drain of one backend's
// endpoint moves its sessions (close 1012) and leaves the other backend's
// alone: each backend is an upstream of its own.
func TestRoutesToBackends(t *testing.T) {
	cart0, web0 := routeBackend(t, "cart-0"), routeBackend(t, "web-0")
	dir := t.TempDir()
	cartFile := filepath.Join(dir, "cart.yaml")
	write := func(terminating bool) {
		t.Helper()
		if err := os.WriteFile(cartFile, fmt.Appendf(nil, "endpoints:\n  - {address: %q, terminating: %v, ready: %v, serving: %[3]v}\n", cart0, terminating, !terminating), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(false)
	addr := testnet.FreeAddr(t)
	r := start(t, fmt.Sprintf(`
admin: {address: %q, debugAddress: %q}
log: {level: warn}
listeners:
  - name: gw
    address: %q
    protocol: http
    balance: {policy: least-connections}
    drain: {timeout: 5s}
    http: {webSocket: {closeCode: 1012}}
    backends:
      - {name: cart, endpoints: {file: %q}}
      - {name: web, endpoints: {static: [%q]}}
    routes:
      http:
        - name: shop
          hostnames: [shop.example.com]
          rules:
            - matches: [{path: {type: PathPrefix, value: /cart}}]
              filters:
                - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Route, value: cart}]}}
                - {type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}
                - {type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: X-Served-By, value: cart}]}}
              backendRefs: [{name: cart}]
            - matches: [{path: {type: Exact, value: /old}}]
              filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /new}, statusCode: 301}}]
            - backendRefs: [{name: web}]
`, testnet.FreeAddr(t), testnet.FreeAddr(t), addr, cartFile, web0))

	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 5 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	get := func(host, path string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s%s: %v", host, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	for _, c := range []struct {
		host, path string
		code       int
		body       string
	}{
		{"shop.example.com", "/cart/items", 200, "cart-0 /items cart"},
		{"shop.example.com", "/cart", 200, "cart-0 / cart"},
		{"shop.example.com", "/carts", 200, "web-0 /carts "},
		{"shop.example.com:80", "/", 200, "web-0 / "},
		{"SHOP.example.com", "/cart/x", 200, "cart-0 /x cart"},
	} {
		resp, body := get(c.host, c.path)
		if resp.StatusCode != c.code || body != c.body {
			t.Errorf("GET %s%s: %d %q, want %d %q", c.host, c.path, resp.StatusCode, body, c.code, c.body)
		}
		if wantHdr := strings.HasPrefix(c.body, "cart"); (resp.Header.Get("X-Served-By") == "cart") != wantHdr {
			t.Errorf("GET %s%s: X-Served-By %q", c.host, c.path, resp.Header.Get("X-Served-By"))
		}
	}
	_, port, _ := strings.Cut(addr, ":") // no port in the redirect: the listener's (the API's rule)
	if resp, _ := get("shop.example.com", "/old?q=1"); resp.StatusCode != 301 || resp.Header.Get("Location") != "http://shop.example.com:"+port+"/new?q=1" {
		t.Errorf("redirect: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := get("elsewhere.example.com", "/cart"); resp.StatusCode != 404 {
		t.Errorf("a host no route serves: %d, want 404", resp.StatusCode)
	}

	// WebSockets through the routes: one to each backend.
	dial := func(path string) *websocket.Conn { return wsDial(t, addr, path, "shop.example.com") }
	echo := func(c *websocket.Conn, msg, want string) { t.Helper(); wsEcho(t, c, msg, want) }
	wsCart, wsWeb := dial("/cart/ws"), dial("/ws")
	echo(wsCart, "a", "cart-0:a")
	echo(wsWeb, "b", "web-0:b")
	if n := len(r.a.Sessions().Endpoint(cart0)); n != 1 {
		t.Errorf("%d sessions on the cart endpoint, want 1", n)
	}
	for _, name := range []string{"gw/cart", "gw/web"} {
		if r.a.Upstream(name) == nil {
			t.Errorf("no upstream %s", name)
		}
	}

	// The cart endpoint leaves: its WebSocket is closed 1012, the web one
	// carries on.
	write(true)
	wsClosed1012(t, wsCart, "cart WebSocket after its endpoint left")
	echo(wsWeb, "c", "web-0:c")
	if resp, _ := get("shop.example.com", "/cart/x"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("cart with its only endpoint gone: %d, want 503", resp.StatusCode)
	}
}

// grpcBackend serves the gRPC health service reporting status for "".
func grpcBackend(t *testing.T, status healthpb.HealthCheckResponse_ServingStatus) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	h := health.NewServer()
	h.SetServingStatus("", status)
	healthpb.RegisterHealthServer(srv, h)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

// TestGRPCRoutes: a grpc listener with GRPCRoutes sends each call to the
// backend of the rule it matches (here by a header), through the HTTP/2
// relay.
func TestGRPCRoutes(t *testing.T) {
	a, b := grpcBackend(t, healthpb.HealthCheckResponse_SERVING), grpcBackend(t, healthpb.HealthCheckResponse_NOT_SERVING)
	addr := testnet.FreeAddr(t)
	start(t, fmt.Sprintf(`
admin: {address: %q}
log: {level: warn}
listeners:
  - name: rpc
    address: %q
    protocol: grpc
    backends:
      - {name: a, endpoints: {static: [%q]}}
      - {name: b, endpoints: {static: [%q]}}
    routes:
      grpc:
        - name: health
          rules:
            - matches: [{method: {service: grpc.health.v1.Health, method: Check}, headers: [{name: x-shard, value: b}]}]
              backendRefs: [{name: b}]
            - matches: [{method: {service: grpc.health.v1.Health, method: Check}}]
              backendRefs: [{name: a}]
`, testnet.FreeAddr(t), addr, a, b))
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	for shard, want := range map[string]healthpb.HealthCheckResponse_ServingStatus{"": healthpb.HealthCheckResponse_SERVING, "b": healthpb.HealthCheckResponse_NOT_SERVING} {
		for range 5 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if shard != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "x-shard", shard)
			}
			resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
			cancel()
			if err != nil || resp.Status != want {
				t.Fatalf("shard %q: %v, %v; want %v", shard, resp, err, want)
			}
		}
	}
	// A method no route serves: UNIMPLEMENTED, as the API says (not
	// UNAVAILABLE: no client should retry it elsewhere).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("a method no route serves: %v, want Unimplemented", err)
	}
}

// TestRouteMirror: a RequestMirror filter of the file sends a copy of
// each request to its backend, the client's answer coming from the
// rule's.
func TestRouteMirror(t *testing.T) {
	web := routeBackend(t, "web-0")
	copies := make(chan string, 8)
	shadow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		copies <- fmt.Sprintf("%s %s %s %s", r.Method, r.URL.Path, r.Header.Get("X-Route"), b)
		fmt.Fprint(w, "shadow")
	}))
	t.Cleanup(shadow.Close)
	addr := testnet.FreeAddr(t)
	start(t, fmt.Sprintf(`
admin: {address: %q, debugAddress: %q}
log: {level: warn}
listeners:
  - name: gw
    address: %q
    protocol: http
    backends:
      - {name: web, endpoints: {static: [%q]}}
      - {name: shadow, endpoints: {static: [%q]}}
    routes:
      http:
        - name: site
          rules:
            - filters:
                - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Route, value: web}]}}
                - {type: RequestMirror, requestMirror: {backendRef: {name: shadow}}}
              backendRefs: [{name: web}]
`, testnet.FreeAddr(t), testnet.FreeAddr(t), addr, web, strings.TrimPrefix(shadow.URL, "http://")))
	client := &http.Client{Timeout: 5 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	resp, err := client.Post("http://"+addr+"/orders", "text/plain", strings.NewReader("one order"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "web-0 /orders web" {
		t.Errorf("answer %q, want web's", b)
	}
	select {
	case c := <-copies:
		if c != "POST /orders web one order" {
			t.Errorf("the mirror got %q", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the mirror got no copy")
	}
}
