package h2relay

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestBidiStreamFlowControl: 8 MiB each way on one bidirectional stream,
// with small windows on the endpoint so that the relay's windows carry
// the back-pressure; both directions arrive intact.
func TestBidiStreamFlowControl(t *testing.T) {
	b := startBackend(t, grpc.InitialWindowSize(64<<10), grpc.InitialConnWindowSize(64<<10))
	p := startRelay(t, Config{Router: &testRouter{addrs: []string{b.addr}}, StreamWindow: 256 << 10, ConnWindow: 512 << 10})
	cc := dialGRPC(t, p.addr, grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := cc.NewStream(ctx, &testServiceDesc.Streams[0], "/h2relay.test.Test/Echo")
	if err != nil {
		t.Fatal(err)
	}
	const total, chunk = 8 << 20, 32 << 10
	sent := sha256.New()
	rng := rand.New(rand.NewPCG(1, 2))
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, chunk)
		for range total / chunk {
			for i := range buf {
				buf[i] = byte(rng.Uint32())
			}
			sent.Write(buf)
			if err := st.SendMsg(wrapperspb.Bytes(buf)); err != nil {
				errc <- err
				return
			}
		}
		errc <- st.CloseSend()
	}()
	got := sha256.New()
	n := 0
	for {
		m := new(wrapperspb.BytesValue)
		err := st.RecvMsg(m)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("recv after %d bytes: %v", n, err)
		}
		n += len(m.Value)
		got.Write(m.Value)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if n != total || !bytes.Equal(sent.Sum(nil), got.Sum(nil)) {
		t.Fatalf("echoed %d bytes of %d, hash equal %v", n, total, bytes.Equal(sent.Sum(nil), got.Sum(nil)))
	}
}

