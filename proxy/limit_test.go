package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/longhaul-proxy/longhaul/balancer"
)

// slotWait is how long a test watches a connection above maxConnections
// for an answer it must not get yet: it waits in the backlog, unanswered.
const slotWait = 300 * time.Millisecond

// expectWaiting asserts that c gets nothing, neither bytes nor a close nor
// a reset, for slotWait: it waits for a slot.
func expectWaiting(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(slotWait))
	n, err := c.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s above the limit: got %d bytes, %v; want it left waiting", what, n, err)
	}
	c.SetReadDeadline(time.Time{})
}

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
			p := startHTTPProxy(t, HTTPConfig{MaxConnections: 2, UpstreamH2: h2}, balancer.Policy{Kind: balancer.LeastConnections}, backend)
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
			expectWaiting(t, good, "a connection")
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
				ctx, cancel := context.WithTimeout(context.Background(), slotWait)
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
	hold := make(chan struct{})
	backend := startServer(t, func(c *net.TCPConn) { c.Write([]byte("x")); <-hold })
	defer close(hold)
	hb := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	tp := startProxy(t, TCPConfig{MaxConnectionsPerClient: 2, HalfClosedTimeout: 200 * time.Millisecond}, balancer.Policy{Kind: balancer.Maglev}, backend.addr())
	hp := startHTTPProxy(t, HTTPConfig{MaxConnectionsPerClient: 2}, balancer.Policy{Kind: balancer.Maglev}, hb)
	for _, tc := range []struct {
		name, addr string
		rejected   prometheus.Counter
		served     func(c net.Conn) error
	}{
		{"tcp", tp.addr, tp.l.metrics.Rejected.WithLabelValues(tp.l.cfg.Name, "per_client"), func(c net.Conn) error {
			_, err := io.ReadFull(c, make([]byte, 1))
			return err
		}},
		{"http", hp.addr, hp.l.metrics.Rejected.WithLabelValues(hp.l.cfg.Name, "per_client"), func(c net.Conn) error {
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err == nil {
				resp.Body.Close()
			}
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dialFrom := func(ip string) net.Conn {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
				c, err := d.Dial("tcp", tc.addr)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				c.SetDeadline(time.Now().Add(5 * time.Second))
				return c
			}
			first, second := dialFrom("127.0.0.1"), dialFrom("127.0.0.1")
			for i, c := range []net.Conn{first, second} {
				if err := tc.served(c); err != nil {
					t.Fatalf("connection %d: %v", i, err)
				}
			}
			third := dialFrom("127.0.0.1")
			start := time.Now()
			if n, err := third.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("third connection from one address: got %d bytes, %v; want it closed", n, err)
			}
			if took := time.Since(start); took > time.Second {
				t.Errorf("third connection closed after %v, want at once (within 1s)", took)
			}
			if n := testutil.ToFloat64(tc.rejected); n != 1 {
				t.Errorf("rejected per_client %v, want 1", n)
			}
			if err := tc.served(dialFrom("127.0.0.2")); err != nil {
				t.Errorf("a connection from another address: %v", err)
			}
			first.Close()
			var err error
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if err = tc.served(dialFrom("127.0.0.1")); err == nil {
					break
				}
			}
			if err != nil {
				t.Errorf("no connection from the address after one of its two closed: %v", err)
			}
		})
	}
}

// TestWebSocketGivesBackItsSlot: a WebSocket holds its connection's slot
// while it lasts (the relay reads the socket under the limit's wrapper):
// a second one waits, and is relayed once the first ends.
func TestWebSocketGivesBackItsSlot(t *testing.T) {
	p := startHTTPProxy(t, HTTPConfig{MaxConnections: 1}, balancer.Policy{Kind: balancer.LeastConnections}, startWSEcho(t))
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
	case <-time.After(slotWait):
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
