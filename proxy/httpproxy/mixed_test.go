package httpproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/internal/proxytest"
	"github.com/longhaul-proxy/longhaul/proxy/metrics"
	"github.com/longhaul-proxy/longhaul/proxy/route"
	"github.com/longhaul-proxy/longhaul/proxy/upstream"
)

// One http listener (no UpstreamH2) carrying HTTPRoutes to HTTP/1.1
// backends and GRPCRoutes to h2c (gRPC) backends on the same port.

// echoBackend is a grpc-go server with a bidi Echo method (each message
// answered with the server's address and the message) and the health
// service, which the tests' routes do not route.
type echoBackend struct {
	addr   string
	srv    *grpc.Server
	calls  atomic.Int64 // Echo streams started
	health atomic.Int64 // health calls served
	// deadlines counts Echo streams that came with a deadline; ends gets
	// how each Echo stream ended (its status code), if there is room.
	deadlines atomic.Int64
	ends      chan codes.Code
}

const echoMethod = "/longhaul.test.Echo/Echo"

var echoServiceDesc = grpc.ServiceDesc{
	ServiceName: "longhaul.test.Echo",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName: "Echo", ServerStreams: true, ClientStreams: true,
		Handler: func(srv any, ss grpc.ServerStream) error {
			b := srv.(*echoBackend)
			b.calls.Add(1)
			if _, ok := ss.Context().Deadline(); ok {
				b.deadlines.Add(1)
			}
			for {
				m := new(wrapperspb.StringValue)
				if err := ss.RecvMsg(m); errors.Is(err, io.EOF) {
					return nil
				} else if err != nil {
					select {
					case b.ends <- status.Code(err):
					default:
					}
					return err
				}
				if d, ok := strings.CutPrefix(m.Value, "slow "); ok {
					wait, _ := time.ParseDuration(d)
					time.Sleep(wait) // a slow answer
				}
				if err := ss.SendMsg(wrapperspb.String(b.addr + " " + m.Value)); err != nil {
					return err
				}
			}
		},
	}},
}

func startEchoBackend(t testing.TB) *echoBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &echoBackend{addr: ln.Addr().String(), ends: make(chan codes.Code, 1)}
	b.srv = grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		b.health.Add(1)
		return h(ctx, req)
	}))
	b.srv.RegisterService(&echoServiceDesc, b)
	healthpb.RegisterHealthServer(b.srv, health.NewServer())
	done := make(chan struct{})
	go func() { b.srv.Serve(ln); close(done) }()
	t.Cleanup(func() { b.srv.Stop(); <-done })
	return b
}

// h1Backend is an HTTP/1.1-only server answering "web <proto> <path>",
// counting the requests it got over anything but HTTP/1.1.
type h1Backend struct {
	srv    *httptest.Server
	n, bad atomic.Int64
}

func startH1Backend(t testing.TB) *h1Backend {
	b := &h1Backend{}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.n.Add(1)
		if r.Proto != "HTTP/1.1" {
			b.bad.Add(1)
		}
		fmt.Fprintf(w, "web %s %s", r.Proto, r.URL.Path)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *h1Backend) addr() string { return strings.TrimPrefix(b.srv.URL, "http://") }

type mixedProxy struct {
	l        *Listener
	web, rpc *upstream.Upstream
	addr     string
}

