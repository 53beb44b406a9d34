package httpproxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/proxy/accesslog"
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

// BenchmarkHTTP1AccessLog is one HTTP/1.1 GET through an http listener
// with the access log off and on (every request logged, as JSON to
// io.Discard): the difference is the access log's share of a request.
func BenchmarkHTTP1AccessLog(b *testing.B) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	b.Cleanup(be.Close)
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	jsonLog := zap.New(zapcore.NewCore(enc, zapcore.AddSync(io.Discard), zapcore.InfoLevel))
	for _, bc := range []struct {
		name string
		ac   accesslog.Config
	}{
		{"off", accesslog.Config{}},
		{"on", accesslog.Config{Enabled: true, Sample: 1}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := startHTTPProxy(b, Config{Logger: jsonLog, AccessLog: bc.ac}, balancer.Policy{Kind: balancer.Maglev},
				strings.TrimPrefix(be.URL, "http://"))
			tr := &http.Transport{MaxIdleConnsPerHost: 64}
			b.Cleanup(tr.CloseIdleConnections)
			c := &http.Client{Transport: tr}
			url := "http://" + p.addr + "/"
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := c.Get(url)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}
