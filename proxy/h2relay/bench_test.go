package h2relay

import (
	"context"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// BenchmarkRelayGRPCUnary: one gRPC unary call (Health/Check) through the
// relay, with client and endpoint in this process.
func BenchmarkRelayGRPCUnary(b *testing.B) {
	be := startBackend(b)
	p := startRelay(b, Config{Router: &testRouter{addrs: []string{be.addr}}})
	c := healthpb.NewHealthClient(dialGRPC(b, p.addr))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
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
