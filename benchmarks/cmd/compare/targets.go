package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/longhaul-proxy/longhaul/benchmarks/internal/procstat"
)

const (
	direct   = "direct"
	longhaul = "longhaul"
	haproxy  = "haproxy"
	nginx    = "nginx"
)

// target is what the load generator sends to: the backends themselves
// (direct) or a proxy in front of them.
type target struct {
	name string
	// addrs is where clients connect.
	addrs addrSet
	// idleURLs are the WebSocket URLs the idle workload spreads over.
	idleURLs []string
	// argv starts the proxy in the foreground; nil for direct.
	argv []string
	dir  string
	cmd  *exec.Cmd
	done chan error
}

func (t *target) isProxy() bool { return t.argv != nil }

// start runs the proxy and waits until every listener accepts.
func (t *target) start(ctx context.Context) error {
	if !t.isProxy() {
		return nil
	}
	logf, err := os.OpenFile(filepath.Join(t.dir, "output.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: log file: %w", t.name, err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(t.argv[0], t.argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = t.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: start %s: %w", t.name, t.argv[0], err)
	}
	t.cmd = cmd
	t.done = make(chan error, 1)
	go func() { t.done <- cmd.Wait() }()
	if err := t.waitReady(ctx, 15*time.Second); err != nil {
		t.stop()
		return fmt.Errorf("%s: %w (see %s)", t.name, err, filepath.Join(t.dir, "output.log"))
	}
	return nil
}

func (t *target) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for _, a := range []string{t.addrs.TCPSink, t.addrs.TCPEcho, t.addrs.HTTP, t.addrs.GRPC} {
		for {
			select {
			case err := <-t.done:
				t.done <- err
				return fmt.Errorf("exited before listening: %v", err)
			case <-ctx.Done():
				return ctx.Err()
			default:
			}
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("not listening on %s after %v: %w", a, limit, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// stop sends SIGTERM, then SIGKILL if the proxy has not ended in 5 s.
func (t *target) stop() {
	if t.cmd == nil {
		return
	}
	_ = t.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-t.done:
	case <-time.After(5 * time.Second):
		_ = t.cmd.Process.Kill()
		<-t.done
	}
	t.cmd = nil
}

func (t *target) restart(ctx context.Context) error {
	t.stop()
	return t.start(ctx)
}

// pid is the proxy's root process, 0 for direct.
func (t *target) pid() int {
	if t.cmd == nil {
		return 0
	}
	return t.cmd.Process.Pid
}

// sample reads the proxy's summed CPU and RSS; zero for direct.
func (t *target) sample() (procstat.Sample, error) {
	if t.cmd == nil {
		return procstat.Sample{}, nil
	}
	s, err := procstat.Tree("/proc", t.pid())
	if err != nil {
		return s, fmt.Errorf("%s: %w", t.name, err)
	}
	return s, nil
}

// alive reports an error if the proxy has exited.
func (t *target) alive() error {
	if t.cmd == nil {
		return nil
	}
	select {
	case err := <-t.done:
		t.done <- err
		return fmt.Errorf("%s exited: %v; last output: %s", t.name, err, t.logTail())
	default:
		return nil
	}
}

func (t *target) logTail() string {
	b, err := os.ReadFile(filepath.Join(t.dir, "output.log"))
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 600 {
		s = s[len(s)-600:]
	}
	return s
}

// newTargets writes each proxy's configuration into its own directory
// under work and returns the targets in their canonical order.
func newTargets(names []string, work string, be backendSet, tools toolSet, maxConns int, noFile uint64, haproxySplice bool) ([]*target, error) {
	var out []*target
	for _, name := range names {
		t := &target{name: name}
		if name == direct {
			t.addrs = addrSet{TCPSink: be.TCPSink, TCPEcho: be.TCPEcho, HTTP: be.HTTP[0], GRPC: be.GRPC}
			for _, a := range be.HTTP {
				t.idleURLs = append(t.idleURLs, "ws://"+a+"/ws")
			}
			out = append(out, t)
			continue
		}
		t.dir = filepath.Join(work, name)
		if err := os.MkdirAll(t.dir, 0o755); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		ports, err := freePorts(5)
		if err != nil {
			return nil, err
		}
		l := layout{
			Dir: t.dir,
			Listen: addrSet{
				TCPSink: loop(ports[0]), TCPEcho: loop(ports[1]), HTTP: loop(ports[2]), GRPC: loop(ports[3]),
			},
			Backends:      be,
			MaxConns:      maxConns,
			NoFile:        int(min(noFile, 1<<20)),
			AdminAddr:     loop(ports[4]),
			StreamModule:  tools.nginxStreamModule,
			HAProxySplice: haproxySplice,
		}
		if os.Geteuid() == 0 {
			l.NginxUser = "root"
		}
		t.addrs = l.Listen
		t.idleURLs = []string{"ws://" + l.Listen.HTTP + "/ws"}
		var cfg []byte
		cfgPath := filepath.Join(t.dir, name+".conf")
		switch name {
		case longhaul:
			cfgPath = filepath.Join(t.dir, "longhaul.yaml")
			cfg, err = longhaulConfig(l)
			t.argv = []string{tools.longhaul, "run", "--config", cfgPath}
		case haproxy:
			cfg, err = haproxyConfig(l)
			t.argv = []string{tools.haproxy, "-db", "-f", cfgPath}
		case nginx:
			cfg, err = nginxConfig(l)
			t.argv = []string{tools.nginx, "-c", cfgPath, "-g", "daemon off;"}
		default:
			return nil, fmt.Errorf("unknown target %q (want %s, %s, %s or %s)", name, direct, longhaul, haproxy, nginx)
		}
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, t)
	}
	return out, nil
}

func loop(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// freePorts asks the kernel for n unused loopback ports. They are released
// before use, so another program could take one meanwhile; the proxy's
// start then fails loudly.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
