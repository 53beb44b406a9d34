package h2relay

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/longhaul-proxy/longhaul/discovery"
	"github.com/longhaul-proxy/longhaul/drain"
)

// The relay is a drain.EndpointDrainer: its StreamPlan is drain's.
var _ drain.EndpointDrainer = (*Server)(nil)

// noSessions is a drain.Lister with no session: only pools drain.
type noSessions struct{}

func (noSessions) Endpoints() []string             { return nil }
func (noSessions) Sessions(string) []drain.Session { return nil }
func (noSessions) Wait(ctx context.Context) error  { return nil }

// echoStream is a long-lived gRPC Echo call through the relay made with
// x/net's client, which shows the trailers as they came (grpc-go's client
// keeps grpc-retry-pushback-ms to itself).
type echoStream struct {
	body  *io.PipeWriter
	resp  *http.Response
	ended time.Time
	err   error // reading the body failed (a reset)
}

// grpcFrame is a gRPC message frame of msg.
func grpcFrame(t testing.TB, msg proto.Message) []byte {
	t.Helper()
	m, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 5, 5+len(m))
	binary.BigEndian.PutUint32(out[1:], uint32(len(m)))
	return append(out, m...)
}

// openEcho opens an Echo call and waits for the echo of its first message,
// so that its response header went out.
func openEcho(t *testing.T, ctx context.Context, tr *http2.Transport, relay string) *echoStream {
	t.Helper()
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+relay+"/h2relay.test.Test/Echo", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("content-type", "application/grpc")
	req.Header.Set("te", "trailers")
	frame := grpcFrame(t, wrapperspb.Bytes([]byte("hello")))
	go pw.Write(frame) // the pipe returns once the transport read it
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("open Echo: %v", err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, len(frame))); err != nil {
		t.Fatalf("read the echo: %v", err)
	}
	return &echoStream{body: pw, resp: resp}
}

// await reads e's response to its end and records when it came.
func (e *echoStream) await() {
	_, e.err = io.Copy(io.Discard, e.resp.Body)
	e.ended = time.Now()
}

// check returns why e did not end as a paced drain ends a gRPC call:
// UNAVAILABLE with a non-negative integer grpc-retry-pushback-ms.
func (e *echoStream) check() error {
	if e.err != nil {
		return fmt.Errorf("body: %w", e.err)
	}
	if s := e.resp.Trailer.Get("grpc-status"); s != "14" {
		return fmt.Errorf("grpc-status %q, want 14 (UNAVAILABLE)", s)
	}
	pb := e.resp.Trailer.Get("grpc-retry-pushback-ms")
	if n, err := strconv.ParseUint(pb, 10, 63); err != nil {
		return fmt.Errorf("grpc-retry-pushback-ms %q: %w", pb, err)
	} else if n > uint64(drain.MaxStreamGrace/time.Millisecond) {
		return fmt.Errorf("grpc-retry-pushback-ms %d, more than the grace", n)
	}
	return nil
}

