package h2relay

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testRouter balances round robin over its endpoints, skipping the tried
// and the excluded ones.
type testRouter struct {
	mu       sync.Mutex
	addrs    []string
	excluded map[string]bool
	next     int
	active   atomic.Int64
	routed   atomic.Int64 // streams routed to an endpoint, in all
	// routedGET counts those of GET requests (the raw clients' requests,
	// not gRPC calls).
	routedGET atomic.Int64
}

func (r *testRouter) Route(h *RequestHead, tried []string) (string, func(), bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for range r.addrs {
		a := r.addrs[r.next%len(r.addrs)]
		r.next++
		if r.excluded[a] || slices.Contains(tried, a) {
			continue
		}
		r.active.Add(1)
		r.routed.Add(1)
		if h.Method == "GET" {
			r.routedGET.Add(1)
		}
		var once sync.Once
		return a, func() { once.Do(func() { r.active.Add(-1) }) }, true
	}
	return "", nil, false
}

func (r *testRouter) exclude(addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.excluded == nil {
		r.excluded = map[string]bool{}
	}
	r.excluded[addr] = true
}

type testObserver struct {
	mu       sync.Mutex
	outcomes []Outcome
	dials    int
	calmed   []string
}

func (o *testObserver) RequestDone(x Outcome) {
	o.mu.Lock()
	o.outcomes = append(o.outcomes, x)
	o.mu.Unlock()
}
func (o *testObserver) Calmed(reason string) {
	o.mu.Lock()
	o.calmed = append(o.calmed, reason)
	o.mu.Unlock()
}

func (o *testObserver) DialFailed(string, error) {
	o.mu.Lock()
	o.dials++
	o.mu.Unlock()
}

type testRelay struct {
	srv  *Server
	addr string
}

// startRelay serves cfg on a loopback listener until the test ends.
func startRelay(t testing.TB, cfg Config) *testRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := New(cfg)
	var wg sync.WaitGroup
	acceptLoop(ln, &wg, func(c net.Conn) { srv.ServeConn(context.Background(), c) })
	t.Cleanup(func() {
		ln.Close()
		srv.Close()
		wg.Wait()
	})
	return &testRelay{srv: srv, addr: ln.Addr().String()}
}

// acceptLoop serves each connection ln accepts on a goroutine of its own
// until ln is closed; wg counts the goroutines.
func acceptLoop(ln net.Listener, wg *sync.WaitGroup, serve func(net.Conn)) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); serve(c) }()
		}
	}()
}

// trackingListener records accepted connections so that a test can cut
// them as a crash would.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *trackingListener) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
	l.conns = nil
}

func (l *trackingListener) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// backend is a grpc-go server with the health service and a test service
// (Echo bidi stream, Wait unary), counting calls.
type backend struct {
	addr     string
	ln       *trackingListener
	srv      *grpc.Server
	hs       *health.Server
	calls    atomic.Int64
	waitSeen chan waitInfo
}

type waitInfo struct {
	deadline bool
	md       metadata.MD
	err      error // ctx.Err() when the wait ended
}

func startBackend(t testing.TB, opts ...grpc.ServerOption) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{addr: ln.Addr().String(), ln: &trackingListener{Listener: ln}, waitSeen: make(chan waitInfo, 16)}
	opts = append(opts, grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		b.calls.Add(1)
		if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get("x-want-trailer")) > 0 {
			grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "from-"+b.addr))
		}
		return h(ctx, req)
	}))
	b.srv = grpc.NewServer(opts...)
	b.hs = health.NewServer()
	healthpb.RegisterHealthServer(b.srv, b.hs)
	b.srv.RegisterService(&testServiceDesc, b)
	done := make(chan struct{})
	go func() { b.srv.Serve(b.ln); close(done) }()
	t.Cleanup(func() { b.srv.Stop(); <-done })
	return b
}

var testServiceDesc = grpc.ServiceDesc{
	ServiceName: "h2relay.test.Test",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Wait",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			b := srv.(*backend)
			b.calls.Add(1)
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			_, hasDeadline := ctx.Deadline()
			md, _ := metadata.FromIncomingContext(ctx)
			if d, err := time.ParseDuration(in.Value); err == nil {
				select {
				case <-time.After(d):
				case <-ctx.Done():
				}
			} else {
				<-ctx.Done()
			}
			err := ctx.Err()
			select {
			case b.waitSeen <- waitInfo{deadline: hasDeadline, md: md, err: err}:
			default:
			}
			if err != nil {
				return nil, status.FromContextError(err).Err()
			}
			return wrapperspb.String("waited"), nil
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Echo",
		ServerStreams: true,
		ClientStreams: true,
		Handler: func(srv any, ss grpc.ServerStream) error {
			for {
				m := new(wrapperspb.BytesValue)
				if err := ss.RecvMsg(m); errors.Is(err, io.EOF) {
					return nil
				} else if err != nil {
					return err
				}
				if err := ss.SendMsg(m); err != nil {
					return err
				}
			}
		},
	}},
}

func dialGRPC(t testing.TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func wait(ctx context.Context, cc *grpc.ClientConn, d string, opts ...grpc.CallOption) error {
	out := new(wrapperspb.StringValue)
	return cc.Invoke(ctx, "/h2relay.test.Test/Wait", wrapperspb.String(d), out, opts...)
}

func eventually(t *testing.T, d time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func dialPlain(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
	return (&net.Dialer{}).DialContext(ctx, network, addr)
}
