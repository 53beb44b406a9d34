package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/config"
)

func testLayout(dir string) layout {
	return layout{
		Dir:    dir,
		Listen: addrSet{TCPSink: "127.0.0.1:20001", TCPEcho: "127.0.0.1:20002", HTTP: "127.0.0.1:20003", GRPC: "127.0.0.1:20004"},
		Backends: backendSet{TCPSink: "127.0.0.1:19001", TCPEcho: "127.0.0.1:19002",
			HTTP: []string{"127.0.0.1:19003", "127.0.0.1:19004"}, GRPC: "127.0.0.1:19005"},
		MaxConns:  10512,
		NoFile:    30000,
		AdminAddr: "127.0.0.1:20005",
	}
}

func TestLonghaulConfigIsValid(t *testing.T) {
	b, err := longhaulConfig(testLayout(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(b)
	if err != nil {
		t.Fatalf("config.Parse: %v\n%s", err, b)
	}
	want := map[string]string{"tcp-sink": "tcp", "tcp-echo": "tcp", "http": "http", "grpc": "grpc"}
	if len(cfg.Listeners) != len(want) {
		t.Fatalf("%d listeners, want %d", len(cfg.Listeners), len(want))
	}
	for _, l := range cfg.Listeners {
		if want[l.Name] != l.Protocol {
			t.Errorf("listener %s: protocol %q, want %q", l.Name, l.Protocol, want[l.Name])
		}
		if l.MaxConnections != 10512 || l.Balance.Policy != "least-connections" {
			t.Errorf("listener %s: maxConnections %d, policy %s", l.Name, l.MaxConnections, l.Balance.Policy)
		}
	}
	if got := cfg.Listeners[2].Endpoints.Static; len(got) != 2 || got[1] != "127.0.0.1:19004" {
		t.Errorf("http endpoints = %v", got)
	}
}

func TestPeerConfigsAreFair(t *testing.T) {
	l := testLayout(t.TempDir())
	l.StreamModule = "/modules/ngx_stream_module.so"
	l.NginxUser = "root"
	h, err := haproxyConfig(l)
	if err != nil {
		t.Fatal(err)
	}
	n, err := nginxConfig(l)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, text string
		want       []string
	}{
		{"haproxy", string(h), []string{"nbthread 2", "maxconn 10512", "http-reuse always", "balance leastconn",
			"server s1 127.0.0.1:19004", "bind 127.0.0.1:20004 proto h2", "server s0 127.0.0.1:19005 proto h2"}},
		{"nginx", string(n), []string{"load_module /modules/ngx_stream_module.so;", "user root;", "worker_processes 2;",
			"worker_connections 21024;", "worker_rlimit_nofile 30000;", "keepalive 256;", "keepalive_requests 10000000;",
			"least_conn;", "server 127.0.0.1:19004;", "listen 127.0.0.1:20004 http2;", "grpc_pass grpc://grpc_up;",
			"proxy_half_close on;", `proxy_set_header Connection "";`, `proxy_set_header Connection "upgrade";`}},
	} {
		for _, w := range c.want {
			if !strings.Contains(c.text, w) {
				t.Errorf("%s config lacks %q:\n%s", c.name, w, c.text)
			}
		}
	}
	if strings.Contains(string(h), "splice") {
		t.Errorf("haproxy config has splice options without HAProxySplice:\n%s", h)
	}
	l.HAProxySplice = true
	if h, err = haproxyConfig(l); err != nil || strings.Count(string(h), "option splice-re") != 4 || !strings.Contains(string(h), "maxpipes 64") {
		t.Errorf("haproxy config with HAProxySplice (%v):\n%s", err, h)
	}
	l.StreamModule, l.NginxUser = "", ""
	n, err = nginxConfig(l)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(n), "load_module") || strings.Contains(string(n), "user ") {
		t.Errorf("nginx config without module or user still names them:\n%s", n)
	}
}

// TestPeerConfigsCheck asks the installed HAProxy and NGINX, if any, to
// check the generated files; it never installs them.
func TestPeerConfigsCheck(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir := t.TempDir()
	l := testLayout(dir)
	l.NoFile = 1024
	l.MaxConns = 256
	l.StreamModule = findStreamModule()
	l.HAProxySplice = true
	if path, err := exec.LookPath("haproxy"); err == nil {
		b, err := haproxyConfig(l)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, "haproxy.cfg")
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.CommandContext(ctx, path, "-c", "-f", f).CombinedOutput(); err != nil {
			t.Errorf("haproxy -c: %v\n%s", err, out)
		}
	}
	if path, err := exec.LookPath("nginx"); err == nil && (l.StreamModule != "" || nginxHasStaticStream(ctx)) {
		if os.Geteuid() == 0 {
			l.NginxUser = "root"
		}
		b, err := nginxConfig(l)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.CommandContext(ctx, path, "-t", "-c", f).CombinedOutput(); err != nil {
			t.Errorf("nginx -t: %v\n%s", err, out)
		}
	}
}