// TestClientCancelReachesBackend: a cancelled call is cancelled at the
// endpoint (RST_STREAM CANCEL relayed).
func TestClientCancelReachesBackend(t *testing.T) {
	b := startBackend(t)
	r := &testRouter{addrs: []string{b.addr}}
	p := startRelay(t, Config{Router: r})
	cc := dialGRPC(t, p.addr)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- wait(ctx, cc, "forever") }()
	eventually(t, 5*time.Second, func() bool { return b.calls.Load() == 1 || r.active.Load() == 1 }, "the call to start")
	time.Sleep(100 * time.Millisecond)
	cancel()
	if err := <-errc; status.Code(err) != codes.Canceled {
		t.Fatalf("client: %v, want Canceled", err)
	}
	select {
	case w := <-b.waitSeen:
		if w.err != context.Canceled {
			t.Fatalf("endpoint saw %v, want context.Canceled", w.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the endpoint never saw the cancel")
	}
	eventually(t, 2*time.Second, func() bool { return r.active.Load() == 0 }, "the route released")
}

// TestDeadlinePasses: grpc-timeout reaches the endpoint, which ends the
// call at the deadline.
func TestDeadlinePasses(t *testing.T) {
	b := startBackend(t)
	p := startRelay(t, Config{Router: &testRouter{addrs: []string{b.addr}}})
	cc := dialGRPC(t, p.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-custom", "v1")
	err := wait(ctx, cc, "forever")
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	select {
	case w := <-b.waitSeen:
		// The client also cancels at its deadline: either may come first.
		if !w.deadline || w.err == nil {
			t.Fatalf("endpoint: deadline %v, ended by %v", w.deadline, w.err)
		}
		if got := w.md.Get("x-custom"); len(got) != 1 || got[0] != "v1" {
			t.Errorf("metadata: %v", w.md)
		}
		if len(w.md.Get("x-forwarded-for")) != 1 || len(w.md.Get("forwarded")) != 1 || w.md.Get("x-forwarded-proto")[0] != "http" {
			t.Errorf("forwarding headers: %v", w.md)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the endpoint never ended the call")
	}
}

// TestUpstreamKilledMidStream: a server stream whose endpoint connection
// dies ends with UNAVAILABLE.
func TestUpstreamKilledMidStream(t *testing.T) {
	b := startBackend(t)
	p := startRelay(t, Config{Router: &testRouter{addrs: []string{b.addr}}})
	c := healthpb.NewHealthClient(dialGRPC(t, p.addr))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b.hs.SetServingStatus("svc", healthpb.HealthCheckResponse_SERVING)
	w, err := c.Watch(ctx, &healthpb.HealthCheckRequest{Service: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatal(err)
	}
	b.ln.cut()
	if _, err := w.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want Unavailable", err)
	}
	// Before any response header: a trailers-only UNAVAILABLE.
	b.srv.Stop()
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("dead endpoint: got %v, want Unavailable", err)
	}
}

// TestNoEndpoint: no endpoint means UNAVAILABLE.
func TestNoEndpoint(t *testing.T) {
	p := startRelay(t, Config{Router: &testRouter{}})
	c := healthpb.NewHealthClient(dialGRPC(t, p.addr))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want Unavailable", err)
	}
}

// TestRetryOnDialFailure: a dead endpoint costs no failed call.
func TestRetryOnDialFailure(t *testing.T) {
	b := startBackend(t)
	dead := startBackend(t)
	dead.srv.Stop()
	obs := &testObserver{}
	p := startRelay(t, Config{Router: &testRouter{addrs: []string{dead.addr, b.addr}}, Observer: obs})
	c := healthpb.NewHealthClient(dialGRPC(t, p.addr))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 20 {
		if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.dials == 0 {
		t.Error("no dial failure observed")
	}
}

// TestDrainEndpoint: a stream open past the drain deadline ends with
// UNAVAILABLE and the endpoint's connection closes; other calls go on.
func TestDrainEndpoint(t *testing.T) {
	b1, b2 := startBackend(t), startBackend(t)
	r := &testRouter{addrs: []string{b1.addr}}
	p := startRelay(t, Config{Router: r})
	c := healthpb.NewHealthClient(dialGRPC(t, p.addr))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b1.hs.SetServingStatus("svc", healthpb.HealthCheckResponse_SERVING)
	w, err := c.Watch(ctx, &healthpb.HealthCheckRequest{Service: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.addrs = append(r.addrs, b2.addr)
	r.mu.Unlock()
	r.exclude(b1.addr)
	dctx, dcancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer dcancel()
	start := time.Now()
	drained := make(chan struct{})
	go func() { p.srv.DrainEndpoint(dctx, b1.addr, nil); close(drained) }()
	for i := range 10 {
		if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("call %d during drain: %v", i, err)
		}
	}
	if _, err := w.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("stream past the deadline: got %v, want Unavailable", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("stream cut after %v, before the deadline", d)
	}
	<-drained
	eventually(t, 2*time.Second, func() bool {
		p.srv.pool.mu.Lock()
		defer p.srv.pool.mu.Unlock()
		return p.srv.pool.eps[b1.addr] == nil
	}, "the drained endpoint's connections to go")
	if b2.calls.Load() != 10 {
		t.Errorf("other endpoint served %d calls, want 10", b2.calls.Load())
	}
}

// TestShutdownGraceful: a call in flight at Shutdown completes; the
// connection is then closed.
func TestShutdownGraceful(t *testing.T) {
	b := startBackend(t)
	p := startRelay(t, Config{Router: &testRouter{addrs: []string{b.addr}}})
	cc := dialGRPC(t, p.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := wait(ctx, cc, "1ms"); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- wait(ctx, cc, "300ms") }()
	eventually(t, 5*time.Second, func() bool { return b.calls.Load() == 2 }, "the call to start")
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := p.srv.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("call in flight: %v", err)
	}
}

// TestMaxConcurrentStreamsOpensConnections: an endpoint that takes one
// stream per connection gets more connections, and every call succeeds.
func TestMaxConcurrentStreamsOpensConnections(t *testing.T) {
	b := startBackend(t, grpc.MaxConcurrentStreams(1))
	p := startRelay(t, Config{Router: &testRouter{addrs: []string{b.addr}}})
	cc := dialGRPC(t, p.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errc := make(chan error, 8)
	for range 8 {
		go func() { errc <- wait(ctx, cc, "100ms") }()
	}
	for range 8 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if n := b.ln.open(); n < 2 {
		t.Errorf("endpoint got %d connections for 8 concurrent calls at 1 stream each", n)
	}
}

// TestUpstreamGoAway: an endpoint that stops gracefully finishes the call
// in flight; later calls go to the other endpoint.
func TestUpstreamGoAway(t *testing.T) {
	b1, b2 := startBackend(t), startBackend(t)
	p := startRelay(t, Config{Router: &testRouter{addrs: []string{b1.addr, b2.addr}}})
	cc := dialGRPC(t, p.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 4 { // a connection to each
		if err := wait(ctx, cc, "1ms"); err != nil {
			t.Fatal(err)
		}
	}
	errc := make(chan error, 1)
	before := b1.calls.Load()
	go func() {
		// Round robin: one of two calls lands on b1.
		errc <- wait(ctx, cc, "300ms")
	}()
	go func() { errc <- wait(ctx, cc, "300ms") }()
	eventually(t, 5*time.Second, func() bool { return b1.calls.Load() > before }, "a call on the first endpoint")
	stopped := make(chan struct{})
	go func() { b1.srv.GracefulStop(); close(stopped) }()
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatalf("call in flight across GOAWAY: %v", err)
		}
	}
	<-stopped
	for i := range 10 {
		if err := wait(ctx, cc, "1ms"); err != nil {
			t.Fatalf("call %d after GOAWAY: %v", i, err)
		}
	}
}

// TestSilentEndpointDetected: an endpoint connection that goes silent
// (no answer to PING) is closed, and its streams end with UNAVAILABLE.
func TestSilentEndpointDetected(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns sync.WaitGroup
	defer conns.Wait()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				// SETTINGS, then nothing: read and ignore every frame.
				defer conns.Done()
				defer c.Close()
				fr := http2.NewFramer(c, c)
				fr.WriteSettings()
				io.Copy(io.Discard, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	p := startRelay(t, Config{Router: &testRouter{addrs: []string{ln.Addr().String()}},
		UpstreamPingInterval: 100 * time.Millisecond, UpstreamPingTimeout: 100 * time.Millisecond})
	c := healthpb.NewHealthClient(dialGRPC(t, p.addr))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want Unavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("detected after %v", d)
	}
}
