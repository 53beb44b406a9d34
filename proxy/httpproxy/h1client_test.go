package httpproxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawH1Server accepts connections on loopback and runs serve on each; it
// counts the connections.
type rawH1Server struct {
	ln    net.Listener
	conns atomic.Int64
}

func startRawH1(t *testing.T, serve func(c net.Conn, br *bufio.Reader)) *rawH1Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawH1Server{ln: ln}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			go func() {
				defer c.Close()
				serve(c, bufio.NewReader(c))
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return s
}

// client returns an h1Client for s, closed at the test's end, and the
// count of its dials.
func (s *rawH1Server) client(t *testing.T, idle time.Duration) (*h1Client, *atomic.Int64) {
	dials := new(atomic.Int64)
	cl := &h1Client{
		dial: func(ctx context.Context) (net.Conn, error) {
			dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, "tcp", s.ln.Addr().String())
		},
		maxIdle: 4, idleTimeout: idle,
	}
	t.Cleanup(func() { cl.closeIdle(true) })
	return cl, dials
}

func h1Get(t *testing.T, cl *h1Client, ctx context.Context, method string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, "http://backend.test/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	return cl.roundTrip(req)
}

// answer reads requests from br and answers each with resp until the
// connection ends or answers returns false.
func answer(c net.Conn, br *bufio.Reader, resp string, more func(n int) bool) {
	for n := 1; ; n++ {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		if _, err := io.WriteString(c, resp); err != nil || !more(n) {
			return
		}
	}
}

const okResp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

func TestH1ClientReusesConnection(t *testing.T) {
	s := startRawH1(t, func(c net.Conn, br *bufio.Reader) { answer(c, br, okResp, func(int) bool { return true }) })
	cl, dials := s.client(t, time.Minute)
	for i := range 20 {
		resp, err := h1Get(t, cl, context.Background(), http.MethodGet)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(b) != "ok" {
			t.Fatalf("request %d: body %q, %v", i, b, err)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("dials for 20 sequential requests: %d, want 1", n)
	}
}

// TestH1ClientStaleConnection: the endpoint closes a keep-alive connection
// after one response (as at its idle timeout); the next request finds it
// closed before any byte of its answer and goes once more on a new one.
func TestH1ClientStaleConnection(t *testing.T) {
	closed := make(chan struct{}, 4)
	s := startRawH1(t, func(c net.Conn, br *bufio.Reader) {
		answer(c, br, okResp, func(int) bool { return false })
		c.Close()
		closed <- struct{}{}
	})
	cl, dials := s.client(t, time.Minute)
	for i := range 3 {
		resp, err := h1Get(t, cl, context.Background(), http.MethodGet)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		select { // the endpoint closed the connection: the next request meets it closed
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatal("the endpoint did not close its connection")
		}
	}
	if n := dials.Load(); n != 3 {
		t.Errorf("dials: %d, want 3 (each request after the first found its idle connection closed)", n)
	}
}

// TestH1ClientCancel: a request whose context is cancelled while the
// endpoint says nothing returns at once with the cancellation's cause, and
// its connection is closed.
func TestH1ClientCancel(t *testing.T) {
	gone := make(chan struct{})
	s := startRawH1(t, func(c net.Conn, br *bufio.Reader) {
		http.ReadRequest(br)
		io.Copy(io.Discard, br) // until the client closes
		close(gone)
	})
	cl, _ := s.client(t, time.Minute)
	cause := errors.New("response header timeout (test)")
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(50*time.Millisecond, func() { cancel(cause) })
	start := time.Now()
	_, err := h1Get(t, cl, ctx, http.MethodGet)
	if !errors.Is(err, cause) {
		t.Fatalf("got %v, want the cause", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("returned %v after the request, want about the 50ms to its cancellation", d)
	}
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("the connection of the cancelled request stayed open")
	}
}

// TestH1ClientNoBodyAndInformational: HEAD and 204 answers free their
// connection without a read of the body, and a 103 before the answer is
// passed over.
func TestH1ClientNoBodyAndInformational(t *testing.T) {
	s := startRawH1(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			var resp string
			switch req.Method {
			case http.MethodHead:
				resp = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
			case http.MethodDelete:
				resp = "HTTP/1.1 204 No Content\r\n\r\n"
			default:
				resp = "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + okResp
			}
			if _, err := io.WriteString(c, resp); err != nil {
				return
			}
		}
	})
	cl, dials := s.client(t, time.Minute)
	for _, m := range []string{http.MethodHead, http.MethodDelete, http.MethodGet, http.MethodHead} {
		resp, err := h1Get(t, cl, context.Background(), m)
		if err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		want := map[string]int{http.MethodHead: 200, http.MethodDelete: 204, http.MethodGet: 200}[m]
		if resp.StatusCode != want {
			t.Errorf("%s: status %d, want %d", m, resp.StatusCode, want)
		}
		if m == http.MethodGet {
			if b, _ := io.ReadAll(resp.Body); string(b) != "ok" {
				t.Errorf("GET after a 103: body %q, want ok", b)
			}
		}
		resp.Body.Close() // HEAD and 204: closed unread
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("dials: %d, want 1", n)
	}
}

