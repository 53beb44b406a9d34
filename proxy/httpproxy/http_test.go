package httpproxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/internal/testcert"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/internal/proxytest"
	"github.com/longhaul-proxy/longhaul/proxy/upstream"
)

type testHTTPProxy struct {
	l    *Listener
	up   *upstream.Upstream
	reg  *upstream.Registry
	addr string
}

func startHTTPProxy(t testing.TB, cfg Config, policy balancer.Policy, endpoints ...string) *testHTTPProxy {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "web"
	}
	reg := upstream.NewRegistry()
	up := upstream.NewUpstream(cfg.Name, policy, reg, nil)
	proxytest.SetEndpoints(t, up, endpoints...)
	l := New(cfg, up)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		l.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &testHTTPProxy{l: l, up: up, reg: reg, addr: ln.Addr().String()}
}

// grpcBackend is a real grpc-go server with the health service, counting
// the calls it serves; a call with x-delay metadata (a duration) takes
// that long.
type grpcBackend struct {
	addr  string
	calls atomic.Int64
	srv   *grpc.Server
	hs    *health.Server
}

func startGRPCBackend(t testing.TB) *grpcBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &grpcBackend{addr: ln.Addr().String()}
	b.srv = grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		b.calls.Add(1)
		if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get("x-want-trailer")) > 0 {
			grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "from-"+b.addr))
		}
		if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get("x-delay")) > 0 {
			d, _ := time.ParseDuration(md.Get("x-delay")[0])
			time.Sleep(d) // a slow call, in flight for d
		}
		return h(ctx, req)
	}))
	b.hs = health.NewServer()
	healthpb.RegisterHealthServer(b.srv, b.hs)
	go b.srv.Serve(ln)
	t.Cleanup(b.srv.Stop)
	return b
}

func grpcClient(t testing.TB, addr string) healthpb.HealthClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return healthpb.NewHealthClient(cc)
}

// TestGRPCBalancedPerRequest: one client HTTP/2 connection, many calls,
// spread over every endpoint; trailers pass through.
func TestGRPCBalancedPerRequest(t *testing.T) {
	b1, b2, b3 := startGRPCBackend(t), startGRPCBackend(t), startGRPCBackend(t)
	p := startHTTPProxy(t, Config{UpstreamH2: true}, balancer.Policy{Kind: balancer.LeastConnections}, b1.addr, b2.addr, b3.addr)
	c := grpcClient(t, p.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const n = 300
	for i := range n {
		var trailer metadata.MD
		cctx := ctx
		if i%50 == 0 {
			cctx = metadata.AppendToOutgoingContext(ctx, "x-want-trailer", "1")
		}
		resp, err := c.Check(cctx, &healthpb.HealthCheckRequest{}, grpc.Trailer(&trailer))
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("call %d: status %v", i, resp.Status)
		}
		if i%50 == 0 && !strings.HasPrefix(strings.Join(trailer.Get("x-trailer"), ""), "from-") {
			t.Fatalf("call %d: trailer lost: %v", i, trailer)
		}
	}
	for _, b := range []*grpcBackend{b1, b2, b3} {
		if got := b.calls.Load(); got < n/3/2 {
			t.Errorf("endpoint %s served %d of %d calls, want about %d", b.addr, got, n, n/3)
		}
	}
	t.Logf("calls per endpoint: %d %d %d", b1.calls.Load(), b2.calls.Load(), b3.calls.Load())
	if p.l.relay == nil {
		t.Error("UpstreamH2 without Affinity should serve HTTP/2 clients with the relay")
	}
	var m dto.Metric
	if err := p.l.grpcOK.(prometheus.Metric).Write(&m); err != nil || m.GetHistogram().GetSampleCount() != n {
		t.Errorf("longhaul_request_duration_seconds{class=ok} counted %d calls (%v), want %d", m.GetHistogram().GetSampleCount(), err, n)
	}
}

