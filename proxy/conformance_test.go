package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/balancer"
)

// toolsDir returns the directory of conformance tools that hack/tools.sh
// builds. These tests are part of the README's test command; when the tools
// are missing they fail with the way to get them, rather than pass.
func toolsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("LONGHAUL_TOOLS_BIN")
	if dir == "" {
		if os.Getenv("LONGHAUL_SKIP_TOOLS") == "1" {
			t.Skip("LONGHAUL_SKIP_TOOLS=1")
		}
		t.Fatal("LONGHAUL_TOOLS_BIN is not set: run `make test`, or set it to the output of hack/tools.sh (or LONGHAUL_SKIP_TOOLS=1 to skip)")
	}
	return dir
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitTCP(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not start listening", addr)
}

// TestGRPCInterop runs grpc-go's interop client through longhaul against
// grpc-go's interop server, case by case.
func TestGRPCInterop(t *testing.T) {
	dir := toolsDir(t)
	backend := freeAddr(t)
	_, port, _ := net.SplitHostPort(backend)
	ctx, cancel := context.WithCancel(context.Background())
	srv := exec.CommandContext(ctx, filepath.Join(dir, "interop_server"), "--port="+port, "--use_tls=false")
	srv.Stdout, srv.Stderr = os.Stderr, os.Stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); srv.Wait() })
	waitTCP(t, backend)
	p := startHTTPProxy(t, HTTPConfig{UpstreamH2: true}, balancer.Policy{Kind: balancer.LeastConnections}, backend)
	_, pport, _ := net.SplitHostPort(p.addr)
	cases := []string{"empty_unary", "large_unary", "client_streaming", "server_streaming", "ping_pong",
		"empty_stream", "cancel_after_begin", "cancel_after_first_response", "timeout_on_sleeping_server",
		"custom_metadata", "status_code_and_message", "special_status_message", "unimplemented_method",
		"unimplemented_service"}
	for _, tc := range cases {
		t.Run(tc, func(t *testing.T) {
			cctx, ccancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer ccancel()
			out, err := exec.CommandContext(cctx, filepath.Join(dir, "interop_client"),
				"--server_host=127.0.0.1", "--server_port="+pport, "--use_tls=false", "--test_case="+tc).CombinedOutput()
			if err != nil {
				t.Fatalf("interop case %s failed: %v\n%s", tc, err, out)
			}
		})
	}
}

// TestH2Spec runs the h2spec HTTP/2 conformance suite against longhaul's
// HTTP listener, over h2c and over TLS.
func TestH2Spec(t *testing.T) {
	dir := toolsDir(t)
	backend := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok")
	}))
	cert, err := tls.X509KeyPair(selfSigned(t, "longhaul-test"))
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"h2c", "tls"} {
		t.Run(mode, func(t *testing.T) {
			cfg := HTTPConfig{Name: "h2spec-" + mode}
			args := []string{}
			if mode == "tls" {
				cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
				args = append(args, "-t", "-k")
			}
			p := startHTTPProxy(t, cfg, balancer.Policy{Kind: balancer.Maglev}, backend)
			host, port, _ := net.SplitHostPort(p.addr)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			args = append(args, "-h", host, "-p", port, "-o", "5")
			out, err := exec.CommandContext(ctx, filepath.Join(dir, "h2spec"), args...).CombinedOutput()
			summary := string(out)
			if i := strings.LastIndex(summary, "Failures:"); i >= 0 {
				summary = summary[i:]
			}
			if err != nil {
				t.Fatalf("h2spec (%s) failed: %v\n%s", mode, err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			t.Logf("h2spec %s: %s", mode, lines[len(lines)-1])
		})
	}
}
