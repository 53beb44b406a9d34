package httpproxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/internal/proxytest"
	"github.com/longhaul-proxy/longhaul/proxy/upstream"
)

// namedBackends start n HTTP/1 endpoints that answer their own address.
func namedBackends(t *testing.T, n int) []string {
	var addrs []string
	for range n {
		var self atomic.Value
		addr := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, self.Load().(string))
		}))
		self.Store(addr)
		addrs = append(addrs, addr)
	}
	return addrs
}

// get sends a GET on client and returns the answering endpoint, the
// response's Connection header and whether the request reused a connection.
func affinityGet(t *testing.T, c *http.Client, url string) (endpoint string, reused bool, closing bool) {
	t.Helper()
	var info httptrace.GotConnInfo
	req, _ := http.NewRequest("GET", url, nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { info = i }}))
	resp, err := c.Do(req)
	if err != nil {
		t.Error(err)
		return "", false, false
	}
	defer resp.Body.Close()
	b, rerr := io.ReadAll(resp.Body)
	if rerr != nil || resp.StatusCode != 200 {
		t.Logf("GET %s: %s, body %q, read error %v", url, resp.Status, b, rerr)
	}
	return string(b), info.Reused, resp.Close
}

// TestAffinityHTTP1: requests on one keep-alive connection all go to one
// endpoint; when drain asks the connection to move, the next response says
// Connection: close and the client's next connection goes elsewhere.
func TestAffinityHTTP1(t *testing.T) {
	be := namedBackends(t, 3)
	p := startHTTPProxy(t, Config{Affinity: true}, balancer.Policy{Kind: balancer.LeastConnections}, be...)
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer c.CloseIdleConnections()
	first, _, _ := affinityGet(t, c, "http://"+p.addr+"/")
	for i := range 20 {
		got, reused, closing := affinityGet(t, c, "http://"+p.addr+"/")
		if got != first || !reused || closing {
			t.Fatalf("request %d: endpoint %s reused=%v close=%v, want %s on the same connection", i, got, reused, closing, first)
		}
	}
	ss := p.reg.Endpoint(first)
	if len(ss) != 1 || ss[0].Info().Protocol != "http-affinity" {
		t.Fatalf("sessions on %s: %d, want the pinned connection", first, len(ss))
	}
	// The endpoint turns terminating: drain asks the pin to move.
	var rest []string
	for _, a := range be {
		if a != first {
			rest = append(rest, a)
		}
	}
	proxytest.SetEndpoints(t, p.up, rest...)
	ss[0].Migrate(time.Now().Add(5 * time.Second))
	// The idle connection was closed at once; the next request connects
	// anew and lands on another endpoint.
	got, reused, _ := affinityGet(t, c, "http://"+p.addr+"/")
	if got == first || reused {
		t.Errorf("after the move: endpoint %s reused=%v, want another endpoint on a new connection", got, reused)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.reg.Wait(ctx, func(i upstream.SessionInfo) bool { return i.Endpoint == first }); err != nil {
		t.Errorf("the pinned session on %s did not end: %v", first, err)
	}
}

// TestAffinityHTTP2GoAway: an h2c connection is pinned; asked to move while
// a request is in flight, the response ends the connection with GOAWAY
// (in-flight request completes), and the next request, on a new
// connection, goes to another endpoint.
func TestAffinityHTTP2GoAway(t *testing.T) {
	release := make(chan struct{})
	var slowSelf atomic.Value
	slow := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, slowSelf.Load().(string))
	}))
	slowSelf.Store(slow)
	other := namedBackends(t, 1)[0]
	p := startHTTPProxy(t, Config{Affinity: true}, balancer.Policy{Kind: balancer.Maglev}, slow)
	var dials atomic.Int32
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	if got, _, _ := affinityGet(t, c, "http://"+p.addr+"/"); got != slow {
		t.Fatalf("first request went to %s", got)
	}
	proxytest.SetEndpoints(t, p.up, slow, other) // both eligible; the pin stays
	done := make(chan string, 1)
	go func() { got, _, _ := affinityGet(t, c, "http://"+p.addr+"/slow"); done <- got }()
	time.Sleep(100 * time.Millisecond) // the slow request is in flight
	proxytest.SetEndpoints(t, p.up, other)
	p.reg.Endpoint(slow)[0].Migrate(time.Now().Add(5 * time.Second))
	close(release)
	if got := <-done; got != slow {
		t.Errorf("the request in flight was answered by %s, want %s (it finishes where it started)", got, slow)
	}
	got, _, _ := affinityGet(t, c, "http://"+p.addr+"/")
	if got != other {
		t.Errorf("after GOAWAY the next request went to %s, want %s", got, other)
	}
	if n := dials.Load(); n != 2 {
		t.Errorf("client dialled %d connections, want 2 (the second after GOAWAY)", n)
	}
}

// frameTap is a client connection that also parses what the server sends
// (the frames after the connection preface), recording GOAWAY and PING.
type frameTap struct {
	net.Conn
	pw     *io.PipeWriter
	mu     sync.Mutex
	events []string // "goaway <last stream id>", "ping"
	closed chan struct{}
}