// startMixedProxy serves an http listener with an HTTPRoute (everything
// but gRPC) to web, HTTP/1.1, and a GRPCRoute (services
// longhaul.test.Echo and grpc.testing.TestService only) to rpc, h2c.
func startMixedProxy(t testing.TB, cfg Config, web []string, rpc []string) *mixedProxy {
	t.Helper()
	reg, m := upstream.NewRegistry(), metrics.New(nil)
	lc := balancer.Policy{Kind: balancer.LeastConnections}
	p := &mixedProxy{web: upstream.NewUpstream("gw/web", lc, reg, m), rpc: upstream.NewUpstream("gw/rpc", lc, reg, m)}
	proxytest.SetEndpoints(t, p.web, web...)
	proxytest.SetEndpoints(t, p.rpc, rpc...)
	wb, rb := &Backend{Up: p.web}, &Backend{Up: p.rpc, H2: true}
	tb, err := route.New(route.Spec[*Backend]{
		HTTP: []route.HTTPRoute[*Backend]{{Meta: route.Meta{Namespace: "gw", Name: "site"},
			Rules: []route.HTTPRule[*Backend]{{Backends: []route.Backend[*Backend]{{Ref: wb, Weight: 1}}}}}},
		GRPC: []route.GRPCRoute[*Backend]{{Meta: route.Meta{Namespace: "gw", Name: "rpc"},
			Rules: []route.GRPCRule[*Backend]{{Matches: []route.GRPCMatch{{Service: "longhaul.test.Echo"}, {Service: "grpc.testing.TestService"}},
				Backends: []route.Backend[*Backend]{{Ref: rb, Weight: 1}}}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Name, cfg.Routes = "gw", tb
	p.l = New(cfg, p.web)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- p.l.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.l.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return p
}

// echoStream opens an Echo stream on cc.
func echoStream(ctx context.Context, cc *grpc.ClientConn) (grpc.ClientStream, error) {
	return cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, echoMethod)
}

// echoRound sends msg on s and returns the endpoint that answered.
func echoRound(s grpc.ClientStream, msg string) (string, error) {
	if err := s.SendMsg(wrapperspb.String(msg)); err != nil {
		return "", err
	}
	in := new(wrapperspb.StringValue)
	if err := s.RecvMsg(in); err != nil {
		return "", err
	}
	ep, got, _ := strings.Cut(in.Value, " ")
	if got != msg {
		return ep, fmt.Errorf("echo of %q: %q", msg, in.Value)
	}
	return ep, nil
}

func dialGRPC(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// h2cClient is an HTTP/2 client with prior knowledge (no TLS).
func h2cClient(t testing.TB) *http.Client {
	protos := new(http.Protocols)
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: protos}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// TestMixedPort: HTTP/1.1 and HTTP/2 clients of the HTTPRoute and gRPC
// clients of the GRPCRoute, all at once on one port; the web backend only
// ever sees HTTP/1.1, the gRPC backend gets h2c (grpc-go speaks nothing
// else), streams flow both ways message by message, and a method no route
// serves is UNIMPLEMENTED from the route table.
func TestMixedPort(t *testing.T) {
	web := startH1Backend(t)
	g1, g2 := startEchoBackend(t), startEchoBackend(t)
	p := startMixedProxy(t, Config{}, []string{web.addr()}, []string{g1.addr, g2.addr})
	cc := dialGRPC(t, p.addr)
	h1 := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	t.Cleanup(h1.CloseIdleConnections)
	h2 := h2cClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	const workers, rounds, msgs = 4, 25, 5
	var httpOK, h2OK, streams, echoed atomic.Int64
	get := func(c *http.Client, path, proto string, ok *atomic.Int64) error {
		resp, err := c.Get("http://" + p.addr + path)
		if err != nil {
			return err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.Proto != proto || string(b) != "web HTTP/1.1 "+path {
			return fmt.Errorf("%s %s: %s %q", proto, path, resp.Proto, b)
		}
		ok.Add(1)
		return nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3*workers)
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				if err := get(h1, fmt.Sprintf("/h1/%d/%d", w, i), "HTTP/1.1", &httpOK); err != nil {
					errs <- err
					return
				}
			}
		})
		wg.Go(func() {
			for i := range rounds {
				if err := get(h2, fmt.Sprintf("/h2/%d/%d", w, i), "HTTP/2.0", &h2OK); err != nil {
					errs <- err
					return
				}
			}
		})
		wg.Go(func() {
			for i := range rounds {
				s, err := echoStream(ctx, cc)
				if err != nil {
					errs <- err
					return
				}
				for j := range msgs {
					if _, err := echoRound(s, fmt.Sprintf("m%d-%d-%d", w, i, j)); err != nil {
						errs <- fmt.Errorf("stream %d/%d, message %d: %w", w, i, j, err)
						return
					}
					echoed.Add(1)
				}
				if err := s.CloseSend(); err != nil {
					errs <- err
					return
				}
				if err := s.RecvMsg(new(wrapperspb.StringValue)); err != io.EOF {
					errs <- fmt.Errorf("stream %d/%d: end %v, want io.EOF (status OK)", w, i, err)
					return
				}
				streams.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("HTTP/1.1 requests %d, HTTP/2 requests %d, gRPC streams %d (%d messages each way), spread %d/%d",
		httpOK.Load(), h2OK.Load(), streams.Load(), echoed.Load(), g1.calls.Load(), g2.calls.Load())
	if n := int64(workers * rounds); httpOK.Load() != n || h2OK.Load() != n || streams.Load() != n || echoed.Load() != n*msgs {
		t.Errorf("not every request, stream or message got through")
	}
	if web.bad.Load() != 0 || web.n.Load() != int64(2*workers*rounds) {
		t.Errorf("web backend: %d requests, %d not over HTTP/1.1", web.n.Load(), web.bad.Load())
	}
	if g1.calls.Load() == 0 || g2.calls.Load() == 0 {
		t.Errorf("streams not balanced: %d, %d", g1.calls.Load(), g2.calls.Load())
	}

	// The health service is served by both gRPC endpoints, but no route
	// sends it there: the route table answers.
	hc := healthpb.NewHealthClient(cc)
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("a method no route serves: %v, want Unimplemented", err)
	}
	if n := g1.health.Load() + g2.health.Load(); n != 0 {
		t.Errorf("the unrouted method reached the endpoints %d times", n)
	}
	// A deadline passes through: grpc-timeout reaches the endpoint, and
	// a call past it ends DEADLINE_EXCEEDED on time, there too.
	withDeadline := g1.deadlines.Load() + g2.deadlines.Load()
	dctx, dcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer dcancel()
	s, err := echoStream(dctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	ep, err := echoRound(s, "before")
	if err != nil {
		t.Fatal(err)
	}
	if n := g1.deadlines.Load() + g2.deadlines.Load() - withDeadline; n != 1 {
		t.Errorf("the endpoint saw %d streams with a deadline, want 1", n)
	}
	start := time.Now()
	err = s.RecvMsg(new(wrapperspb.StringValue)) // the server sends nothing more
	proxytest.AssertWithin(t, "a stream past its deadline ended", time.Since(start), 0, 2*time.Second)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("past the deadline: %v, want DeadlineExceeded", err)
	}
	g := g1
	if ep == g2.addr {
		g = g2
	}
	select {
	case c := <-g.ends:
		if c != codes.DeadlineExceeded && c != codes.Canceled {
			t.Errorf("the endpoint's stream ended with %v, want DeadlineExceeded or Canceled", c)
		}
	case <-time.After(5 * time.Second):
		t.Error("the endpoint's stream did not end with its deadline")
	}
}

// TestMixedPortSlowCall: a gRPC call waits for its answer, and for its
// client's next message, longer than ResponseHeaderTimeout and
// RequestBodyTimeout, as a relayed stream would (StreamIdleTimeout); an
// HTTP request is still held to ResponseHeaderTimeout.
func TestMixedPortSlowCall(t *testing.T) {
	slowWeb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slowWeb.Close)
	g := startEchoBackend(t)
	p := startMixedProxy(t, Config{ResponseHeaderTimeout: 100 * time.Millisecond, RequestBodyTimeout: 100 * time.Millisecond},
		[]string{strings.TrimPrefix(slowWeb.URL, "http://")}, []string{g.addr})
	cc := dialGRPC(t, p.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := echoStream(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := echoRound(s, "slow 300ms"); err != nil {
		t.Fatalf("an answer slower than ResponseHeaderTimeout: %v", err)
	}
	time.Sleep(300 * time.Millisecond) // a client quiet for longer than RequestBodyTimeout
	if _, err := echoRound(s, "after a pause"); err != nil {
		t.Fatalf("a message after a pause longer than RequestBodyTimeout: %v", err)
	}
	s.CloseSend()
	if err := s.RecvMsg(new(wrapperspb.StringValue)); err != io.EOF {
		t.Errorf("end of the stream: %v", err)
	}
	resp, err := http.Get("http://" + p.addr + "/slow")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("an HTTP request past ResponseHeaderTimeout: %d, want 504", resp.StatusCode)
	}
}

// testPlan is a drain plan: its grace ends at start, the streams left
// end every step after it, each told to wait pushback before retrying.
type testPlan struct {
	start          time.Time
	step, pushback time.Duration
}

func (p testPlan) Start() time.Time { return p.start }

func (p testPlan) Ends(n int) ([]time.Time, []time.Duration) {
	at, pb := make([]time.Time, n), make([]time.Duration, n)
	for i := range at {
		at[i], pb[i] = p.start.Add(time.Duration(i+1)*p.step), p.pushback
	}
	return at, pb
}

// rawGRPC is a gRPC call made by hand over an HTTP/2 (h2c) client, for
// what grpc-go keeps from its caller: the retry pushback trailer.
type rawGRPC struct {
	w    *io.PipeWriter
	resp *http.Response
	r    *bufio.Reader
}

func startRawGRPC(t *testing.T, ctx context.Context, addr string) *rawGRPC {
	t.Helper()
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	pr, pw := io.Pipe()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+echoMethod, pr)
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	c := &rawGRPC{w: pw}
	t.Cleanup(func() { pw.Close() })
	type result struct {
		resp *http.Response
		err  error
	}
	got := make(chan result, 1)
	go func() { resp, err := tr.RoundTrip(req); got <- result{resp, err} }()
	c.send(t, "raw") // grpc-go answers the headers with the first message
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.resp.Body.Close() })
	c.resp, c.r = r.resp, bufio.NewReader(r.resp.Body)
	return c
}

func (c *rawGRPC) send(t *testing.T, msg string) {
	b, _ := proto.Marshal(wrapperspb.String(msg))
	frame := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(b)))
	if _, err := c.w.Write(append(frame, b...)); err != nil {
		t.Fatal(err)
	}
}

