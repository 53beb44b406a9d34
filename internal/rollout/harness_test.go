package rollout_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/internal/app"
	"github.com/longhaul-proxy/longhaul/internal/testnet"
	"github.com/longhaul-proxy/longhaul/proxy/upstream"
)

// migrations records every session that ended after it was asked to move,
// from the App's session registry.
type migrations struct {
	mu       sync.Mutex
	took     map[string][]time.Duration // by protocol
	outcomes map[string]int             // "protocol/outcome"
}

func (m *migrations) record(e upstream.MigrationEnd) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.took[e.Info.Protocol] = append(m.took[e.Info.Protocol], e.Took)
	m.outcomes[e.Info.Protocol+"/"+e.Outcome]++
}

func (m *migrations) outcome(proto, outcome string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.outcomes[proto+"/"+outcome]
}

func (m *migrations) report(t *testing.T) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	protos := make([]string, 0, len(m.took))
	for p := range m.took {
		protos = append(protos, p)
	}
	slices.Sort(protos)
	for _, p := range protos {
		d := slices.Clone(m.took[p])
		slices.Sort(d)
		t.Logf("migrated %-9s sessions: %d (moved %d, forced %d, closed %d); time to migrate p50 %v p99 %v max %v",
			p, len(d), m.outcomes[p+"/moved"], m.outcomes[p+"/forced"], m.outcomes[p+"/closed"],
			pct(d, 50).Round(time.Millisecond), pct(d, 99).Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
	}
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, (len(d)*p+99)/100-1)]
}

// instance is a running longhaul.
type instance struct {
	a      *app.App
	cancel context.CancelFunc
	done   chan error
	mig    *migrations
	once   sync.Once
	took   time.Duration // how long Run took to return after cancel
}

func startApp(t *testing.T, yaml string, opts app.Options) *instance {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if opts.Logger == nil {
		opts.Logger = zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel))
	}
	a, err := app.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	in := &instance{a: a, done: make(chan error, 1),
		mig: &migrations{took: map[string][]time.Duration{}, outcomes: map[string]int{}}}
	// Set before Run, so before the first session registers.
	prev := a.Sessions().OnMigrationEnd
	a.Sessions().OnMigrationEnd = func(e upstream.MigrationEnd) {
		if prev != nil {
			prev(e)
		}
		in.mig.record(e)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel = cancel
	go func() { in.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		if err := in.stop(30 * time.Second); err != nil {
			t.Error(err)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for a.Ready().Check() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("longhaul not ready: %v", a.Ready().Check())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return in
}

// stop is the SIGTERM path: cancel Run's context and wait for it to return.
func (in *instance) stop(limit time.Duration) (err error) {
	in.once.Do(func() {
		start := time.Now()
		in.cancel()
		select {
		case e := <-in.done:
			if e != nil {
				err = fmt.Errorf("Run: %w", e)
			}
		case <-time.After(limit):
			err = fmt.Errorf("Run did not return %v after its context ended", limit)
		}
		in.took = time.Since(start)
	})
	return err
}

func grpcDial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// endpointsFiles holds one watched endpoints file per listener, written
// from the list of pods and which of them are terminating.
type endpointsFiles struct {
	t     *testing.T
	paths map[string]string // listener -> file
}

func newEndpointsFiles(t *testing.T, listeners ...string) *endpointsFiles {
	dir := t.TempDir()
	f := &endpointsFiles{t: t, paths: map[string]string{}}
	for _, l := range listeners {
		f.paths[l] = filepath.Join(dir, l+".yaml")
	}
	return f
}

// podAddr is the address of a pod's port that a listener balances over, as
// longhaul sees it: the loopback address, or the pod's advertised IP with
// the same port when its endpoints come from EndpointSlices.
func podAddr(p *pod, listener string) string {
	addr := p.grpcAddr
	switch listener {
	case "tcp":
		addr = p.tcpAddr
	case "web":
		addr = p.httpAddr
	}
	if p.advertised != "" {
		_, port, _ := net.SplitHostPort(addr)
		return net.JoinHostPort(p.advertised, port)
	}
	return addr
}

// staticEndpoints is the YAML list of the pods' addresses for a listener,
// for a static endpoints source.
func staticEndpoints(pods []*pod, listener string) string {
	addrs := make([]string, len(pods))
	for i, p := range pods {
		addrs[i] = fmt.Sprintf("%q", podAddr(p, listener))
	}
	return "[" + strings.Join(addrs, ", ") + "]"
}

// staticConfig is the configuration of a longhaul in front of pods: an
// admin address and, for each of listeners (tcp, web or grpc), a listener
// on a free address with the pods as static endpoints, least-connections
// and the given drain timeout.
func staticConfig(t *testing.T, pods []*pod, drainTimeout time.Duration, listeners ...string) string {
	protocol := map[string]string{"tcp": "tcp", "web": "http", "grpc": "grpc"}
	var b strings.Builder
	fmt.Fprintf(&b, "admin: {address: %q}\nlog: {level: warn}\nlisteners:\n", testnet.FreeAddr(t))
	for _, l := range listeners {
		fmt.Fprintf(&b, "  - name: %s\n    address: %q\n    protocol: %s\n    endpoints: {static: %s}\n"+
			"    balance: {policy: least-connections}\n    drain: {timeout: %s}\n",
			l, testnet.FreeAddr(t), protocol[l], staticEndpoints(pods, l), drainTimeout)
	}
	return b.String()
}

// endpointSource publishes the pods' endpoints to longhaul.
type endpointSource interface {
	// write publishes pods, the terminating ones marked so.
	write(pods []*pod, terminating map[*pod]bool)
	// path is the endpoints file of a listener, or "" for none.
	path(listener string) string
	// rewrite adapts the YAML configuration to the source.
	rewrite(yaml string) string
	// options are what the App needs to use the source.
	options() app.Options
	// revisions reports whether the source publishes the pods' revisions.
	revisions() bool
}

func (f *endpointsFiles) path(l string) string       { return f.paths[l] }
func (f *endpointsFiles) rewrite(yaml string) string { return yaml }
func (f *endpointsFiles) options() app.Options       { return app.Options{} }
func (f *endpointsFiles) revisions() bool            { return true }

func (f *endpointsFiles) write(pods []*pod, terminating map[*pod]bool) {
	for l, path := range f.paths {
		var b strings.Builder
		b.WriteString("endpoints:\n")
		for _, p := range pods {
			// The pod's name is its hash identity (as with the kubernetes
			// source's pod-name identity), so that a Maglev table depends
			// on the pods, not on the ports they happened to get.
			fmt.Fprintf(&b, "  - {address: %q, id: %s, pod: %s", podAddr(p, l), p.name, p.name)
			if p.revision != "" {
				fmt.Fprintf(&b, ", revision: %s", p.revision)
			}
			if terminating[p] {
				b.WriteString(", ready: false, serving: true, terminating: true")
			}
			b.WriteString("}\n")
		}
		if err := os.WriteFile(path+".tmp", []byte(b.String()), 0o644); err != nil {
			f.t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			f.t.Fatal(err)
		}
	}
}

// fixed sends every client to one longhaul.
type fixed struct {
	in    *instance
	conns []*grpc.ClientConn
}

func (f *fixed) addr(listener string, _ int) string   { return f.in.a.ListenerAddr(listener).String() }
func (f *fixed) grpcConn(client int) *grpc.ClientConn { return f.conns[client%len(f.conns)] }
