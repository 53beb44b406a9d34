package h2relay

import (
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

	"golang.org/x/net/http2"
)

// markDrains makes srv report each drain that marked its endpoint on the
// returned channel. Set before the server is used.
func markDrains(srv *Server) <-chan string {
	ch := make(chan string, 8)
	srv.pool.drainMarked = func(addr string) { ch <- addr }
	return ch
}

// TestRoundTripAcrossDrain: DrainEndpoint while a round trip is in flight:
// it completes; a new one is refused (retryable) while the drain runs;
// once the drain is over the endpoint is dialled afresh.
func TestRoundTripAcrossDrain(t *testing.T) {
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	e := startH2CEndpoint(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered <- struct{}{}
			<-release
		}
		io.WriteString(w, "done "+r.URL.Path)
	}))
	srv := newRoundTripper(t, Config{})
	marked := markDrains(srv)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	inflight := fetch(func() (*http.Response, error) {
		return srv.RoundTrip(newRequest(t, ctx, "GET", e.addr, "/slow", nil))
	})
	recv(t, entered, "the request at the endpoint")
	drained := make(chan struct{})
	go func() { srv.DrainEndpoint(ctx, e.addr, nil); close(drained) }()
	recv(t, marked, "the drain to start")
	_, err := srv.RoundTrip(newRequest(t, ctx, "GET", e.addr, "/new", nil))
	if !IsRetryable(err) {
		t.Fatalf("round trip during the drain: %v, want retryable", err)
	}
	close(release)
	if r := recv(t, inflight, "the in-flight round trip"); r.err != nil || r.body != "done /slow" {
		t.Fatalf("in-flight round trip across the drain: %q, %v", r.body, r.err)
	}
	recv(t, drained, "DrainEndpoint to return")
	resp, err := srv.RoundTrip(newRequest(t, ctx, "GET", e.addr, "/after", nil))
	if err != nil {
		t.Fatalf("round trip after the drain: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "done /after" || e.conns.Load() != 2 {
		t.Fatalf("after the drain: %q on %d connections, want a second one", b, e.conns.Load())
	}
}

// TestRoundTripDrainDeadline: a round trip still running when the drain's
// context ends fails (not retryable: the endpoint had it), and the drain
// returns.
func TestRoundTripDrainDeadline(t *testing.T) {
	entered := make(chan struct{}, 1)
	e := startH2CEndpoint(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-r.Context().Done()
	}))
	srv := newRoundTripper(t, Config{})
	marked := markDrains(srv)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rt := fetch(func() (*http.Response, error) {
		return srv.RoundTrip(newRequest(t, ctx, "GET", e.addr, "/", nil))
	})
	recv(t, entered, "the request at the endpoint")
	dctx, dcancel := context.WithCancel(ctx)
	drained := make(chan struct{})
	go func() { srv.DrainEndpoint(dctx, e.addr, nil); close(drained) }()
	recv(t, marked, "the drain to start")
	dcancel() // the drain's deadline
	err := recv(t, rt, "the round trip to fail").err
	var ue *UpstreamError
	if !errors.As(err, &ue) || IsRetryable(err) || !strings.Contains(ue.Reason, "drained") {
		t.Fatalf("round trip past the drain deadline: %v, want a non-retryable drained error", err)
	}
	recv(t, drained, "DrainEndpoint to return")
}

