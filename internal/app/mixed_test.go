package app

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/longhaul-proxy/longhaul/internal/testnet"
)

// TestMixedProtocolBackends: one http listener, an HTTPRoute to an
// HTTP/1.1 backend and a GRPCRoute to a backend of protocol h2c (a gRPC
// server, which speaks nothing else), served on the same port to an
// HTTP/1.1 client, an HTTP/2 one and a gRPC one.
func TestMixedProtocolBackends(t *testing.T) {
	web, rpc := routeBackend(t, "web-0"), grpcBackend(t, healthpb.HealthCheckResponse_SERVING)
	addr := testnet.FreeAddr(t)
	start(t, fmt.Sprintf(`
admin: {address: %q}
log: {level: warn}
listeners:
  - name: gw
    address: %q
    protocol: http
    backends:
      - {name: web, endpoints: {static: [%q]}}
      - {name: rpc, protocol: h2c, endpoints: {static: [%q]}}
    routes:
      http: [{name: site, rules: [{backendRefs: [{name: web}]}]}]
      grpc: [{name: health, rules: [{matches: [{method: {service: grpc.health.v1.Health, method: Check}}], backendRefs: [{name: rpc}]}]}]
`, testnet.FreeAddr(t), addr, web, rpc))
	if code, body := get(t, "http://"+addr+"/page"); code != 200 || !strings.HasPrefix(body, "web-0 /page") {
		t.Errorf("HTTP/1.1: %d %q", code, body)
	}
	protos := new(http.Protocols)
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: protos}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("http://" + addr + "/h2")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Errorf("HTTP/2 client: %d over %s", resp.StatusCode, resp.Proto)
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 10 {
		if r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("call %d: %v, %v", i, r, err)
		}
	}
	w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("a method no route serves: %v, want Unimplemented", err)
	}
}