// maxShare returns the largest number of sorted times within any span d.
func maxShare(sorted []time.Time, d time.Duration) int {
	best, j := 0, 0
	for i := range sorted {
		for sorted[i].Sub(sorted[j]) >= d {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// echoStreams starts two endpoints, a (the only one routed to) and b, and
// a relay, and opens n Echo calls to a through the relay; the calls' bodies
// close when the test ends.
func echoStreams(t *testing.T, ctx context.Context, n int) (a, b *backend, r *testRouter, p *testRelay, es []*echoStream) {
	t.Helper()
	a, b = startBackend(t), startBackend(t)
	r = &testRouter{addrs: []string{a.addr}}
	p = startRelay(t, Config{Router: r})
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: dialPlain}
	t.Cleanup(tr.CloseIdleConnections)
	es = make([]*echoStream, n)
	for i := range es {
		es[i] = openEcho(t, ctx, tr, p.addr)
		t.Cleanup(func() { es[i].body.Close() })
	}
	return a, b, r, p, es
}

// pacedDrain runs a drain.Controller over the relay and makes a leave: it
// returns when the drain started and a function ending Run, which returns
// once Run has.
func pacedDrain(t *testing.T, srv *Server, leaving, staying string, timeout, window time.Duration) (started time.Time, stop func()) {
	t.Helper()
	c := &drain.Controller{Timeout: timeout, Window: window, Lister: noSessions{}, Pools: srv}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	snap, err := discovery.NewSnapshot("svc", []discovery.Endpoint{
		{Address: leaving, Serving: true, Terminating: true},
		{Address: staying, Ready: true, Serving: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	started = time.Now()
	c.Update(snap)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := recv(t, done, "Run to return after its context ended"); err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return started, stop
}

// TestPacedStreamEnds: 40 long-lived gRPC streams on an endpoint drained
// with a 2s window end spread over it, each with UNAVAILABLE and a retry
// pushback, all by the deadline; unary calls in flight when the drain
// starts complete, and calls made during it go to the other endpoint.
func TestPacedStreamEnds(t *testing.T) {
	const (
		streams = 40
		unary   = 20
		timeout = 3 * time.Second
		window  = 2 * time.Second
		grace   = window / 4
	)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, b, r, p, es := echoStreams(t, ctx, streams)
	cc := dialGRPC(t, p.addr)
	inflight := make(chan error, unary)
	for range unary {
		go func() { inflight <- wait(ctx, cc, "300ms") }()
	}
	eventually(t, 5*time.Second, func() bool { return a.calls.Load() == unary }, "the unary calls to reach the endpoint")

	r.mu.Lock()
	r.addrs = append(r.addrs, b.addr)
	r.mu.Unlock()
	r.exclude(a.addr)
	started, _ := pacedDrain(t, p.srv, a.addr, b.addr, timeout, window)
	var wg sync.WaitGroup
	for _, e := range es {
		wg.Add(1)
		go func() { defer wg.Done(); e.await() }()
	}
	during := make(chan error, unary)
	for i := range unary {
		go func() {
			time.Sleep(time.Duration(i) * window / unary) // spread over the window
			during <- wait(ctx, cc, "10ms")
		}()
	}
	failed := 0
	for range unary {
		if err := <-inflight; err != nil {
			failed++
			t.Errorf("unary call in flight at the drain: %v", err)
		}
		if err := <-during; err != nil {
			failed++
			t.Errorf("unary call during the drain: %v", err)
		}
	}
	wg.Wait()

	var ends []time.Time
	for i, e := range es {
		if err := e.check(); err != nil {
			t.Errorf("stream %d: %v", i, err)
		}
		if e.ended.Before(started.Add(grace)) {
			t.Errorf("stream %d ended %v after the drain started, within the %v grace", i, e.ended.Sub(started), grace)
		}
		if e.ended.After(started.Add(timeout)) {
			t.Errorf("stream %d ended %v after the drain started, past the %v deadline", i, e.ended.Sub(started), timeout)
		}
		ends = append(ends, e.ended)
	}
	slices.SortFunc(ends, time.Time.Compare)
	most := maxShare(ends, 100*time.Millisecond)
	t.Logf("%d streams ended from %v to %v after the drain started; at most %d (%.1f%%) within 100ms; %d of %d unary calls failed",
		streams, ends[0].Sub(started), ends[len(ends)-1].Sub(started), most, 100*float64(most)/streams, failed, 2*unary)
	if most > streams/5 {
		t.Errorf("%d of %d streams ended within 100ms, want at most 20%%", most, streams)
	}
	if n := b.calls.Load(); n != unary {
		t.Errorf("the staying endpoint served %d calls, want the %d made during the drain", n, unary)
	}
}

// TestPacedDrainStops: when Run's context ends while a paced drain waits
// for the next turn, the drain stops at once (its timer with it): the
// streams left end as at a drain's deadline, and Run returns.
func TestPacedDrainStops(t *testing.T) {
	const streams = 10
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, b, r, p, es := echoStreams(t, ctx, streams)
	r.exclude(a.addr)
	// A 10s window: the first turn comes after a 1s grace, the last
	// near 10s.
	started, stop := pacedDrain(t, p.srv, a.addr, b.addr, 20*time.Second, 10*time.Second)
	ended := make(chan *echoStream, streams)
	for _, e := range es {
		go func() { e.await(); ended <- e }()
	}
	first := recv(t, ended, "a first stream to end")
	if err := first.check(); err != nil {
		t.Errorf("first stream: %v", err)
	}
	stop()
	stopped := time.Now()
	for range streams - 1 {
		e := recv(t, ended, "the other streams to end")
		if e.resp.Trailer.Get("grpc-status") != "14" && e.err == nil {
			t.Errorf("stream left at Run's end: grpc-status %q, want 14", e.resp.Trailer.Get("grpc-status"))
		}
	}
	if d := time.Since(stopped); d > 2*time.Second {
		t.Errorf("streams left ended %v after Run's end", d)
	}
	t.Logf("first stream ended %v after the drain started; the rest within %v of Run's end", first.ended.Sub(started), time.Since(stopped))
	eventually(t, 5*time.Second, func() bool {
		p.srv.pool.mu.Lock()
		defer p.srv.pool.mu.Unlock()
		return p.srv.pool.eps[a.addr] == nil
	}, "the drained endpoint's connections to go")
}

// fixedPlan is a StreamPlan that ends every stream at once, with no grace.
type fixedPlan struct{}

func (fixedPlan) Start() time.Time { return time.Now() }
func (fixedPlan) Ends(n int) ([]time.Time, []time.Duration) {
	return make([]time.Time, n), make([]time.Duration, n)
}

// TestPacedNonGRPC: a paced drain ends a plain HTTP/2 stream with no
// response header yet with RST_STREAM REFUSED_STREAM (the client may send
// it again), and one whose response header went out with RST_STREAM
// INTERNAL_ERROR, as when its endpoint is lost; the drain then returns,
// well before its deadline.
func TestPacedNonGRPC(t *testing.T) {
	headed := make(chan struct{}, 2)
	e := startH2CEndpoint(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/started" {
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
		}
		headed <- struct{}{}
		<-r.Context().Done()
	}))
	p := startRelay(t, Config{Router: &testRouter{addrs: []string{e.addr}}})
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: dialPlain}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type result struct {
		resp *http.Response
		err  error
	}
	quiet, started := make(chan result, 1), make(chan result, 1)
	for path, ch := range map[string]chan result{"/quiet": quiet, "/started": started} {
		pr, pw := io.Pipe()
		defer pw.Close()
		req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+p.addr+path, pr)
		go func() { r, err := tr.RoundTrip(req); ch <- result{r, err} }()
	}
	recv(t, headed, "the first request to reach the endpoint")
	recv(t, headed, "the second request to reach the endpoint")
	s := recv(t, started, "the response header of /started")
	if s.err != nil {
		t.Fatalf("/started: %v", s.err)
	}
	drained := make(chan struct{})
	go func() { p.srv.DrainEndpoint(ctx, e.addr, fixedPlan{}); close(drained) }()
	if q := recv(t, quiet, "/quiet to end"); q.err == nil || !strings.Contains(q.err.Error(), "REFUSED_STREAM") {
		t.Errorf("/quiet: %v, want RST_STREAM REFUSED_STREAM", q.err)
	}
	if _, err := io.Copy(io.Discard, s.resp.Body); err == nil || !strings.Contains(err.Error(), "INTERNAL_ERROR") {
		t.Errorf("/started body: %v, want RST_STREAM INTERNAL_ERROR", err)
	}
	recv(t, drained, "DrainEndpoint to return")
}

