package h2relay

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestStress mixes unary calls, streams of random sizes and cancellations
// on a few client connections while one endpoint is drained: nothing
// deadlocks or races, every call ends as it should, and every stream gives
// its route back.
func TestStress(t *testing.T) {
	bs := []*backend{
		startBackend(t, grpc.InitialWindowSize(64<<10), grpc.InitialConnWindowSize(64<<10)),
		startBackend(t, grpc.MaxConcurrentStreams(8)),
		startBackend(t),
	}
	r := &testRouter{addrs: []string{bs[0].addr, bs[1].addr, bs[2].addr}}
	p := startRelay(t, Config{Router: r, StreamWindow: 128 << 10, ConnWindow: 256 << 10})
	var clients []*grpc.ClientConn
	for range 3 {
		clients = append(clients, dialGRPC(t, p.addr))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ok, cancelled, unavailable, cut atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(2 * time.Second)
	for w := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			cc := clients[w%len(clients)]
			for time.Now().Before(deadline) && ctx.Err() == nil {
				cctx, ccancel := context.WithCancel(ctx)
				cancelAt := time.Duration(-1)
				if rng.IntN(4) == 0 {
					cancelAt = time.Duration(rng.IntN(3000)) * time.Microsecond
					time.AfterFunc(cancelAt, ccancel)
				}
				var err error
				switch rng.IntN(3) {
				case 0:
					_, err = healthpb.NewHealthClient(cc).Check(cctx, &healthpb.HealthCheckRequest{})
				case 1:
					err = wait(cctx, cc, "2ms")
				default:
					err = echo(cctx, cc, rng.IntN(4)+1, rng.IntN(100<<10)+1)
				}
				ccancel()
				switch status.Code(err) {
				case codes.OK:
					ok.Add(1)
				case codes.Canceled:
					if cancelAt < 0 {
						t.Errorf("canceled without a cancel: %v", err)
					}
					cancelled.Add(1)
				case codes.Unavailable:
					unavailable.Add(1)
				case codes.Internal:
					// The drain's 200ms deadline can cut a response in the
					// middle of a gRPC message: the client has part of it
					// when the UNAVAILABLE trailers come, and grpc-go
					// reports the short message. Any other Internal error
					// is a failure.
					if !strings.Contains(err.Error(), "unexpected EOF") {
						t.Errorf("call: %v", err)
					}
					cut.Add(1)
				default:
					t.Errorf("call: %v", err)
				}
			}
		}()
	}
	time.Sleep(time.Second)
	r.exclude(bs[0].addr)
	dctx, dcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	p.srv.DrainEndpoint(dctx, bs[0].addr, nil)
	dcancel()
	wg.Wait()
	t.Logf("%d ok, %d cancelled, %d unavailable, %d cut mid-message by the drain deadline", ok.Load(), cancelled.Load(), unavailable.Load(), cut.Load())
	if n := cut.Load(); n > 2 {
		t.Errorf("%d calls cut mid-message, want at most the few in flight at the drain deadline", n)
	}
	if ok.Load() == 0 {
		t.Fatal("no call succeeded")
	}
	eventually(t, 5*time.Second, func() bool { return r.active.Load() == 0 }, "every route released")
	for _, cc := range p.srv.clientConns() {
		cc.mu.Lock()
		n, a := len(cc.streams), cc.active
		cc.mu.Unlock()
		if n != 0 || a != 0 {
			t.Errorf("client connection holds %d streams (active %d)", n, a)
		}
	}
}

// echo sends n messages of size bytes on an Echo stream and checks them.
func echo(ctx context.Context, cc *grpc.ClientConn, n, size int) error {
	st, err := cc.NewStream(ctx, &testServiceDesc.Streams[0], "/h2relay.test.Test/Echo")
	if err != nil {
		return err
	}
	msg := bytes.Repeat([]byte{byte(size)}, size)
	errc := make(chan error, 1)
	go func() {
		for range n {
			if err := st.SendMsg(wrapperspb.Bytes(msg)); err != nil {
				errc <- nil // the receive side reports why
				return
			}
		}
		errc <- st.CloseSend()
	}()
	got := 0
	for {
		m := new(wrapperspb.BytesValue)
		err := st.RecvMsg(m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			<-errc
			return err
		}
		if !bytes.Equal(m.Value, msg) {
			return status.Error(codes.DataLoss, "echo differs")
		}
		got++
	}
	if err := <-errc; err != nil {
		return err
	}
	if got != n {
		return status.Errorf(codes.DataLoss, "echoed %d of %d", got, n)
	}
	return nil
}