func newFrameTap(c net.Conn) *frameTap {
	pr, pw := io.Pipe()
	ft := &frameTap{Conn: c, pw: pw, closed: make(chan struct{})}
	go func() {
		defer close(ft.closed)
		fr := http2.NewFramer(nil, pr)
		fr.SetMaxReadFrameSize(1 << 24)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				pr.CloseWithError(err)
				return
			}
			ft.mu.Lock()
			switch f := f.(type) {
			case *http2.GoAwayFrame:
				ft.events = append(ft.events, fmt.Sprintf("goaway %d", f.LastStreamID))
			case *http2.PingFrame:
				if !f.IsAck() {
					ft.events = append(ft.events, "ping")
				}
			}
			ft.mu.Unlock()
		}
	}()
	return ft
}

func (ft *frameTap) Read(p []byte) (int, error) {
	n, err := ft.Conn.Read(p)
	if n > 0 {
		ft.pw.Write(p[:n])
	}
	if err != nil {
		ft.pw.CloseWithError(err)
	}
	return n, err
}

func (ft *frameTap) Close() error {
	ft.pw.Close()
	return ft.Conn.Close()
}

func (ft *frameTap) seen() []string {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return slices.Clone(ft.events)
}

// tappedConn returns a gRPC client connection to addr whose every
// connection is a frameTap (closed when the test ends, if not before), and
// a function that lists those connections in the order they were dialled.
func tappedConn(t *testing.T, addr string) (*grpc.ClientConn, func() []*frameTap) {
	t.Helper()
	var mu sync.Mutex
	var taps []*frameTap
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			ft := newFrameTap(c)
			mu.Lock()
			taps = append(taps, ft)
			mu.Unlock()
			return ft, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc, func() []*frameTap {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(taps)
	}
}

// TestAffinityGRPCRelayGoAway: with Affinity and h2c endpoints the relay
// serves gRPC clients, and pins each connection: every call on it goes to
// one endpoint. Asked to move (its endpoint removed), the connection gets
// the two-step GOAWAY (largest stream id, PING, last stream id), the calls
// in flight finish where they started, and the client's next connection
// goes to another endpoint; no call fails.
func TestAffinityGRPCRelayGoAway(t *testing.T) {
	bs := []*grpcBackend{startGRPCBackend(t), startGRPCBackend(t), startGRPCBackend(t)}
	var addrs []string
	for _, b := range bs {
		addrs = append(addrs, b.addr)
	}
	p := startHTTPProxy(t, Config{Affinity: true, UpstreamH2: true}, balancer.Policy{Kind: balancer.LeastConnections}, addrs...)
	ends := make(chan upstream.MigrationEnd, 8)
	p.reg.OnMigrationEnd = func(e upstream.MigrationEnd) { ends <- e }
	cc, taps := tappedConn(t, p.addr)
	c := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	calls := func() []int64 {
		var n []int64
		for _, b := range bs {
			n = append(n, b.calls.Load())
		}
		return n
	}
	for i := range 20 {
		if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	first := slices.IndexFunc(bs, func(b *grpcBackend) bool { return b.calls.Load() > 0 })
	if n := calls(); first < 0 || n[first] != 20 {
		t.Fatalf("calls per endpoint %v, want all 20 on one", n)
	}
	ss := p.reg.Endpoint(bs[first].addr)
	if len(ss) != 1 || ss[0].Info().Protocol != "http-affinity" {
		t.Fatalf("sessions on the pinned endpoint: %d, want the pinned connection", len(ss))
	}

	// Calls in flight across the move, slow ones and a steady stream of
	// quick ones: none may fail.
	var failed atomic.Int32
	var wg sync.WaitGroup
	slow := metadata.AppendToOutgoingContext(ctx, "x-delay", "400ms")
	for range 3 {
		wg.Go(func() {
			if _, err := c.Check(slow, &healthpb.HealthCheckRequest{}); err != nil {
				t.Errorf("call in flight at the move: %v", err)
				failed.Add(1)
			}
		})
	}
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				t.Errorf("call during the move: %v", err)
				failed.Add(1)
			}
		}
	})
	for bs[first].calls.Load() < 23 {
		time.Sleep(5 * time.Millisecond)
	}
	proxytest.SetEndpoints(t, p.up, slices.Delete(slices.Clone(addrs), first, first+1)...)
	ss[0].Migrate(time.Now().Add(5 * time.Second))
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if err := p.reg.Wait(wctx, func(i upstream.SessionInfo) bool { return i.Endpoint == bs[first].addr }); err != nil {
		t.Errorf("the pinned session did not leave %s: %v", bs[first].addr, err)
	}
	time.Sleep(200 * time.Millisecond) // quick calls go on over the new connection
	close(stop)
	wg.Wait()

	dialed := taps()
	old := dialed[0]
	ndials := len(dialed)
	select {
	case <-old.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the first client connection did not close")
	}
	ev := old.seen()
	t.Logf("frames from the proxy on the first connection: %v", ev)
	var goaways []string
	for _, e := range ev {
		if strings.HasPrefix(e, "goaway") {
			goaways = append(goaways, e)
		}
	}
	gi := slices.Index(ev, "goaway 2147483647")
	if len(goaways) != 2 || gi < 0 || gi+2 >= len(ev) || ev[gi+1] != "ping" || ev[gi+2] == "goaway 0" ||
		!strings.HasPrefix(ev[gi+2], "goaway ") {
		t.Errorf("frames from the proxy on the first connection %v, want GOAWAY 2147483647, PING, GOAWAY <last stream>", ev)
	}
	if ndials != 2 {
		t.Errorf("client dialled %d connections, want 2", ndials)
	}
	before := calls()
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	after := calls()
	if after[first] != before[first] {
		t.Errorf("a call after the move went to the removed endpoint (calls %v -> %v)", before, after)
	}
	if n := failed.Load(); n != 0 {
		t.Errorf("%d calls failed", n)
	}
	cc.Close()
	for len(ends) > 0 {
		if e := <-ends; e.Outcome != upstream.OutcomeMoved {
			t.Errorf("migration of %s ended %s, want %s", e.Info.Endpoint, e.Outcome, upstream.OutcomeMoved)
		}
	}
}