// TestH1ClientUnreadBodyCloses: a body closed before its end leaves the
// connection unusable: it is closed, and the next request dials.
func TestH1ClientUnreadBodyCloses(t *testing.T) {
	big := "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n" + strings.Repeat("b", 1<<20)
	s := startRawH1(t, func(c net.Conn, br *bufio.Reader) { answer(c, br, big, func(int) bool { return true }) })
	cl, dials := s.client(t, time.Minute)
	for range 2 {
		resp, err := h1Get(t, cl, context.Background(), http.MethodGet)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadFull(resp.Body, make([]byte, 10))
		resp.Body.Close()
	}
	if n := dials.Load(); n != 2 {
		t.Errorf("dials: %d, want 2 (a body closed half read closes its connection)", n)
	}
}

// TestH1ClientIdleTimeout: an idle connection is closed after the idle
// timeout.
func TestH1ClientIdleTimeout(t *testing.T) {
	gone := make(chan struct{})
	s := startRawH1(t, func(c net.Conn, br *bufio.Reader) {
		answer(c, br, okResp, func(int) bool { return true })
		close(gone) // the client closed the connection
	})
	cl, _ := s.client(t, 50*time.Millisecond)
	resp, err := h1Get(t, cl, context.Background(), http.MethodGet)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("the idle connection was not closed after its 50ms idle timeout")
	}
	cl.mu.Lock()
	n := len(cl.idle)
	cl.mu.Unlock()
	if n != 0 {
		t.Errorf("idle connections after the timeout: %d, want 0", n)
	}
}

// TestH1ClientHeadTooLarge: an endpoint that sends a response head without
// end (one endless header line) ends its request with errHeadTooLarge
// once the bound is read, and the connection is closed.
func TestH1ClientHeadTooLarge(t *testing.T) {
	gone := make(chan int64, 1)
	s := startRawH1(t, func(c net.Conn, br *bufio.Reader) {
		http.ReadRequest(br)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Endless: ")
		line := strings.Repeat("x", 64<<10)
		var sent int64
		for sent < 64<<20 { // bounded: 64 MiB at most
			n, err := io.WriteString(c, line)
			sent += int64(n)
			if err != nil {
				break
			}
		}
		gone <- sent
	})
	cl, _ := s.client(t, time.Minute)
	_, err := h1Get(t, cl, context.Background(), http.MethodGet)
	if !errors.Is(err, errHeadTooLarge) {
		t.Fatalf("got %v, want errHeadTooLarge", err)
	}
	select {
	case sent := <-gone:
		if sent >= 64<<20 {
			t.Errorf("the endpoint wrote all of its %d bytes: the connection was not closed at the bound", sent)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the endpoint could still write 10s after the bound was passed")
	}
}

// TestH1ClientMaxIdle: more connections ending their requests than the
// idle list holds: the list keeps maxIdle, the others are closed.
func TestH1ClientMaxIdle(t *testing.T) {
	const n = 7 // the test client keeps 4
	closedByClient := make(chan struct{}, n)
	s := startRawH1(t, func(c net.Conn, br *bufio.Reader) {
		answer(c, br, okResp, func(int) bool { return true })
		closedByClient <- struct{}{}
	})
	cl, dials := s.client(t, time.Minute)
	// n requests at once, each on its own connection: their responses
	// are held open (headers read, bodies not yet) until all have come.
	resps := make([]*http.Response, n)
	for i := range resps {
		resp, err := h1Get(t, cl, context.Background(), http.MethodGet)
		if err != nil {
			t.Fatal(err)
		}
		resps[i] = resp
	}
	for _, resp := range resps {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if d := dials.Load(); d != n {
		t.Fatalf("dials: %d, want %d", d, n)
	}
	for range n - cl.maxIdle {
		select {
		case <-closedByClient:
		case <-time.After(5 * time.Second):
			t.Fatalf("fewer than %d connections closed past the idle list's %d", n-cl.maxIdle, cl.maxIdle)
		}
	}
	cl.mu.Lock()
	idle := len(cl.idle)
	cl.mu.Unlock()
	if idle != cl.maxIdle {
		t.Errorf("idle connections: %d, want %d", idle, cl.maxIdle)
	}
}