// recv reads one message; err at the end of the response body.
func (c *rawGRPC) recv() (string, error) {
	var h [5]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return "", err
	}
	b := make([]byte, binary.BigEndian.Uint32(h[1:]))
	if _, err := io.ReadFull(c.r, b); err != nil {
		return "", err
	}
	m := new(wrapperspb.StringValue)
	return m.Value, proto.Unmarshal(b, m)
}

// TestMixedPortDrain: the gRPC endpoint a stream is on drains; the stream
// (grpc-go's, and one made by hand that reads the trailers) ends with
// UNAVAILABLE and the plan's pushback at the plan's time, while HTTP/1.1
// requests go on; the next call goes to the other endpoint.
func TestMixedPortDrain(t *testing.T) {
	web := startH1Backend(t)
	g1, g2 := startEchoBackend(t), startEchoBackend(t)
	p := startMixedProxy(t, Config{}, []string{web.addr()}, []string{g1.addr, g2.addr})
	cc := dialGRPC(t, p.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	s, err := echoStream(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	leaving, err := echoRound(s, "first")
	if err != nil {
		t.Fatal(err)
	}
	staying := g1.addr
	if leaving == g1.addr {
		staying = g2.addr
	}
	// The hand-made call, on the same endpoint: the picker (least
	// connections) is left only that one.
	proxytest.SetEndpoints(t, p.rpc, leaving)
	raw := startRawGRPC(t, ctx, p.addr)
	if m, err := raw.recv(); err != nil || !strings.HasPrefix(m, leaving+" ") {
		t.Fatalf("hand-made call: %q %v, want an answer from %s", m, err, leaving)
	}

	proxytest.SetEndpoints(t, p.rpc, staying) // the picker lets leaving go
	plan := testPlan{start: time.Now().Add(200 * time.Millisecond), step: 100 * time.Millisecond, pushback: 1234 * time.Millisecond}
	drained := make(chan struct{})
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	defer dcancel()
	start := time.Now()
	go func() { p.l.DrainEndpoint(dctx, leaving, plan); close(drained) }()

	// Until its turn the stream goes on.
	if ep, err := echoRound(s, "during the grace"); err != nil || ep != leaving {
		t.Fatalf("stream in the drain's grace: %s %v", ep, err)
	}
	if resp, err := http.Get("http://" + p.addr + "/during"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	err = s.RecvMsg(new(wrapperspb.StringValue))
	took := time.Since(start)
	if status.Code(err) != codes.Unavailable {
		t.Errorf("the drained stream ended with %v, want Unavailable", err)
	}
	// Two streams, ended 100ms apart after the 200ms grace.
	proxytest.AssertWithin(t, "the drained grpc-go stream ended", took, 250*time.Millisecond, 2*time.Second)
	for {
		if _, err := raw.recv(); err != nil {
			if err != io.EOF {
				t.Errorf("hand-made call's body: %v", err)
			}
			break
		}
	}
	tr := raw.resp.Trailer
	proxytest.AssertWithin(t, "the hand-made call ended", time.Since(start), 250*time.Millisecond, 2*time.Second)
	if tr.Get("Grpc-Status") != "14" || tr.Get("Grpc-Retry-Pushback-Ms") != "1234" || tr.Get("Grpc-Message") != "endpoint drained" {
		t.Errorf("hand-made call's trailers %v, want grpc-status 14, grpc-retry-pushback-ms 1234", tr)
	}
	select {
	case <-drained:
		t.Logf("DrainEndpoint returned after %v", time.Since(start))
	case <-time.After(5 * time.Second):
		t.Fatal("DrainEndpoint did not return")
	}

	// The next call goes to the endpoint that stays.
	s2, err := echoStream(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	if ep, err := echoRound(s2, "after"); err != nil || ep != staying {
		t.Errorf("the call after the drain: %s %v, want %s", ep, err, staying)
	}
	s2.CloseSend()
	if err := s2.RecvMsg(new(wrapperspb.StringValue)); err != io.EOF {
		t.Errorf("the call after the drain ended with %v", err)
	}
	if web.bad.Load() != 0 {
		t.Errorf("the web backend got %d requests over something else than HTTP/1.1", web.bad.Load())
	}
}

// TestGRPCInteropMixedPort runs grpc-go's interop client against grpc-go's
// interop server through a listener that also routes HTTP/1.1: every call
// goes the net/http path (and the relay's round trips); the unimplemented
// service is answered by the route table.
func TestGRPCInteropMixedPort(t *testing.T) {
	dir := toolsDir(t)
	backend := startInteropServer(t, filepath.Join(dir, "interop_server"))
	web := startH1Backend(t)
	p := startMixedProxy(t, Config{}, []string{web.addr()}, []string{backend})
	runInteropCases(t, dir, p.addr)
	if resp, err := http.Get("http://" + p.addr + "/after"); err != nil {
		t.Error(err)
	} else {
		resp.Body.Close()
	}
	if web.n.Load() != 1 || web.bad.Load() != 0 {
		t.Errorf("web backend: %d requests (%d not HTTP/1.1), want the one", web.n.Load(), web.bad.Load())
	}
}
