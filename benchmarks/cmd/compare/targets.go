package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/longhaul-proxy/longhaul/benchmarks/internal/proc"
)

const (
	direct   = "direct"
	longhaul = "longhaul"
	// longhaulBase is longhaul built from the -base revision, run as
	// longhaul is.
	longhaulBase = "longhaul-base"
	haproxy      = "haproxy"
	nginx        = "nginx"
)

// target is what the load generator sends to: the backends themselves
// (direct, no program) or a proxy in front of them.
type target struct {
	name string
	// addrs is where clients connect.
	addrs addrSet
	// idleURLs are the WebSocket URLs the idle workload spreads over.
	idleURLs []string
	// config is the generated configuration file; empty for direct.
	config string
	// Proc runs the proxy; its Argv is nil for direct.
	proc.Proc
}

func (t *target) isProxy() bool { return t.Argv != nil }

// knownTargets are every target, in the order of the report's rows.
var knownTargets = []string{direct, longhaul, longhaulBase, haproxy, nginx}

// start runs the proxy and waits until every listener accepts.
func (t *target) start(ctx context.Context) error {
	err := t.Start(ctx, []string{t.addrs.TCPSink, t.addrs.TCPEcho, t.addrs.HTTP, t.addrs.GRPC}, 15*time.Second)
	if err != nil && t.name == longhaulBase {
		return baseStartHint(err, t)
	}
	return err
}

func (t *target) restart(ctx context.Context) error {
	t.Stop()
	return t.start(ctx)
}

// newTargets writes each proxy's configuration into its own directory
// under work and returns the targets in their canonical order.
func newTargets(names []string, work string, be backendSet, tools toolSet, maxConns int, noFile uint64, haproxySplice bool, longhaulDebug string) ([]*target, error) {
	var out []*target
	for _, name := range names {
		t := &target{name: name, Proc: proc.Proc{Name: name}}
		if name == direct {
			t.addrs = addrSet{TCPSink: be.TCPSink, TCPEcho: be.TCPEcho, HTTP: be.HTTP[0], GRPC: be.GRPC}
			for _, a := range be.HTTP {
				t.idleURLs = append(t.idleURLs, "ws://"+a+"/ws")
			}
			out = append(out, t)
			continue
		}
		t.Dir = filepath.Join(work, name)
		if err := os.MkdirAll(t.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		ports, err := proc.FreePorts(5)
		if err != nil {
			return nil, err
		}
		l := layout{
			Dir: t.Dir,
			Listen: addrSet{
				TCPSink: proc.Loopback(ports[0]), TCPEcho: proc.Loopback(ports[1]), HTTP: proc.Loopback(ports[2]), GRPC: proc.Loopback(ports[3]),
			},
			Backends:      be,
			MaxConns:      maxConns,
			NoFile:        int(min(noFile, 1<<20)),
			AdminAddr:     proc.Loopback(ports[4]),
			StreamModule:  tools.nginxStreamModule,
			HAProxySplice: haproxySplice,
		}
		if name == longhaul {
			l.DebugAddr = longhaulDebug
		}
		if os.Geteuid() == 0 {
			l.NginxUser = "root"
		}
		t.addrs = l.Listen
		t.idleURLs = []string{"ws://" + l.Listen.HTTP + "/ws"}
		var cfg []byte
		cfgPath := filepath.Join(t.Dir, name+".conf")
		switch name {
		case longhaul, longhaulBase:
			cfgPath = filepath.Join(t.Dir, "longhaul.yaml")
			cfg, err = longhaulConfig(l)
			t.Argv = []string{tools.longhaulBin(name), "run", "--config", cfgPath}
		case haproxy:
			cfg, err = haproxyConfig(l)
			t.Argv = []string{tools.haproxy, "-db", "-f", cfgPath}
		case nginx:
			cfg, err = nginxConfig(l)
			t.Argv = []string{tools.nginx, "-c", cfgPath, "-g", "daemon off;"}
		default:
			return nil, fmt.Errorf("unknown target %q (want one of %s)", name, strings.Join(knownTargets, ", "))
		}
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		t.config = cfgPath
		out = append(out, t)
	}
	return out, nil
}
