package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/internal/app"
)

// The demo's configuration: one TCP listener in front of an endpoints file
// that the demo itself edits to play a rolling update. Addresses are filled
// in with free loopback ports.
const demoConfig = `
admin: {address: %s, debugAddress: %s}
log: {level: warn, format: console}
listeners:
  - name: echo
    address: %s
    protocol: tcp
    endpoints: {file: %s}
    balance: {policy: least-connections}
    timeouts: {connect: 1s, idle: 1m}
    maxConnections: 1000
    # Echo clients reconnect at once: close each session at its paced turn,
    # spread over 2s, rather than at the deadline. After the new backend
    # comes, rebalancing (on by default with least-connections; for raw TCP
    # only with tcp: true, as these clients resend what was not echoed)
    # moves the busiest backends' excess to it, faster than by default so
    # that a short run shows it.
    drain:
      timeout: 3s
      window: 2s
      tcp: immediate
      rebalance: {tcp: true, sustain: 500ms, perMinute: 10, maxPerRound: 4}
`

func demoCmd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := pflag.NewFlagSet("demo", pflag.ContinueOnError)
	duration := fs.Duration("duration", 0, "stop after this long (default: until Ctrl-C)")
	clients := fs.Int("clients", 12, "number of clients")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	// A rollout: a step steady, a step draining, then the replacement
	// and its rebalancing for the rest of the run (half of it).
	step := 8 * time.Second
	if *duration > 0 {
		step = *duration / 4
	}

	dir, err := os.MkdirTemp("", "longhaul-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	var backends []*echoBackend
	for i := 1; i <= 4; i++ {
		b, err := startEcho(fmt.Sprintf("backend-%d", i))
		if err != nil {
			return err
		}
		defer b.Close()
		backends = append(backends, b)
	}
	epFile := filepath.Join(dir, "endpoints.yaml")
	writeEndpoints := func(state map[*echoBackend]string) error {
		var sb strings.Builder
		sb.WriteString("endpoints:\n")
		for _, b := range backends {
			switch state[b] {
			case "ready":
				fmt.Fprintf(&sb, "  - {address: %q, pod: %s}\n", b.Addr(), b.name)
			case "terminating":
				fmt.Fprintf(&sb, "  - {address: %q, pod: %s, ready: false, serving: true, terminating: true}\n", b.Addr(), b.name)
			}
		}
		tmp := epFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(sb.String()), 0o644); err != nil {
			return err
		}
		return os.Rename(tmp, epFile)
	}
	state := map[*echoBackend]string{backends[0]: "ready", backends[1]: "ready", backends[2]: "ready"}
	if err := writeEndpoints(state); err != nil {
		return err
	}
	// The ports are chosen free, then bound by app.New: another program
	// may take one in between, so a port in use means choosing again.
	var a *app.App
	var listenAddr, adminAddr, debugAddr string
	for attempt := 0; ; attempt++ {
		var err error
		if listenAddr, adminAddr, debugAddr, err = freePorts3(); err != nil {
			return err
		}
		cfg, err := config.Parse([]byte(fmt.Sprintf(demoConfig, adminAddr, debugAddr, listenAddr, epFile)))
		if err != nil {
			return fmt.Errorf("demo config: %w", err)
		}
		a, err = app.New(cfg, app.Options{Logger: zap.NewNop()})
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EADDRINUSE) || attempt == 4 {
			return err
		}
	}
	runCtx, stopApp := context.WithCancel(context.WithoutCancel(ctx))
	appDone := make(chan error, 1)
	go func() { appDone <- a.Run(runCtx) }()
	// Clients start once longhaul has its endpoints, as a Service would
	// send traffic only once /readyz passes.
	for a.Ready().Check() != nil {
		select {
		case <-ctx.Done():
			stopApp()
			return <-appDone
		case err := <-appDone:
			stopApp()
			return fmt.Errorf("longhaul stopped before it was ready: %w", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	fmt.Fprintf(stdout, "longhaul demo: listener %s, metrics http://%s/metrics, debug http://%s/debug/endpoints, %d clients\n",
		listenAddr, adminAddr, debugAddr, *clients)
	fmt.Fprintf(stdout, "live page http://%s/ (or: longhaul status --watch --admin %s)\n", adminAddr, adminAddr)
	fmt.Fprintf(stdout, "backends %s, %s, %s; at %s the busiest turns terminating, at %s it is replaced by backend-4, which rebalancing then fills\n\n",
		backends[0].Addr(), backends[1].Addr(), backends[2].Addr(), step, 2*step)

	var st demoStats
	var wg sync.WaitGroup
	cctx, stopClients := context.WithCancel(ctx)
	for i := range *clients {
		wg.Add(1)
		go func() { defer wg.Done(); runDemoClient(cctx, i, listenAddr, &st) }()
	}

	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	phase := 0
	var victim *echoBackend // the backend the rollout replaces
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
		el := time.Since(start)
		if phase == 0 && el >= step {
			phase = 1
			// The busiest backend, so that the rollout moves sessions
			// whichever way the hash spread the clients.
			victim = busiest(a, backends[:3])
			state[victim] = "terminating"
			writeEndpoints(state)
			fmt.Fprintf(stdout, "--- %s: %s (%s) is terminating: its sessions move\n", el.Round(time.Second), victim.name, victim.Addr())
		} else if phase == 1 && el >= 2*step {
			phase = 2
			delete(state, victim)
			state[backends[3]] = "ready"
			writeEndpoints(state)
			fmt.Fprintf(stdout, "--- %s: %s removed, backend-4 (%s) added: sessions move to it (rebalance)\n", el.Round(time.Second), victim.name, backends[3].Addr())
		}
		printDemoTable(stdout, el, a, backends, state, &st)
	}
	fmt.Fprintf(stdout, "\nfinal:\n")
	printDemoTable(stdout, time.Since(start), a, backends, state, &st)
	stopClients()
	wg.Wait()
	stopApp()
	if err := <-appDone; err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nsummary: %d messages echoed, %d reconnects, %d failures (lost or corrupted messages)\n",
		st.echoed.Load(), st.reconnects.Load(), st.failures.Load())
	if st.failures.Load() > 0 {
		return fmt.Errorf("%d failed messages", st.failures.Load())
	}
	return nil
}

