package h2relay

import (
	"context"
	"runtime"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// BenchmarkRelayGRPCUnary: one gRPC unary call (Health/Check) through the
// relay, with client and endpoint in this process.
func BenchmarkRelayGRPCUnary(b *testing.B) { benchUnary(b, 1) }

// BenchmarkRelayGRPCUnary50: the same with 50 calls in flight on the one
// client connection, as the ghz workload of the benchmark harness runs.
func BenchmarkRelayGRPCUnary50(b *testing.B) { benchUnary(b, 50) }

func benchUnary(b *testing.B, inFlight int) {
	be := startBackend(b)
	p := startRelay(b, Config{Router: &testRouter{addrs: []string{be.addr}}})
	c := healthpb.NewHealthClient(dialGRPC(b, p.addr))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(max(1, inFlight/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