// TestGRPCServerStreamAndStatus: a server stream (Health/Watch) flows
// through as it happens, and status codes pass unchanged.
func TestGRPCServerStreamAndStatus(t *testing.T) {
	b := startGRPCBackend(t)
	p := startHTTPProxy(t, Config{UpstreamH2: true}, balancer.Policy{Kind: balancer.Maglev}, b.addr)
	c := grpcClient(t, p.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("unknown service: got %v, want NotFound", err)
	}
	b.hs.SetServingStatus("svc", healthpb.HealthCheckResponse_SERVING)
	w, err := c.Watch(ctx, &healthpb.HealthCheckRequest{Service: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := w.Recv()
	if err != nil || first.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first update: %v %v", first, err)
	}
	b.hs.SetServingStatus("svc", healthpb.HealthCheckResponse_NOT_SERVING)
	second, err := w.Recv()
	if err != nil || second.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("second update (streamed, not buffered): %v %v", second, err)
	}
}

func TestGRPCNoEndpointIsUnavailable(t *testing.T) {
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := dead.Addr().String()
	dead.Close()
	p := startHTTPProxy(t, Config{UpstreamH2: true}, balancer.Policy{Kind: balancer.Maglev}, addr)
	c := grpcClient(t, p.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want Unavailable", err)
	}
}

// TestGRPCRetryOnDialFailure: a dead endpoint costs no failed call.
func TestGRPCRetryOnDialFailure(t *testing.T) {
	b := startGRPCBackend(t)
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := dead.Addr().String()
	dead.Close()
	p := startHTTPProxy(t, Config{UpstreamH2: true}, balancer.Policy{Kind: balancer.LeastConnections}, b.addr, addr)
	c := grpcClient(t, p.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 50 {
		if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
}

// TestHTTP1Headers: hop-by-hop headers are stripped, forwarding headers
// set, Host kept, and a chunked body streams both ways.
func TestHTTP1Headers(t *testing.T) {
	type seen struct {
		h    http.Header
		host string
		body string
	}
	got := make(chan seen, 1)
	backend := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Header.Clone(), r.Host, string(b)}
		w.Header().Set("Connection", "X-Secret")
		w.Header().Set("X-Secret", "hop")
		w.Header().Set("X-Kept", "yes")
		fmt.Fprint(w, "hello")
	}))
	p := startHTTPProxy(t, Config{}, balancer.Policy{Kind: balancer.Maglev}, backend)
	req, _ := http.NewRequest("POST", "http://"+p.addr+"/path?q=1", strings.NewReader("payload"))
	req.Host = "app.example"
	req.Header.Set("Connection", "X-Drop")
	req.Header.Set("X-Drop", "1")
	req.Header.Set("Keep-Alive", "timeout=5")
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello" || resp.Header.Get("X-Kept") != "yes" || resp.Header.Get("X-Secret") != "" {
		t.Errorf("response: body %q headers %v", body, resp.Header)
	}
	s := <-got
	if s.host != "app.example" {
		t.Errorf("Host: got %q, want app.example", s.host)
	}
	if s.body != "payload" {
		t.Errorf("body: got %q", s.body)
	}
	if s.h.Get("X-Drop") != "" || s.h.Get("Keep-Alive") != "" {
		t.Errorf("hop-by-hop headers reached the endpoint: %v", s.h)
	}
	if xff := s.h.Get("X-Forwarded-For"); xff != "203.0.113.9, 127.0.0.1" {
		t.Errorf("X-Forwarded-For: got %q", xff)
	}
	if s.h.Get("X-Forwarded-Proto") != "http" || !strings.Contains(s.h.Get("Forwarded"), "for=127.0.0.1") {
		t.Errorf("forwarding headers: %v", s.h)
	}
}

// TestHTTP2PerRequestBalance: h2c client, HTTP/1 endpoints, requests on one
// connection spread over endpoints by a header key.
func TestHTTPHeaderKeySticks(t *testing.T) {
	var hits [2]atomic.Int64
	var addrs []string
	for i := range 2 {
		addrs = append(addrs, startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits[i].Add(1)
			fmt.Fprint(w, i)
		})))
	}
	key, err := ParseRequestKey("header:X-User")
	if err != nil {
		t.Fatal(err)
	}
	p := startHTTPProxy(t, Config{Key: key}, balancer.Policy{Kind: balancer.Maglev}, addrs...)
	c := &http.Client{Transport: &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, n, a string, _ *tls.Config) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, n, a)
	}}}
	defer c.CloseIdleConnections()
	where := map[string]string{}
	for i := range 100 {
		user := fmt.Sprintf("user-%d", i%20)
		req, _ := http.NewRequest("GET", "http://"+p.addr+"/", nil)
		req.Header.Set("X-User", user)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("got HTTP/%d, want h2c", resp.ProtoMajor)
		}
		if prev, ok := where[user]; ok && prev != string(b) {
			t.Fatalf("%s moved from endpoint %s to %s", user, prev, b)
		}
		where[user] = string(b)
	}
	if hits[0].Load() == 0 || hits[1].Load() == 0 {
		t.Errorf("one endpoint got nothing: %d %d", hits[0].Load(), hits[1].Load())
	}
}

