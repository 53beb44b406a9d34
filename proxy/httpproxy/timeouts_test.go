package httpproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/net/http2"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/internal/proxytest"
)

func dialRaw(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// readStatus reads one response from br and returns its status code.
func readStatus(t *testing.T, c net.Conn, br *bufio.Reader) int {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// bodyLenBackend answers with the length of the request body it read.
func bodyLenBackend(t *testing.T) string {
	return startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		fmt.Fprintf(w, "%d", len(b))
	}))
}

// TestKeepAliveIdle: an HTTP/1.1 connection waiting for its next request
// is closed after KeepAliveIdle (not timeouts.idle), and so is a net/http
// HTTP/2 connection with no stream open.
func TestKeepAliveIdle(t *testing.T) {
	p := startHTTPProxy(t, Config{KeepAliveIdle: proxytest.ShortTimeout},
		balancer.Policy{Kind: balancer.Maglev}, bodyLenBackend(t))
	t.Run("http1", func(t *testing.T) {
		c, br := dialRaw(t, p.addr)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if code := readStatus(t, c, br); code != 200 {
			t.Fatalf("status %d", code)
		}
		idle := time.Now()
		proxytest.AssertWithin(t, "idle keep-alive connection closed", proxytest.WaitClosed(t, c, br, idle), proxytest.ShortTimeout-50*time.Millisecond, proxytest.ShortTimeout+proxytest.Slack)
	})
	t.Run("http2", func(t *testing.T) { checkH2IdleClose(t, p.addr) })
	t.Run("http2-relay", func(t *testing.T) {
		// The frame relay (h2c endpoints) applies the same keepAliveIdle.
		relay := startHTTPProxy(t, Config{UpstreamH2: true, KeepAliveIdle: proxytest.ShortTimeout},
			balancer.Policy{Kind: balancer.Maglev}, startH2CBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
		if relay.l.relay == nil {
			t.Fatal("no relay")
		}
		checkH2IdleClose(t, relay.addr)
	})
}

// checkH2IdleClose makes one request on an HTTP/2 connection to addr and
// checks that the connection is closed shortTimeout after it (plus the
// second net/http's server waits after its GOAWAY).
func checkH2IdleClose(t *testing.T, addr string) {
	{
		closed := make(chan time.Time, 1)
		tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, n, a string, _ *tls.Config) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, n, a)
			if err != nil {
				return nil, err
			}
			return &endSignal{Conn: c, ended: closed}, nil
		}}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		idle := time.Now()
		select {
		case at := <-closed:
			// GOAWAY at the timeout, then net/http closes a second later.
			proxytest.AssertWithin(t, "HTTP/2 connection with no stream closed", at.Sub(idle), proxytest.ShortTimeout-50*time.Millisecond, proxytest.ShortTimeout+time.Second+proxytest.Slack)
		case <-time.After(10 * time.Second):
			t.Fatal("the idle HTTP/2 connection is still open after 10s")
		}
	}
}

// endSignal sends the time its connection's first read error came.
type endSignal struct {
	net.Conn
	once  sync.Once
	ended chan time.Time
}

func (c *endSignal) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.once.Do(func() { c.ended <- time.Now() })
	}
	return n, err
}

// TestRequestBodyTimeout: a request body that stops is cut after
// RequestBodyTimeout with 408 and the connection closed, on HTTP/1.1
// (Content-Length and chunked) and HTTP/2; one that keeps coming, however
// slowly, and an endpoint that answers long after the body ended, are not
// cut: the body's read deadline is gone once the body is.
func TestRequestBodyTimeout(t *testing.T) {
	slowAnswer := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		time.Sleep(3 * proxytest.ShortTimeout) // answering well after the body's bound
		fmt.Fprintf(w, "%d", len(b))
	}))
	p := startHTTPProxy(t, Config{RequestBodyTimeout: proxytest.ShortTimeout}, balancer.Policy{Kind: balancer.Maglev}, bodyLenBackend(t))
	pSlow := startHTTPProxy(t, Config{Name: "slow", RequestBodyTimeout: proxytest.ShortTimeout}, balancer.Policy{Kind: balancer.Maglev}, slowAnswer)

	for _, tc := range []struct{ name, head, part string }{
		{"content-length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", "0123456789"},
		{"chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", "a\r\n0123456789\r\n"},
	} {
		t.Run("stalled "+tc.name, func(t *testing.T) {
			c, br := dialRaw(t, p.addr)
			io.WriteString(c, tc.head+tc.part)
			stalled := time.Now()
			if code := readStatus(t, c, br); code != http.StatusRequestTimeout {
				t.Errorf("status %d, want 408", code)
			}
			proxytest.AssertWithin(t, "stalled body answered 408 and closed", proxytest.WaitClosed(t, c, br, stalled), proxytest.ShortTimeout, proxytest.ShortTimeout+proxytest.Slack)
		})
	}
	t.Run("stalled http2", func(t *testing.T) {
		tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, n, a string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, n, a)
		}}
		defer tr.CloseIdleConnections()
		pr, pw := io.Pipe()
		defer pw.Close()
		go pw.Write([]byte("0123456789")) // then nothing
		req, _ := http.NewRequest("POST", "http://"+p.addr+"/", pr)
		start := time.Now()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("status %d, want 408", resp.StatusCode)
		}
		proxytest.AssertWithin(t, "stalled HTTP/2 body answered 408", time.Since(start), proxytest.ShortTimeout, proxytest.ShortTimeout+proxytest.Slack)
	})
	t.Run("trickling past the bound", func(t *testing.T) {
		c, br := dialRaw(t, p.addr)
		const n = 12 // one byte every proxytest.ShortTimeout/3: 4 bounds in all
		start := time.Now()
		io.WriteString(c, fmt.Sprintf("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", n))
		for range n {
			time.Sleep(proxytest.ShortTimeout / 3) // the client's pace
			if _, err := io.WriteString(c, "x"); err != nil {
				t.Fatalf("the body was cut while it kept coming: %v", err)
			}
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != fmt.Sprint(n) {
			t.Errorf("got %d %q, want 200 %q", resp.StatusCode, b, fmt.Sprint(n))
		}
		t.Logf("a body of %d bytes over %v relayed whole", n, time.Since(start))
	})
	t.Run("endpoint answers after the bound", func(t *testing.T) {
		c, br := dialRaw(t, pSlow.addr)
		for i := range 2 { // the second on the same connection
			start := time.Now()
			io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
			if code := readStatus(t, c, br); code != 200 {
				t.Fatalf("request %d: status %d after %v, want 200", i, code, time.Since(start))
			}
			if took := time.Since(start); took < 3*proxytest.ShortTimeout {
				t.Fatalf("request %d answered after %v: the endpoint was not slow", i, took)
			}
		}
	})
}

