package admin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// countingListener counts, independently of the Server, the connections it
// accepted whose socket is not closed yet, and the most there ever were.
type countingListener struct {
	net.Listener
	accepted chan struct{} // one value per Accept

	mu         sync.Mutex
	open, peak int
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.open++
	l.peak = max(l.peak, l.open)
	l.mu.Unlock()
	l.accepted <- struct{}{}
	return &countedConn{Conn: c, l: l}, nil
}

func (l *countingListener) counts() (open, peak int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open, l.peak
}

type countedConn struct {
	net.Conn
	l    *countingListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.open--
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// serve runs a Server of h with lim on loopback until the test ends.
func serve(t *testing.T, h http.Handler, lim Limits) (string, *countingListener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln, accepted: make(chan struct{}, 4096)}
	s := NewServer(cl, h, lim)
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String(), cl
}

// waitAccepted waits until the server has accepted n more connections.
func waitAccepted(t *testing.T, cl *countingListener, n int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for i := range n {
		select {
		case <-cl.accepted:
		case <-timeout:
			t.Fatalf("server accepted %d of %d connections", i, n)
		}
	}
}

func probeHandler() http.Handler { return Handler(Options{Ready: &Readiness{}}) }

// probe times one /healthz request on a new connection.
func probe(t *testing.T, addr string) time.Duration {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	start := time.Now()
	resp, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(b) != "ok\n" {
		t.Fatalf("probe: %d %q", resp.StatusCode, b)
	}
	return time.Since(start)
}

// closedAfter waits (at most bound) until the server closes c and returns
// when that was.
func closedAt(c net.Conn, bound time.Duration) (time.Time, error) {
	c.SetReadDeadline(time.Now().Add(bound))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return time.Time{}, fmt.Errorf("still open after %v", bound)
	}
	return time.Now(), nil // EOF or a reset: closed by the server
}