func startHTTPBackend(t testing.TB, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); wg.Wait() })
	return ln.Addr().String()
}

func TestParseRequestKey(t *testing.T) {
	for _, s := range []string{"client-ip", "client-ip-port", "path", "header:X-A", "cookie:sid", "query:u", "grpc-metadata:x-user"} {
		if _, err := ParseRequestKey(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	for _, s := range []string{"header", "header:", "bogus:x", "ip"} {
		if _, err := ParseRequestKey(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

// TestUpstreamH2HTTP1Client: on a listener whose endpoints speak h2c, an
// HTTP/1.1 client still gets through (the net/http path), next to HTTP/2
// clients on the relay.
func TestUpstreamH2HTTP1Client(t *testing.T) {
	be := startH2CBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "HTTP/%d", r.ProtoMajor)
	}))
	p := startHTTPProxy(t, Config{UpstreamH2: true}, balancer.Policy{Kind: balancer.Maglev}, be)
	for _, h2 := range []bool{false, true} {
		c := &http.Client{}
		if h2 {
			c.Transport = &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, n, a string, _ *tls.Config) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, n, a)
			}}
		}
		resp, err := c.Get("http://" + p.addr + "/")
		if err != nil {
			t.Fatalf("h2 %v: %v", h2, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "HTTP/2" || resp.ProtoMajor != map[bool]int{false: 1, true: 2}[h2] {
			t.Errorf("h2 %v: %d %q over HTTP/%d", h2, resp.StatusCode, b, resp.ProtoMajor)
		}
		c.CloseIdleConnections()
	}
}

// TestGRPCMetadataKeySticks: on the HTTP/2 relay, a grpc-metadata key
// keeps each user on one endpoint, and users spread over both.
func TestGRPCMetadataKeySticks(t *testing.T) {
	b1, b2 := startGRPCBackend(t), startGRPCBackend(t)
	key, err := ParseRequestKey("grpc-metadata:X-User")
	if err != nil {
		t.Fatal(err)
	}
	p := startHTTPProxy(t, Config{UpstreamH2: true, Key: key}, balancer.Policy{Kind: balancer.Maglev}, b1.addr, b2.addr)
	c := grpcClient(t, p.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for u := range 20 {
		user := fmt.Sprintf("user-%d", u)
		before1 := b1.calls.Load()
		for range 5 {
			if _, err := c.Check(metadata.AppendToOutgoingContext(ctx, "x-user", user), &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatal(err)
			}
		}
		if got := b1.calls.Load() - before1; got != 0 && got != 5 {
			t.Fatalf("%s split over endpoints: %d of 5 on the first", user, got)
		}
	}
	if b1.calls.Load() == 0 || b2.calls.Load() == 0 {
		t.Errorf("one endpoint got nothing: %d %d", b1.calls.Load(), b2.calls.Load())
	}
}

// TestUpstreamH2OverTLS: with TLS, ALPN h2 goes to the relay and
// http/1.1 to net/http, both with X-Forwarded-Proto https.
func TestUpstreamH2OverTLS(t *testing.T) {
	be := startH2CBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s", r.Header.Get("X-Forwarded-Proto"))
	}))
	cert := testcert.New(t, "longhaul-test", "localhost", "127.0.0.1", "::1").Cert
	cfg := Config{UpstreamH2: true, TLS: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}}
	p := startHTTPProxy(t, cfg, balancer.Policy{Kind: balancer.Maglev}, be)
	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: h2}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		c := &http.Client{Transport: tr}
		resp, err := c.Get("https://" + p.addr + "/")
		if err != nil {
			t.Fatalf("h2 %v: %v", h2, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "https" || (resp.ProtoMajor == 2) != h2 {
			t.Errorf("h2 %v: %d %q over HTTP/%d", h2, resp.StatusCode, b, resp.ProtoMajor)
		}
		tr.CloseIdleConnections()
	}
}
