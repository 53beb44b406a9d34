package proxy

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/longhaul-proxy/longhaul/balancer"
)

// TestHTTPMaxConnections: an HTTP listener holds at most MaxConnections
// client connections, HTTP/1.1 and HTTP/2 alike; one more is closed at
// once and counted, and a slot freed by a close is taken again.
func TestHTTPMaxConnections(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("upstreamH2=%v", h2), func(t *testing.T) {
			var backend string
			if h2 {
				backend = startGRPCBackend(t).addr
			} else {
				backend = startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					fmt.Fprint(w, "ok")
				}))
			}
			p := startHTTPProxy(t, HTTPConfig{MaxConnections: 2, UpstreamH2: h2}, balancer.Policy{Kind: balancer.LeastConnections}, backend)
			rejected := p.l.metrics.Rejected.WithLabelValues(p.l.cfg.Name, "limit")
			// get sends one HTTP/1.1 request on c and reports whether an
			// answer came (any status: the h2c backend answers HTTP/1 400).
			get := func(c net.Conn) bool {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					return false
				}
				resp.Body.Close()
				return true
			}
			dial := func() net.Conn {
				c, err := net.Dial("tcp", p.addr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				return c
			}
			first, second := dial(), dial()
			if !get(first) || !get(second) {
				t.Fatal("the first two connections were not served")
			}
			if get(dial()) {
				t.Error("a third connection was served above maxConnections 2")
			}
			if n := testutil.ToFloat64(rejected); n != 1 {
				t.Errorf("rejected %v, want 1", n)
			}
			first.Close()
			ok := false
			for deadline := time.Now().Add(5 * time.Second); !ok && time.Now().Before(deadline); {
				ok = get(dial())
			}
			if !ok {
				t.Fatal("no connection was served after one of the two closed")
			}
			if h2 {
				// An HTTP/2 connection takes a slot too: with second and
				// the one just served open, a gRPC call has none.
				cc := grpcClient(t, p.addr)
				ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				defer cancel()
				if _, err := cc.Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
					t.Error("a gRPC call was served on a connection above the limit")
				}
			}
		})
	}
}

// TestWebSocketGivesBackItsSlot: a WebSocket holds its connection's slot
// while it lasts (the relay reads the socket under the limit's wrapper)
// and gives it back when it ends.
func TestWebSocketGivesBackItsSlot(t *testing.T) {
	p := startHTTPProxy(t, HTTPConfig{MaxConnections: 1}, balancer.Policy{Kind: balancer.LeastConnections}, startWSEcho(t))
	dialWS := func() (*websocket.Conn, error) {
		c, _, err := websocket.DefaultDialer.Dial("ws://"+p.addr+"/ws", nil)
		if err != nil {
			return nil, err
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if err := c.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
			c.Close()
			return nil, err
		}
		if _, _, err := c.ReadMessage(); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	first, err := dialWS()
	if err != nil {
		t.Fatalf("first WebSocket: %v", err)
	}
	if c, err := dialWS(); err == nil {
		c.Close()
		t.Fatal("a second WebSocket was relayed above maxConnections 1")
	}
	first.Close()
	var second *websocket.Conn
	for deadline := time.Now().Add(5 * time.Second); second == nil && time.Now().Before(deadline); {
		if second, err = dialWS(); err != nil {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if second == nil {
		t.Fatalf("no WebSocket after the first ended: %v", err)
	}
	second.Close()
}
