package httpproxy

import (
	"context"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/longhaul-proxy/longhaul/balancer"
)

// BenchmarkGRPCUnary measures one gRPC unary call (Health/Check) through
// the HTTP/2 path: a grpc-go client, longhaul's listener (its HTTP/2
// relay, package h2relay), a pooled h2c upstream, and a grpc-go server,
// all in this process on loopback. Compare
// with BenchmarkGRPCUnaryDirect for the proxy's share; run with -cpuprofile
// to see where it goes.
func BenchmarkGRPCUnary(b *testing.B) {
	benchGRPC(b, true)
}

// BenchmarkGRPCUnaryDirect is the same call without the proxy.
func BenchmarkGRPCUnaryDirect(b *testing.B) { benchGRPC(b, false) }

func benchGRPC(b *testing.B, viaProxy bool) {
	be := startGRPCBackend(b)
	addr := be.addr
	if viaProxy {
		addr = startHTTPProxy(b, Config{UpstreamH2: true}, balancer.Policy{Kind: balancer.LeastConnections}, be.addr).addr
	}
	c := grpcClient(b, addr)
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