// busiest returns the backend that holds the most of longhaul's sessions
// (the first of them on a tie).
func busiest(a *app.App, backends []*echoBackend) *echoBackend {
	perEP := sessionsPerEndpoint(a)
	best := backends[0]
	for _, b := range backends[1:] {
		if perEP[b.Addr()] > perEP[best.Addr()] {
			best = b
		}
	}
	return best
}

type demoStats struct {
	echoed, reconnects, failures atomic.Int64
}

// sessionsPerEndpoint counts longhaul's live sessions by endpoint address.
func sessionsPerEndpoint(a *app.App) map[string]int {
	perEP := map[string]int{}
	for _, s := range a.Sessions().Infos() {
		perEP[s.Endpoint]++
	}
	return perEP
}

func printDemoTable(w io.Writer, el time.Duration, a *app.App, backends []*echoBackend, state map[*echoBackend]string, st *demoStats) {
	perEP := sessionsPerEndpoint(a)
	var rows []string
	for _, b := range backends {
		s := state[b]
		if s == "" && perEP[b.Addr()] == 0 {
			continue
		}
		if s == "" {
			s = "removed"
		}
		rows = append(rows, fmt.Sprintf("  %-10s %-16s %-12s sessions %-3d %s", b.name, b.Addr(), s,
			perEP[b.Addr()], strings.Repeat("#", perEP[b.Addr()])))
	}
	sort.Strings(rows)
	fmt.Fprintf(w, "t=%-4s echoed %-6d reconnects %-3d failures %d\n%s\n", el.Round(time.Second),
		st.echoed.Load(), st.reconnects.Load(), st.failures.Load(), strings.Join(rows, "\n"))
}

// runDemoClient keeps one connection and sends a numbered line every 100 ms,
// checking each echo. When its connection closes (a drain), it reconnects
// and sends the unanswered line again.
func runDemoClient(ctx context.Context, id int, addr string, st *demoStats) {
	seq := 0
	first := true
	for ctx.Err() == nil {
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			if ctx.Err() == nil {
				time.Sleep(100 * time.Millisecond)
			}
			continue
		}
		if !first {
			st.reconnects.Add(1)
		}
		first = false
		stop := context.AfterFunc(ctx, func() { c.Close() })
		r := bufio.NewReader(c)
		for ctx.Err() == nil {
			msg := fmt.Sprintf("client %d message %d\n", id, seq)
			if _, err := io.WriteString(c, msg); err != nil {
				break
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := r.ReadString('\n')
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					st.failures.Add(1)
				}
				break // closed by a drain: reconnect and resend
			}
			if got != msg {
				st.failures.Add(1)
			} else {
				st.echoed.Add(1)
			}
			seq++
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
		stop()
		c.Close()
	}
}

type echoBackend struct {
	name string
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	cs   map[net.Conn]bool
}

func startEcho(name string) (*echoBackend, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("echo backend: %w", err)
	}
	b := &echoBackend{name: name, ln: ln, cs: map[net.Conn]bool{}}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.cs[c] = true
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				io.Copy(c, c)
				c.Close()
				b.mu.Lock()
				delete(b.cs, c)
				b.mu.Unlock()
			}()
		}
	}()
	return b, nil
}

func (b *echoBackend) Addr() string { return b.ln.Addr().String() }

func (b *echoBackend) Close() {
	b.ln.Close()
	b.mu.Lock()
	for c := range b.cs {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// freePorts3 returns three free loopback addresses: the listener's, the
// admin server's and the debug server's.
func freePorts3() (listen, admin, debug string, err error) {
	var addrs [3]string
	for i := range addrs {
		if addrs[i], err = freePort(); err != nil {
			return "", "", "", err
		}
	}
	return addrs[0], addrs[1], addrs[2], nil
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