// TestIdleConnectionsCapped: 500 connections that never send a byte. The
// server never holds more than MaxConnections of them, a probe still gets
// its answer at once while they fill it, and those it keeps are closed at
// ReadHeaderTimeout.
func TestIdleConnectionsCapped(t *testing.T) {
	const (
		total   = 500
		maxConn = 64
		rht     = 1500 * time.Millisecond
	)
	addr, cl := serve(t, probeHandler(), Limits{MaxConnections: maxConn, ReadHeaderTimeout: rht,
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second})
	conns := make([]net.Conn, total)
	dialed := make([]time.Time, total)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i], dialed[i] = c, time.Now()
	}
	waitAccepted(t, cl, total)
	lastAccept := time.Now()

	// The cap is full of idle connections (and its reserved slot free):
	// a probe is answered without waiting for any of them to time out.
	took := probe(t, addr)
	t.Logf("probe answered in %v with %d idle connections open", took, maxConn-1)
	if took > 500*time.Millisecond {
		t.Errorf("probe took %v while the cap was full of idle connections, want < 500ms (ReadHeaderTimeout %v)", took, rht)
	}

	closed := make([]time.Time, total)
	var wg sync.WaitGroup
	errs := make(chan error, total)
	for i, c := range conns {
		wg.Go(func() {
			at, err := closedAt(c, rht+5*time.Second)
			if err != nil {
				errs <- fmt.Errorf("connection %d: %w", i, err)
			}
			closed[i] = at
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var evicted, timedOut int
	var latest time.Time
	for i := range conns {
		if closed[i].IsZero() {
			continue
		}
		if d := closed[i].Sub(dialed[i]); d >= rht-50*time.Millisecond {
			timedOut++
		} else {
			evicted++
		}
		if closed[i].After(latest) {
			latest = closed[i]
		}
	}
	open, peak := cl.counts()
	t.Logf("%d evicted to make room, %d closed at ReadHeaderTimeout; last close %v after the last accept; peak %d open",
		evicted, timedOut, latest.Sub(lastAccept), peak)
	if peak > maxConn {
		t.Errorf("peak %d accepted connections open at once, cap %d", peak, maxConn)
	}
	// The server keeps MaxConnections-1 idle ones; the probe took the
	// reserved slot and evicted one more.
	if want := maxConn - 2; timedOut != want {
		t.Errorf("%d connections closed at ReadHeaderTimeout, want %d (the cap less the reserved slot and the probe's)", timedOut, want)
	}
	if d := latest.Sub(lastAccept); d > rht+time.Second {
		t.Errorf("last idle connection closed %v after the last accept, want within ReadHeaderTimeout %v + 1s", d, rht)
	}
	if open != 0 {
		t.Errorf("%d connections still open on the server", open)
	}
}

// TestKeepAliveIdleTimeout: connections idle after a request are closed at
// IdleTimeout, and the cap holds while they come.
func TestKeepAliveIdleTimeout(t *testing.T) {
	const (
		total   = 100
		maxConn = 16
		idle    = 600 * time.Millisecond
	)
	addr, cl := serve(t, probeHandler(), Limits{MaxConnections: maxConn, ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: idle})
	conns := make([]net.Conn, total)
	answered := make([]time.Time, total)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		conns[i], answered[i] = c, time.Now()
	}
	var wg sync.WaitGroup
	idleFor := make([]time.Duration, total)
	for i, c := range conns {
		wg.Go(func() {
			at, err := closedAt(c, idle+5*time.Second)
			if err != nil {
				t.Errorf("connection %d: %v", i, err)
				return
			}
			idleFor[i] = at.Sub(answered[i])
		})
	}
	wg.Wait()
	var timedOut int
	var longest time.Duration
	for _, d := range idleFor {
		if d >= idle-50*time.Millisecond {
			timedOut++
		}
		longest = max(longest, d)
	}
	_, peak := cl.counts()
	t.Logf("%d of %d closed at IdleTimeout %v (longest idle %v), the others evicted; peak %d open", timedOut, total, idle, longest, peak)
	if peak > maxConn {
		t.Errorf("peak %d open, cap %d", peak, maxConn)
	}
	if timedOut != maxConn-1 {
		t.Errorf("%d connections lived to IdleTimeout, want %d (the cap less the reserved slot)", timedOut, maxConn-1)
	}
	if longest > idle+time.Second {
		t.Errorf("a connection stayed idle %v, want at most IdleTimeout %v + 1s", longest, idle)
	}
}

// TestBusyConnectionsMakeNewcomersWait: connections inside a handler are
// never evicted; a newcomer waits in the backlog until one is done and
// idle, which is then closed for it.
func TestBusyConnectionsMakeNewcomersWait(t *testing.T) {
	const maxConn = 4
	entered := make(chan struct{}, maxConn+1)
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered <- struct{}{}
			<-release
		}
		io.WriteString(w, "done")
	})
	addr, cl := serve(t, h, Limits{MaxConnections: maxConn, ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 5 * time.Second, WriteTimeout: 10 * time.Second, IdleTimeout: 5 * time.Second})
	type result struct {
		body string
		at   time.Time
		err  error
	}
	// The slow requests' connections stay open (keep-alive) after their
	// answer: turning idle with every slot taken, they are closed, making
	// room for the waiting one, which none of them may evict.
	var transports []*http.Transport
	t.Cleanup(func() {
		for _, tr := range transports {
			tr.CloseIdleConnections()
		}
	})
	get := func(path string) chan result {
		ch := make(chan result, 1)
		tr := &http.Transport{}
		transports = append(transports, tr)
		go func() {
			c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			resp, err := c.Get("http://" + addr + path)
			if err != nil {
				ch <- result{err: err}
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			ch <- result{string(b), time.Now(), err}
		}()
		return ch
	}
	var slow []chan result
	for i := range maxConn {
		slow = append(slow, get("/slow"))
		select {
		case <-entered:
		case r := <-slow[i]:
			t.Fatalf("slow request %d: %+v %v", i, r, r.err)
		case <-time.After(5 * time.Second):
			t.Fatalf("slow request %d not served", i)
		}
	}
	fast := get("/fast")
	select {
	case r := <-fast:
		t.Fatalf("a request was served while %d connections were busy: %+v", maxConn, r)
	case <-time.After(300 * time.Millisecond):
	}
	if _, peak := cl.counts(); peak != maxConn {
		t.Errorf("peak %d open, want %d (the newcomer waits in the backlog)", peak, maxConn)
	}
	released := time.Now()
	close(release)
	r := <-fast
	if r.err != nil || r.body != "done" {
		t.Fatalf("waiting request: %+v", r)
	}
	t.Logf("waiting request served %v after a busy connection finished", r.at.Sub(released))
	if d := r.at.Sub(released); d > time.Second {
		t.Errorf("waiting request served %v after a slot freed, want < 1s", d)
	}
	for _, ch := range slow {
		if r := <-ch; r.err != nil {
			t.Error(r.err)
		}
	}
	if _, peak := cl.counts(); peak > maxConn {
		t.Errorf("peak %d open, cap %d", peak, maxConn)
	}
}

