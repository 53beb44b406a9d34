package h2relay

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

// TestBalancedPerRequest: one client connection, calls spread over three
// endpoints, trailers relayed, outcomes observed.
func TestBalancedPerRequest(t *testing.T) {
	bs := []*backend{startBackend(t), startBackend(t), startBackend(t)}
	r := &testRouter{addrs: []string{bs[0].addr, bs[1].addr, bs[2].addr}}
	obs := &testObserver{}
	p := startRelay(t, Config{Router: r, Observer: obs})
	c := healthpb.NewHealthClient(dialGRPC(t, p.addr))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const n = 300
	for i := range n {
		var tr metadata.MD
		cctx := ctx
		if i%10 == 0 {
			cctx = metadata.AppendToOutgoingContext(ctx, "x-want-trailer", "1")
		}
		resp, err := c.Check(cctx, &healthpb.HealthCheckRequest{}, grpc.Trailer(&tr))
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("call %d: %v", i, resp.Status)
		}
		if i%10 == 0 && !strings.HasPrefix(strings.Join(tr.Get("x-trailer"), ""), "from-") {
			t.Fatalf("call %d: trailer lost: %v", i, tr)
		}
	}
	for _, b := range bs {
		if got := b.calls.Load(); got < n/3/2 {
			t.Errorf("endpoint %s served %d of %d", b.addr, got, n)
		}
	}
	eventually(t, 2*time.Second, func() bool { return r.active.Load() == 0 }, "every route released")
	obs.mu.Lock()
	defer obs.mu.Unlock()
	ok := 0
	for _, o := range obs.outcomes {
		if o.GRPC && o.GRPCStatus == 0 && o.Status == 200 {
			ok++
		}
	}
	if ok != n {
		t.Errorf("observer saw %d ok gRPC calls of %d", ok, n)
	}
}