// TestDrainDuringDial: DrainEndpoint(A) while the only thing A has is a
// dial under way. The connection that dial makes joins no pool: it gets
// GOAWAY and no stream, and closes; the relayed stream waiting for it is
// served by B; DrainEndpoint returns once that connection closed.
func TestDrainDuringDial(t *testing.T) {
	a := startRawEndpoint(t, nil)
	b := startH2CEndpoint(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "from B")
	}))
	dialing := make(chan struct{})
	var dialOnce sync.Once
	marked := make(chan struct{})
	var markOnce sync.Once
	cfg := Config{
		Router: &testRouter{addrs: []string{a.addr, b.addr}},
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr == a.addr {
				dialOnce.Do(func() { close(dialing) })
				select {
				case <-marked: // the drain marked A: connect now
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
		ConnectTimeout: 10 * time.Second,
	}
	p := startRelay(t, cfg)
	p.srv.pool.drainMarked = func(string) { markOnce.Do(func() { close(marked) }) }

	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: dialPlain}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	relayed := fetch(func() (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+p.addr+"/", nil)
		return tr.RoundTrip(req)
	})
	<-dialing
	drained := make(chan struct{})
	go func() { p.srv.DrainEndpoint(ctx, a.addr, nil); close(drained) }()
	if r := recv(t, relayed, "the relayed request"); r.err != nil || r.status != 200 || r.body != "from B" {
		t.Fatalf("relayed request: %d %q, %v; want 200 from B", r.status, r.body, r.err)
	}
	// A saw the connection, its SETTINGS and a GOAWAY, never a request,
	// and then the close.
	a.expectEvents(t, []string{"HEADERS", "DATA"}, "conn", "SETTINGS", "GOAWAY", "eof")
	recv(t, drained, "DrainEndpoint to return")
	p.srv.pool.mu.Lock()
	_, left := p.srv.pool.eps[a.addr]
	p.srv.pool.mu.Unlock()
	if left {
		t.Error("the drained endpoint is still in the pool")
	}
	// The drain is over: A is dialled again (its raw endpoint never
	// answers, so the round trip ends with its context).
	rctx, rcancel := context.WithCancel(ctx)
	rt := fetch(func() (*http.Response, error) {
		return p.srv.RoundTrip(newRequest(t, rctx, "GET", a.addr, "/", nil))
	})
	a.expectEvents(t, nil, "conn", "HEADERS")
	rcancel()
	if err := recv(t, rt, "the round trip to A").err; !errors.Is(err, context.Canceled) {
		t.Fatalf("round trip to A after the drain: %v", err)
	}
}