// TestResponseHeaderTimeout: an endpoint that sends no response headers
// for ResponseHeaderTimeout gets the client a 504, over HTTP/1 and h2c
// upstreams, and a WebSocket handshake it does not answer too; headers in
// time followed by a body slower than the bound are relayed whole.
func TestResponseHeaderTimeout(t *testing.T) {
	silent := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	slowBody := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		for range 4 {
			w.(http.Flusher).Flush()
			time.Sleep(proxytest.ShortTimeout / 2)
			io.WriteString(w, "x")
		}
	})
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("upstreamH2=%v", h2), func(t *testing.T) {
			start := startHTTPBackend
			if h2 {
				start = startH2CBackend
			}
			p := startHTTPProxy(t, Config{ResponseHeaderTimeout: proxytest.ShortTimeout, UpstreamH2: h2}, balancer.Policy{Kind: balancer.Maglev}, start(t, silent))
			c, br := dialRaw(t, p.addr)
			sent := time.Now()
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			if code := readStatus(t, c, br); code != http.StatusGatewayTimeout {
				t.Errorf("status %d, want 504", code)
			}
			proxytest.AssertWithin(t, "504 for a silent endpoint", time.Since(sent), proxytest.ShortTimeout, proxytest.ShortTimeout+proxytest.Slack)

			ps := startHTTPProxy(t, Config{Name: "slowbody", ResponseHeaderTimeout: proxytest.ShortTimeout, UpstreamH2: h2}, balancer.Policy{Kind: balancer.Maglev}, start(t, slowBody))
			resp, err := http.Get("http://" + ps.addr + "/")
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "xxxx" || err != nil {
				t.Errorf("slow body: got %d %q %v, want 200 \"xxxx\"", resp.StatusCode, b, err)
			}
		})
	}
	t.Run("websocket handshake", func(t *testing.T) {
		hold := make(chan struct{})
		defer close(hold)
		mute := proxytest.StartServer(t, func(c *net.TCPConn) { <-hold }) // accepts, never answers
		p := startHTTPProxy(t, Config{ResponseHeaderTimeout: proxytest.ShortTimeout}, balancer.Policy{Kind: balancer.Maglev}, mute.Addr())
		d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
		start := time.Now()
		_, resp, err := d.Dial("ws://"+p.addr+"/ws", nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusGatewayTimeout {
			t.Fatalf("got %v, %v; want a 504", resp, err)
		}
		proxytest.AssertWithin(t, "504 for an unanswered WebSocket handshake", time.Since(start), proxytest.ShortTimeout, proxytest.ShortTimeout+proxytest.Slack)
	})
}

// TestWebSocketIdle: a WebSocket with frames going back and forth outlives
// the idle timeout many times over (and the handshake's deadline, which is
// cleared once the endpoint answered); once quiet, both sides get Close
// 1001 within the timeout and a check period.
func TestWebSocketIdle(t *testing.T) {
	p := startHTTPProxy(t, Config{ResponseHeaderTimeout: proxytest.ShortTimeout, WebSocket: WebSocketConfig{IdleTimeout: proxytest.ShortTimeout}},
		balancer.Policy{Kind: balancer.Maglev}, startWSEcho(t))
	c, _, err := websocket.DefaultDialer.Dial("ws://"+p.addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	for i := range 12 { // 4 timeouts' worth
		if i > 0 {
			time.Sleep(proxytest.ShortTimeout / 3) // the client's pace
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if err := c.WriteMessage(websocket.TextMessage, []byte("ping")); err != nil {
			t.Fatalf("message %d after %v: %v", i, time.Since(start), err)
		}
		if _, _, err := c.ReadMessage(); err != nil {
			t.Fatalf("message %d after %v: %v", i, time.Since(start), err)
		}
	}
	quiet := time.Now()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err = c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Fatalf("a quiet WebSocket: got %v, want Close 1001", err)
	}
	proxytest.AssertWithin(t, "quiet WebSocket got Close 1001", time.Since(quiet), proxytest.ShortTimeout, proxytest.ShortTimeout+proxytest.ShortTimeout/idleChecks+proxytest.Slack)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.reg.Wait(ctx, nil); err != nil {
		t.Fatalf("the idle session is still registered: %v", err)
	}
}
