package h2relay

import (
	"context"
	"io"
	"net/http"
	"runtime"
	"testing"
	"time"

	"golang.org/x/net/http2"
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

// BenchmarkRoundTripGET: a GET with a 1 KiB response through
// Server.RoundTrip to an x/net HTTP/2 endpoint, 8 in flight.
// BenchmarkH2TransportGET is the same through x/net's http2.Transport, for
// comparison.
func BenchmarkRoundTripGET(b *testing.B) {
	benchGET(b, func(*h2cEndpoint) http.RoundTripper { return newRoundTripper(b, Config{}) })
}

func BenchmarkH2TransportGET(b *testing.B) {
	benchGET(b, func(*h2cEndpoint) http.RoundTripper {
		tr := &http2.Transport{AllowHTTP: true, DialTLSContext: dialPlain}
		b.Cleanup(tr.CloseIdleConnections)
		return tr
	})
}

func benchGET(b *testing.B, newRT func(*h2cEndpoint) http.RoundTripper) {
	payload := make([]byte, 1<<10)
	e := startH2CEndpoint(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(payload) }))
	rt := newRT(e)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	get := func() error {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+e.addr+"/", nil)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return err
	}
	if err := get(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(max(1, 8/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := get(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