// TestSlowHeadersTimedOut: a client that sends its headers a
// byte at a time is closed at ReadHeaderTimeout.
func TestSlowHeadersTimedOut(t *testing.T) {
	const rht = 500 * time.Millisecond
	addr, _ := serve(t, probeHandler(), Limits{MaxConnections: 8, ReadHeaderTimeout: rht,
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	req := "GET /healthz HTTP/1.1\r\nHost: admin\r\nX-Slow: " + strings.Repeat("a", 100)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var werr error
	for i := 0; i < len(req) && werr == nil && time.Since(start) < 5*time.Second; i++ {
		<-tick.C
		_, werr = c.Write([]byte{req[i]})
		if werr == nil {
			// A reset or EOF means the server gave up on us.
			c.SetReadDeadline(time.Now().Add(time.Millisecond))
			if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
				werr = err
			}
		}
	}
	took := time.Since(start)
	t.Logf("slow headers cut after %v (ReadHeaderTimeout %v)", took, rht)
	if werr == nil {
		t.Fatal("a client sending headers a byte every 50ms was never cut off")
	}
	if took < rht-50*time.Millisecond || took > rht+time.Second {
		t.Errorf("cut after %v, want ReadHeaderTimeout %v (+ 1s)", took, rht)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestWriteTimeout: a response to a client that does not read fails at
// WriteTimeout, and the connection is closed.
func TestWriteTimeout(t *testing.T) {
	const wt = 400 * time.Millisecond
	type outcome struct {
		written int
		took    time.Duration
		err     error
	}
	done := make(chan outcome, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		start := time.Now()
		chunk := make([]byte, 1<<20)
		var o outcome
		for range 256 { // 256 MiB: far more than the socket buffers
			n, err := w.Write(chunk)
			o.written += n
			if err != nil {
				o.err = err
				break
			}
		}
		o.took = time.Since(start)
		done <- o
	})
	addr, _ := serve(t, h, Limits{MaxConnections: 8, ReadHeaderTimeout: time.Second,
		ReadTimeout: time.Second, WriteTimeout: wt, IdleTimeout: 5 * time.Second})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /big HTTP/1.1\r\nHost: admin\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	var o outcome
	select {
	case o = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("handler still writing after 10s")
	}
	t.Logf("write failed after %v and %d MiB: %v", o.took, o.written>>20, o.err)
	if o.err == nil {
		t.Fatalf("wrote %d MiB to a client that reads nothing without an error", o.written>>20)
	}
	if o.took < wt-50*time.Millisecond || o.took > wt+time.Second {
		t.Errorf("write failed after %v, want WriteTimeout %v (+ 1s)", o.took, wt)
	}
	if _, err := closedAt(c, 5*time.Second); err != nil {
		t.Errorf("connection after the write timeout: %v", err)
	}
}

// TestProfileOutlivesWriteTimeout: a timed profile longer than the write
// timeout still gets its answer (pprof extends its write deadline).
func TestProfileOutlivesWriteTimeout(t *testing.T) {
	const wt = 300 * time.Millisecond
	addr, _ := serve(t, DebugHandler(DebugOptions{Pprof: true}), Limits{MaxConnections: 8,
		ReadHeaderTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: wt, IdleTimeout: time.Second})
	start := time.Now()
	resp, err := http.Get("http://" + addr + "/debug/pprof/profile?seconds=1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	t.Logf("1s CPU profile: %d, %d bytes in %v with WriteTimeout %v", resp.StatusCode, len(b), took, wt)
	if err != nil || resp.StatusCode != http.StatusOK || len(b) == 0 {
		t.Errorf("1s profile with write timeout %v: %d, %d bytes, %v", wt, resp.StatusCode, len(b), err)
	}
	if took < time.Second {
		t.Errorf("profile answered after %v, before its 1s", took)
	}
}