// TestRoundTripDrainDuringDial: a round trip waiting for the dial that a
// drain dooms gets a retryable error, and the dial's connection no
// stream.
func TestRoundTripDrainDuringDial(t *testing.T) {
	a := startRawEndpoint(t, nil)
	dialing := make(chan struct{})
	var dialOnce sync.Once
	marked := make(chan string, 8)
	srv := newRoundTripper(t, Config{
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dialOnce.Do(func() { close(dialing) })
			select {
			case <-marked:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
		ConnectTimeout: 10 * time.Second,
	})
	srv.pool.drainMarked = func(addr string) { marked <- addr }
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rt := fetch(func() (*http.Response, error) {
		return srv.RoundTrip(newRequest(t, ctx, "GET", a.addr, "/", nil))
	})
	<-dialing
	srv.DrainEndpoint(ctx, a.addr, nil) // returns once the late connection closed
	if err := recv(t, rt, "the round trip").err; !IsRetryable(err) {
		t.Fatalf("round trip whose dial a drain doomed: %v, want retryable", err)
	}
	a.expectEvents(t, []string{"HEADERS", "DATA"}, "conn", "SETTINGS", "GOAWAY", "eof")
}

// TestRoundTripSharesRelayConnection: HTTP/2 client streams relayed to an
// endpoint and round trips to it, concurrently, share one upstream
// connection.
func TestRoundTripSharesRelayConnection(t *testing.T) {
	e := startH2CEndpoint(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok "+r.URL.Path)
	}))
	p := startRelay(t, Config{Router: &testRouter{addrs: []string{e.addr}}})
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: dialPlain}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				path := fmt.Sprintf("/%d/%d", w, i)
				var resp *http.Response
				var err error
				if w%2 == 0 {
					req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+p.addr+path, strings.NewReader("relayed"))
					resp, err = tr.RoundTrip(req)
				} else {
					resp, err = p.srv.RoundTrip(newRequest(t, ctx, "POST", e.addr, path, strings.NewReader("round trip")))
				}
				if err != nil {
					errs <- fmt.Errorf("%s: %w", path, err)
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(body) != "ok "+path {
					errs <- fmt.Errorf("%s: %q, %v", path, body, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := e.conns.Load(); n != 1 {
		t.Errorf("the endpoint saw %d connections, want 1", n)
	}
}

// shutdownWaiting reports whether a Shutdown waits for round trips.
func shutdownWaiting(srv *Server) bool {
	srv.rtMu.Lock()
	defer srv.rtMu.Unlock()
	return srv.rtIdle != nil
}

// TestShutdownWaitsForRoundTrips: Shutdown lets a round trip in flight
// finish before it closes the pool; one still running at Shutdown's
// deadline fails, and Shutdown says so.
func TestShutdownWaitsForRoundTrips(t *testing.T) {
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	e := startH2CEndpoint(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-release:
			io.WriteString(w, "finished")
		case <-r.Context().Done():
		}
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, cut := range []bool{false, true} {
		srv := newRoundTripper(t, Config{})
		rt := fetch(func() (*http.Response, error) {
			return srv.RoundTrip(newRequest(t, ctx, "GET", e.addr, "/", nil))
		})
		recv(t, entered, "the request at the endpoint")
		sctx, scancel := context.WithCancel(ctx)
		shut := make(chan error, 1)
		go func() { shut <- srv.Shutdown(sctx) }()
		eventually(t, 5*time.Second, func() bool { return shutdownWaiting(srv) }, "Shutdown waiting for the round trip")
		if cut {
			scancel()
			if err := recv(t, shut, "Shutdown"); !errors.Is(err, context.Canceled) {
				t.Errorf("Shutdown past its deadline: %v", err)
			}
			if r := recv(t, rt, "the round trip"); r.err == nil {
				t.Errorf("round trip cut by Shutdown: %d %q, want an error", r.status, r.body)
			}
		} else {
			release <- struct{}{}
			if r := recv(t, rt, "the round trip"); r.err != nil || r.body != "finished" {
				t.Errorf("round trip across Shutdown: %q, %v", r.body, r.err)
			}
			if err := recv(t, shut, "Shutdown"); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		}
		scancel()
		if _, err := srv.RoundTrip(newRequest(t, ctx, "GET", e.addr, "/", nil)); err == nil || IsRetryable(err) {
			t.Errorf("round trip after Shutdown: %v, want a non-retryable error", err)
		}
	}
}

// TestRoundTripPacedDrain: a drain's plan ends a round trip whose response
// is under way at its turn with an UpstreamError that says so (Drained),
// carrying the plan's pushback for a gRPC call and none for another
// request.
func TestRoundTripPacedDrain(t *testing.T) {
	e := startH2CEndpoint(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done() // a stream that goes on until it is ended
	}))
	srv := newRoundTripper(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var bodies []io.ReadCloser
	for _, ct := range []string{"application/grpc", "text/plain"} {
		pr, pw := io.Pipe()
		defer pw.Close()
		req := newRequest(t, ctx, "POST", e.addr, "/stream", pr)
		req.Header.Set("Content-Type", ct)
		resp, err := srv.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		bodies = append(bodies, resp.Body)
	}
	drained := make(chan struct{})
	go func() { srv.DrainEndpoint(ctx, e.addr, pushbackPlan(1234*time.Millisecond)); close(drained) }()
	for i, b := range bodies {
		_, err := io.ReadAll(b)
		var ue *UpstreamError
		if !errors.As(err, &ue) || !ue.Drained {
			t.Fatalf("round trip %d: %v, want an UpstreamError with Drained", i, err)
		}
		if want := []time.Duration{1234 * time.Millisecond, 0}[i]; ue.Pushback != want {
			t.Errorf("round trip %d: pushback %v, want %v", i, ue.Pushback, want)
		}
	}
	recv(t, drained, "DrainEndpoint to return")
}