// TestAffinityGRPCRelayEndpointGone: when the pinned endpoint leaves the
// picker without a drain, the next call is re-picked (and succeeds
// elsewhere), the pin moves with it, and the connection is told to leave
// with the two-step GOAWAY; the client's next connection is pinned anew.
func TestAffinityGRPCRelayEndpointGone(t *testing.T) {
	b1, b2 := startGRPCBackend(t), startGRPCBackend(t)
	p := startHTTPProxy(t, Config{Affinity: true, UpstreamH2: true}, balancer.Policy{Kind: balancer.LeastConnections}, b1.addr)
	cc, taps := tappedConn(t, p.addr)
	c := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	proxytest.SetEndpoints(t, p.up, b2.addr)
	for i := range 5 {
		if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("call %d after the endpoint left: %v", i, err)
		}
	}
	if n1, n2 := b1.calls.Load(), b2.calls.Load(); n1 != 1 || n2 != 5 {
		t.Errorf("calls %d on the gone endpoint, %d on the other; want 1 and 5", n1, n2)
	}
	dialed := taps()
	old := dialed[0]
	ndials := len(dialed)
	select {
	case <-old.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the first client connection did not close")
	}
	// With no call left on it, grpc-go may close the connection itself
	// before the final GOAWAY arrives.
	ev := old.seen()
	if len(ev) < 2 || len(ev) > 3 || ev[0] != "goaway 2147483647" || ev[1] != "ping" ||
		len(ev) == 3 && (!strings.HasPrefix(ev[2], "goaway ") || ev[2] == "goaway 0") {
		t.Errorf("frames from the proxy on the first connection %v, want GOAWAY 2147483647, PING[, GOAWAY <last stream>]", ev)
	}
	if ndials != 2 {
		t.Errorf("client dialled %d connections, want 2", ndials)
	}
	// The old connection's pin (moved to b2) ends as the relay is done
	// with the connection, just after the client saw it close.
	for deadline := time.Now().Add(5 * time.Second); len(p.reg.Endpoint(b2.addr)) != 1 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if ss := p.reg.Endpoint(b2.addr); len(ss) != 1 {
		t.Errorf("sessions on %s: %d, want the new connection's pin", b2.addr, len(ss))
	}
	if ss := p.reg.Endpoint(b1.addr); len(ss) != 0 {
		t.Errorf("sessions on the gone endpoint: %d", len(ss))
	}
}

// TestAffinityGRPCRelayForced: a pinned relay connection asked to move
// with a stream that outlives the deadline: the stream ends with
// UNAVAILABLE at the deadline, the connection closes, and the migration is
// recorded as forced.
func TestAffinityGRPCRelayForced(t *testing.T) {
	b := startGRPCBackend(t)
	p := startHTTPProxy(t, Config{Affinity: true, UpstreamH2: true}, balancer.Policy{Kind: balancer.LeastConnections}, b.addr)
	ends := make(chan upstream.MigrationEnd, 4)
	p.reg.OnMigrationEnd = func(e upstream.MigrationEnd) { ends <- e }
	c := grpcClient(t, p.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b.hs.SetServingStatus("svc", healthpb.HealthCheckResponse_SERVING)
	w, err := c.Watch(ctx, &healthpb.HealthCheckRequest{Service: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatal(err)
	}
	ss := p.reg.Endpoint(b.addr)
	if len(ss) != 1 {
		t.Fatalf("sessions on %s: %d, want 1", b.addr, len(ss))
	}
	start := time.Now()
	ss[0].Migrate(start.Add(300 * time.Millisecond))
	if _, err := w.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("stream open at the deadline: %v, want UNAVAILABLE", err)
	}
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Errorf("the stream ended after %v, before the deadline", took)
	}
	select {
	case e := <-ends:
		if e.Outcome != upstream.OutcomeForced {
			t.Errorf("migration outcome %s, want %s", e.Outcome, upstream.OutcomeForced)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the migration did not end")
	}
}
