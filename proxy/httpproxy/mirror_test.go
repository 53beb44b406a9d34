package httpproxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/internal/proxytest"
	"github.com/longhaul-proxy/longhaul/proxy/metrics"
	"github.com/longhaul-proxy/longhaul/proxy/route"
	"github.com/longhaul-proxy/longhaul/proxy/upstream"
)

// seenRequest is what a mirror backend got.
type seenRequest struct {
	method, uri, host, rule, test, xff, proto string
	body                                      string // its sha256, hex
	n                                         int
}

// recorder is a backend that records each request it gets and answers
// with the sha256 of its body.
type recorder struct {
	name string
	mu   sync.Mutex
	seen []seenRequest
	got  chan struct{} // one per request, if there is room
	// before, if set, runs first (a hang, a reset).
	before func(w http.ResponseWriter, r *http.Request)
}

func newRecorder(name string) *recorder {
	return &recorder{name: name, got: make(chan struct{}, 1024)}
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rc.before != nil {
		rc.before(w, r)
	}
	h := sha256.New()
	n, _ := io.Copy(h, r.Body)
	sum := hex.EncodeToString(h.Sum(nil))
	rc.mu.Lock()
	rc.seen = append(rc.seen, seenRequest{method: r.Method, uri: r.RequestURI, host: r.Host, rule: r.Header.Get("X-Rule"),
		test: r.Header.Get("X-Test"), xff: r.Header.Get("X-Forwarded-For"), proto: r.Proto, body: sum, n: int(n)})
	rc.mu.Unlock()
	select {
	case rc.got <- struct{}{}:
	default:
	}
	fmt.Fprintf(w, "%s %s", rc.name, sum)
}

func (rc *recorder) requests() []seenRequest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.seen)
}

// await waits for n more requests, or fails.
func (rc *recorder) await(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for range n {
		select {
		case <-rc.got:
		case <-timeout:
			t.Fatalf("%s: a request did not come", rc.name)
		}
	}
}

type mirrorProxy struct {
	l        *Listener
	m        *metrics.Metrics
	addr     string
	shutdown func(ctx context.Context) error
}

// mirrorCount reads the mirror counter of outcome.
func (p *mirrorProxy) mirrorCount(outcome string) int {
	return int(testutil.ToFloat64(p.m.Mirrors.WithLabelValues("gw", outcome)))
}

// mirrorOf is a mirror backend of a test route and its share.
type mirrorOf struct {
	addr     string
	percent  *int32
	fraction *route.Fraction
	h2       bool // reached over h2c
}

// startMirrorProxy serves an http listener whose one rule (PathPrefix
// /api) sets X-Rule, rewrites host and path (/api to /v1) and mirrors to
// mirrors, its backend main.
func startMirrorProxy(t *testing.T, cfg Config, main string, mirrors ...mirrorOf) *mirrorProxy {
	t.Helper()
	reg, m := upstream.NewRegistry(), metrics.New(nil)
	lc := balancer.Policy{Kind: balancer.LeastConnections}
	up := upstream.NewUpstream("gw/main", lc, reg, m)
	proxytest.SetEndpoints(t, up, main)
	filters := []route.HTTPFilter[*Backend]{
		{Type: route.RequestHeaderModifier, RequestHeaderModifier: &route.HeaderModifier{Set: []route.Header{{Name: "X-Rule", Value: "on"}}}},
		{Type: route.URLRewrite, URLRewrite: &route.Rewrite{Hostname: "rewritten.example", Path: &route.PathModifier{Type: route.ReplacePrefixMatch, Value: "/v1"}}},
	}
	for i, mo := range mirrors {
		mu := upstream.NewUpstream(fmt.Sprintf("gw/mirror%d", i), lc, reg, m)
		proxytest.SetEndpoints(t, mu, mo.addr)
		filters = append(filters, route.HTTPFilter[*Backend]{Type: route.RequestMirror,
			RequestMirror: &route.Mirror[*Backend]{Backend: &Backend{Up: mu, H2: mo.h2}, Percent: mo.percent, Fraction: mo.fraction}})
	}
	tb, err := route.New(route.Spec[*Backend]{HTTP: []route.HTTPRoute[*Backend]{{Meta: route.Meta{Namespace: "gw", Name: "shop"},
		Rules: []route.HTTPRule[*Backend]{{
			Matches: []route.HTTPMatch{{Path: route.PathMatch{Type: route.PathPrefix, Value: "/api"}}},
			Filters: filters, Backends: []route.Backend[*Backend]{{Ref: &Backend{Up: up}, Weight: 1}},
		}}}}})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Name, cfg.Routes = "gw", tb
	l := New(cfg, up)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Serve(context.Background(), ln) }()
	var once sync.Once
	var shutErr error
	p := &mirrorProxy{l: l, m: m, addr: ln.Addr().String()}
	p.shutdown = func(ctx context.Context) error {
		once.Do(func() {
			shutErr = l.Shutdown(ctx)
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
		return shutErr
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.shutdown(ctx)
	})
	return p
}

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func pct(p int32) *int32 { return &p }