// TestPacedTrailersOnly: a gRPC call whose response header has not gone
// out when its turn comes gets a trailers-only UNAVAILABLE with the
// pushback.
func TestPacedTrailersOnly(t *testing.T) {
	a := startBackend(t)
	p := startRelay(t, Config{Router: &testRouter{addrs: []string{a.addr}}})
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: dialPlain}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	frame := grpcFrame(t, wrapperspb.String("forever"))
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+p.addr+"/h2relay.test.Test/Wait", strings.NewReader(string(frame)))
	req.Header.Set("content-type", "application/grpc")
	req.Header.Set("te", "trailers")
	type result struct {
		resp *http.Response
		err  error
	}
	ch := make(chan result, 1)
	go func() { r, err := tr.RoundTrip(req); ch <- result{r, err} }()
	eventually(t, 5*time.Second, func() bool { return a.calls.Load() == 1 }, "the call to reach the endpoint")
	drained := make(chan struct{})
	go func() { p.srv.DrainEndpoint(ctx, a.addr, pushbackPlan(1234*time.Millisecond)); close(drained) }()
	r := recv(t, ch, "the call to end")
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.resp.Body.Close()
	if s, pb := r.resp.Header.Get("grpc-status"), r.resp.Header.Get("grpc-retry-pushback-ms"); s != "14" || pb != "1234" {
		t.Errorf("trailers-only response: grpc-status %q, grpc-retry-pushback-ms %q; want 14, 1234", s, pb)
	}
	<-a.waitSeen
	recv(t, drained, "DrainEndpoint to return")
}

// pushbackPlan is a StreamPlan that ends every stream at once with
// pushback d.
type pushbackPlan time.Duration

func (pushbackPlan) Start() time.Time { return time.Now() }
func (d pushbackPlan) Ends(n int) ([]time.Time, []time.Duration) {
	pb := make([]time.Duration, n)
	for i := range pb {
		pb[i] = time.Duration(d)
	}
	return make([]time.Time, n), pb
}
