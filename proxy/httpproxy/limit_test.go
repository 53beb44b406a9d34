package httpproxy

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
	"github.com/longhaul-proxy/longhaul/internal/proxytest"
)

// TestHTTPMaxConnectionsWait: an HTTP listener holds at most
// MaxConnections client connections, HTTP/1.1 and HTTP/2 alike. Slow
// clients hold every slot; a well-behaved client that arrives then waits,
// unanswered and not reset, and is served as soon as a slot frees.
func TestHTTPMaxConnectionsWait(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("upstreamH2=%v", h2), func(t *testing.T) {
			var backend string
			if h2 {
				backend = startH2CBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					fmt.Fprint(w, "ok")
				}))
			} else {
				backend = startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					fmt.Fprint(w, "ok")
				}))
			}
			p := startHTTPProxy(t, Config{MaxConnections: 2, UpstreamH2: h2}, balancer.Policy{Kind: balancer.LeastConnections}, backend)
			get := func(c net.Conn) error {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				defer c.SetDeadline(time.Time{})
				fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					return err
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					return fmt.Errorf("status %s", resp.Status)
				}
				return nil
			}
			dial := func() net.Conn {
				c, err := net.Dial("tcp", p.addr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				return c
			}
			// Two slow clients: each sent one request and now sits idle on
			// its keep-alive connection (the idle timeout is far off).
			slow := []net.Conn{dial(), dial()}
			for i, c := range slow {
				if err := get(c); err != nil {
					t.Fatalf("slow client %d: %v", i, err)
				}
			}
			// The well-behaved one connects (the kernel completes the
			// handshake) and sends its request, which waits.
			good := dial()
			fmt.Fprintf(good, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			proxytest.ExpectWaiting(t, good, "a connection")
			freed := time.Now()
			slow[0].Close()
			good.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(good), nil)
			if err != nil {
				t.Fatalf("the waiting client got no answer once a slot freed: %v", err)
			}
			resp.Body.Close()
			took := time.Since(freed)
			t.Logf("answered %v after a slot freed", took)
			if resp.StatusCode != 200 || took > time.Second {
				t.Errorf("waiting client: %s %v after a slot freed, want 200 within 1s", resp.Status, took)
			}
			// The other slow client was neither reset nor closed.
			if err := get(slow[1]); err != nil {
				t.Errorf("the slow client that kept its slot: %v", err)
			}
			if n := testutil.ToFloat64(p.l.metrics.Rejected.WithLabelValues(p.l.cfg.Name, "per_client")); n != 0 {
				t.Errorf("rejected %v, want 0", n)
			}
			if h2 {
				// An HTTP/2 connection takes a slot too: with both taken,
				// a gRPC call waits for one.
				cc := grpcClient(t, p.addr)
				ctx, cancel := context.WithTimeout(context.Background(), proxytest.SlotWait)
				defer cancel()
				if _, err := cc.Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
					t.Error("a gRPC call was served on a connection above the limit")
				}
			}
		})
	}
}

// TestMaxConnectionsPerClient: above its per-client bound, a client's next
// connection is closed at once and counted; another address is served;
// the slot comes back when one of the client's connections ends.
func TestMaxConnectionsPerClient(t *testing.T) {
	hb := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	hp := startHTTPProxy(t, Config{MaxConnectionsPerClient: 2}, balancer.Policy{Kind: balancer.Maglev}, hb)
	proxytest.CheckPerClientLimit(t, hp.addr, hp.l.metrics.Rejected.WithLabelValues(hp.l.cfg.Name, "per_client"), func(c net.Conn) error {
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
}

// TestWebSocketGivesBackItsSlot: a WebSocket holds its connection's slot
// while it lasts (the relay reads the socket under the limit's wrapper):
// a second one waits, and is relayed once the first ends.
func TestWebSocketGivesBackItsSlot(t *testing.T) {
	p := startHTTPProxy(t, Config{MaxConnections: 1}, balancer.Policy{Kind: balancer.LeastConnections}, startWSEcho(t))
	dialWS := func() (*websocket.Conn, error) {
		d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
		c, _, err := d.Dial("ws://"+p.addr+"/ws", nil)
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
	type result struct {
		c   *websocket.Conn
		err error
	}
	second := make(chan result, 1)
	go func() { c, err := dialWS(); second <- result{c, err} }()
	select {
	case r := <-second:
		if r.c != nil {
			r.c.Close()
		}
		t.Fatalf("a second WebSocket was relayed (or refused: %v) while the first held the only slot", r.err)
	case <-time.After(proxytest.SlotWait):
	}
	freed := time.Now()
	first.Close()
	r := <-second
	if r.err != nil {
		t.Fatalf("the waiting WebSocket, once the first ended: %v", r.err)
	}
	r.c.Close()
	if took := time.Since(freed); took > time.Second {
		t.Errorf("the waiting WebSocket was relayed %v after the first ended, want within 1s", took)
	}
}