// TestMirrorCopies: each mirror gets the request as the rule's filters
// left it (method, rewritten path and host, set header, the client's
// headers and body), over HTTP/1.1 or h2c as its backend takes them; the
// client its answer from the main backend.
func TestMirrorCopies(t *testing.T) {
	main, m1, m2 := newRecorder("main"), newRecorder("m1"), newRecorder("m2")
	p := startMirrorProxy(t, Config{}, startHTTPBackend(t, main), mirrorOf{addr: startHTTPBackend(t, m1)}, mirrorOf{addr: startH2CBackend(t, m2), h2: true})
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	type sent struct{ method, body string }
	var reqs []sent
	for i := range 6 {
		s := sent{method: http.MethodPost, body: fmt.Sprintf("body %d %s", i, strings.Repeat("x", i*1000))}
		if i%3 == 2 {
			s = sent{method: http.MethodGet}
		}
		reqs = append(reqs, s)
		req, _ := http.NewRequest(s.method, "http://"+p.addr+fmt.Sprintf("/api/item?i=%d", i), strings.NewReader(s.body))
		if s.body == "" {
			req.Body = nil
		}
		req.Host = "shop.example.com"
		req.Header.Set("X-Test", fmt.Sprint(i))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := "main " + sum([]byte(s.body)); string(b) != want {
			t.Errorf("request %d: answer %q, want %q", i, b, want)
		}
	}
	m1.await(t, len(reqs))
	m2.await(t, len(reqs))
	for _, rc := range []*recorder{main, m1, m2} {
		got := rc.requests()
		slices.SortFunc(got, func(a, b seenRequest) int { return strings.Compare(a.test, b.test) })
		if len(got) != len(reqs) {
			t.Fatalf("%s got %d requests, want %d", rc.name, len(got), len(reqs))
		}
		for i, s := range reqs {
			want := seenRequest{method: s.method, uri: fmt.Sprintf("/v1/item?i=%d", i), host: "rewritten.example", rule: "on",
				test: fmt.Sprint(i), xff: "127.0.0.1", proto: "HTTP/1.1", body: sum([]byte(s.body)), n: len(s.body)}
			if rc == m2 {
				want.proto = "HTTP/2.0" // an h2c backend
			}
			if got[i] != want {
				t.Errorf("%s request %d: %+v, want %+v", rc.name, i, got[i], want)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if n := p.mirrorCount("sent"); n != 2*len(reqs) {
		t.Errorf("%d copies counted sent, want %d", n, 2*len(reqs))
	}
}

// TestMirrorShare: percent 50 and fraction 1/4 over 400 requests copy
// about 200 and 100 (five standard deviations either way: 10 and 8.7).
func TestMirrorShare(t *testing.T) {
	main, half, quarter := newRecorder("main"), newRecorder("half"), newRecorder("quarter")
	p := startMirrorProxy(t, Config{}, startHTTPBackend(t, main),
		mirrorOf{addr: startHTTPBackend(t, half), percent: pct(50)},
		mirrorOf{addr: startHTTPBackend(t, quarter), fraction: &route.Fraction{Numerator: 1, Denominator: 4}})
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	const n = 400
	for i := range n {
		resp, err := c.Get(fmt.Sprintf("http://%s/api/%d", p.addr, i))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	h, q := len(half.requests()), len(quarter.requests())
	t.Logf("of %d requests: %d copied at 50%%, %d at 1/4", n, h, q)
	if h < 150 || h > 250 {
		t.Errorf("percent 50 copied %d of %d", h, n)
	}
	if q < 57 || q > 143 {
		t.Errorf("fraction 1/4 copied %d of %d", q, n)
	}
	if got := p.mirrorCount("sent"); got != h+q || len(main.requests()) != n {
		t.Errorf("%d copies counted sent, %d received; main got %d", got, h+q, len(main.requests()))
	}
}

// TestMirrorSlowOrBroken: a mirror that hangs, and one that resets its
// connections, delay no request; copies beyond the bound in flight are
// dropped; Shutdown cancels the copies left when its context ends.
func TestMirrorSlowOrBroken(t *testing.T) {
	var inflight, peak atomic.Int64
	release := make(chan struct{})
	hang := newRecorder("hang")
	hang.before = func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		select {
		case <-r.Context().Done():
		case <-release:
		case <-time.After(20 * time.Second):
		}
	}
	reset := newRecorder("reset")
	reset.before = func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) }
	main := newRecorder("main")
	p := startMirrorProxy(t, Config{ResponseHeaderTimeout: 30 * time.Second}, startHTTPBackend(t, main),
		mirrorOf{addr: startHTTPBackend(t, hang)}, mirrorOf{addr: startHTTPBackend(t, reset)})
	defer close(release)

	const workers, each = 8, 50 // 400 requests: more than mirrorsInFlight hang
	var mu sync.Mutex
	var took []time.Duration
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
			defer c.CloseIdleConnections()
			for i := range each {
				body := bytes.Repeat([]byte{byte(i)}, 100)
				start := time.Now()
				resp, err := c.Post(fmt.Sprintf("http://%s/api/%d/%d", p.addr, w, i), "text/plain", bytes.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				d := time.Since(start)
				if want := "main " + sum(body); string(b) != want {
					errs <- fmt.Errorf("answer %q, want %q", b, want)
					return
				}
				mu.Lock()
				took = append(took, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	slices.Sort(took)
	p50, p99, worst := took[len(took)/2], took[len(took)*99/100], took[len(took)-1]
	t.Logf("%d requests with a hanging and a resetting mirror: p50 %v, p99 %v, max %v", len(took), p50, p99, worst)
	if worst > 2*time.Second {
		t.Errorf("a request took %v with a hanging mirror", worst)
	}
	dropped, errored := p.mirrorCount("dropped_inflight"), p.mirrorCount("error")
	t.Logf("copies: dropped in flight %d, errors %d (resets and the hanging ones left), hanging peak %d", dropped, errored, peak.Load())
	if dropped == 0 {
		t.Error("no copy dropped while 256 hang")
	}
	if peak.Load() > mirrorsInFlight {
		t.Errorf("%d copies in flight at once, bound %d", peak.Load(), mirrorsInFlight)
	}
	// Shutdown waits for the copies until its context ends, then cancels
	// them: the hanging ones end at once.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := p.shutdown(ctx); err == nil {
		t.Error("Shutdown: no error with copies hanging past its context")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	if n := p.mirrorCount("error"); n < errored+1 || p.mirrorCount("sent") > 0 {
		t.Errorf("after Shutdown: %d errors (before %d), %d sent; want the hanging ones as errors, none sent", n, errored, p.mirrorCount("sent"))
	}
	if len(main.requests()) != workers*each {
		t.Errorf("main got %d requests", len(main.requests()))
	}
}

// TestMirrorBodyBound: a body over mirrorBodyMax is not copied (with a
// Content-Length or chunked) and reaches the main backend whole; one
// under it, chunked, is copied whole.
func TestMirrorBodyBound(t *testing.T) {
	main, mir := newRecorder("main"), newRecorder("mirror")
	p := startMirrorProxy(t, Config{}, startHTTPBackend(t, main), mirrorOf{addr: startHTTPBackend(t, mir)})
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	big := make([]byte, 3<<20)
	rand.Read(big)
	small := big[:mirrorBodyMax] // exactly the bound: copied
	for _, tc := range []struct {
		name    string
		body    []byte
		chunked bool
	}{{"large", big, false}, {"large chunked", big[:mirrorBodyMax+1], true}, {"bound chunked", small, true}} {
		var r io.Reader = bytes.NewReader(tc.body)
		if tc.chunked {
			r = io.MultiReader(r) // no length known: chunked
		}
		resp, err := c.Post("http://"+p.addr+"/api/upload", "application/octet-stream", r)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := "main " + sum(tc.body); string(b) != want {
			t.Errorf("%s: answer %q, want %q", tc.name, b, want)
		}
	}
	mir.await(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	got := mir.requests()
	if len(got) != 1 || got[0].body != sum(small) || got[0].n != len(small) {
		t.Errorf("the mirror got %+v, want the one body of %d bytes", got, len(small))
	}
	if d, s := p.mirrorCount("dropped_body"), p.mirrorCount("sent"); d != 2 || s != 1 {
		t.Errorf("dropped_body %d, sent %d; want 2 and 1", d, s)
	}
}

// TestMirrorShutdownWaits: Shutdown lets a copy in flight finish.
func TestMirrorShutdownWaits(t *testing.T) {
	main, slow := newRecorder("main"), newRecorder("slow")
	entered := make(chan struct{}, 1)
	slow.before = func(http.ResponseWriter, *http.Request) {
		entered <- struct{}{}
		time.Sleep(300 * time.Millisecond) // a slow answer, not synchronisation
	}
	p := startMirrorProxy(t, Config{}, startHTTPBackend(t, main), mirrorOf{addr: startHTTPBackend(t, slow)})
	c := &http.Client{Transport: &http.Transport{}}
	resp, err := c.Get("http://" + p.addr + "/api/x")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.CloseIdleConnections()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if n := p.mirrorCount("sent"); n != 1 || len(slow.requests()) != 1 {
		t.Errorf("after Shutdown: %d sent, the mirror answered %d; want 1 and 1", n, len(slow.requests()))
	}
}

// TestMirrorNotWebSocket: a WebSocket upgrade is not copied; a request
// after it on the same rule is.
func TestMirrorNotWebSocket(t *testing.T) {
	mir := newRecorder("mirror")
	p := startMirrorProxy(t, Config{}, startWSEcho(t), mirrorOf{addr: startHTTPBackend(t, mir)})
	c, _, err := websocket.DefaultDialer.Dial("ws://"+p.addr+"/api/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.ReadMessage(); err != nil || string(got) != "hello" {
		t.Fatalf("echo: %q, %v", got, err)
	}
	c.Close()
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://" + p.addr + "/api/plain")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	mir.await(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if got := mir.requests(); len(got) != 1 || got[0].uri != "/v1/plain" {
		t.Errorf("the mirror got %+v, want the plain GET only", got)
	}
}
