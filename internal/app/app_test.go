package app

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/discovery"
	"github.com/longhaul-proxy/longhaul/internal/guard"
	"github.com/longhaul-proxy/longhaul/internal/testnet"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); io.Copy(c, c); c.Close() }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

type running struct {
	a      *App
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, yaml string) *running {
	t.Helper()
	return startWith(t, yaml, Options{})
}

// startWith is start with opts.
func startWith(t *testing.T, yaml string, opts Options) *running {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	a, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{a: a, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Error("Run did not return")
		}
	})
	waitReady(t, a)
	return r
}

func waitReady(t *testing.T, a *App) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if a.Ready().Check() == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("not ready: %v", a.Ready().Check())
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo: got %q, %v", buf, err)
	}
}

func TestRunRelaysReportsAndShutsDownGracefully(t *testing.T) {
	b1, b2 := echoServer(t), echoServer(t)
	admin, debug, lis := testnet.FreeAddr(t), testnet.FreeAddr(t), testnet.FreeAddr(t)
	r := start(t, fmt.Sprintf(`
admin: {address: %q, debugAddress: %q}
listeners:
  - name: echo
    address: %q
    endpoints: {static: [%q, %q]}
    balance: {policy: least-connections}
    drain: {timeout: 1s}
`, admin, debug, lis, b1, b2))
	c, err := net.Dial("tcp", lis)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "hello")

	if code, body := get(t, "http://"+admin+"/readyz"); code != 200 {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	if code, _ := get(t, "http://"+admin+"/healthz"); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	// Bytes are counted per relay round: a read and its write for small
	// transfers (a spliced one moves up to 4 MiB a round). The open
	// session's 5 bytes each way and the short one's are both counted.
	c2, err := net.Dial("tcp", lis)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c2, "hello")
	c2.Close()
	var metrics string
	wantMetrics := []string{`longhaul_sessions_active{endpoint=`, `longhaul_picker_builds_total{listener="echo",result="ok"} 1`,
		`longhaul_endpoints{condition="ready",listener="echo"} 2`, `longhaul_bytes_total{direction="upstream",listener="echo"} 10`,
		`longhaul_bytes_total{direction="downstream",listener="echo"} 10`}
	for wait := time.Now().Add(5 * time.Second); time.Now().Before(wait); time.Sleep(20 * time.Millisecond) {
		_, metrics = get(t, "http://"+admin+"/metrics")
		if strings.Contains(metrics, wantMetrics[3]) && strings.Contains(metrics, wantMetrics[4]) {
			break
		}
	}
	for _, want := range wantMetrics {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s; bytes: %q", want, grepLines(metrics, "longhaul_bytes_total"))
		}
	}
	// The debug views are on the debug address only.
	for _, path := range []string{"/debug/endpoints", "/debug/sessions", "/debug/pprof/"} {
		if code, _ := get(t, "http://"+admin+path); code != http.StatusNotFound {
			t.Errorf("%s on the admin address: %d, want 404", path, code)
		}
	}
	if code, _ := get(t, "http://"+debug+"/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics on the debug address: %d, want 404", code)
	}
	_, eps := get(t, "http://"+debug+"/debug/endpoints")
	var view []struct {
		Listener  string
		Endpoints []struct {
			Address string
			Active  int64
		}
	}
	if err := json.Unmarshal([]byte(eps), &view); err != nil || len(view) != 1 || len(view[0].Endpoints) != 2 {
		t.Fatalf("/debug/endpoints: %v %s", err, eps)
	}
	var active int64
	for _, e := range view[0].Endpoints {
		active += e.Active
	}
	if active != 1 {
		t.Errorf("/debug/endpoints shows %d active sessions, want 1", active)
	}
	_, sess := get(t, "http://"+debug+"/debug/sessions")
	if !strings.Contains(sess, `"protocol": "tcp"`) {
		t.Errorf("/debug/sessions: %s", sess)
	}
	if code, _ := get(t, "http://"+debug+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without admin.pprof: %d, want 404", code)
	}

	// SIGTERM (the context ends): readiness fails at once, the open session
	// gets the drain timeout, then is closed, and Run returns nil.
	start := time.Now()
	r.cancel()
	deadline := time.Now().Add(900 * time.Millisecond)
	for time.Now().Before(deadline) {
		if r.a.Ready().Check() != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if r.a.Ready().Check() == nil {
		t.Fatal("still ready after shutdown began")
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("client: got %v, want EOF at the drain deadline", err)
	}
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the drain timeout")
	}
	if el := time.Since(start); el < 900*time.Millisecond {
		t.Errorf("shut down after %v, before the 1s drain timeout", el)
	}
	r.done <- nil // for the cleanup
}

// endpointsFile returns the path of an endpoints file and a function that
// replaces its content by rename, as editors do.
func endpointsFile(t *testing.T) (string, func(string)) {
	file := filepath.Join(t.TempDir(), "eps.yaml")
	return file, func(s string) {
		os.WriteFile(file+".tmp", []byte(s), 0o644)
		os.Rename(file+".tmp", file)
	}
}

// openSessions opens n sessions through the TCP listener at lis, each
// checked with a round trip; they are closed when the test ends.
func openSessions(t *testing.T, lis string, n int) []net.Conn {
	t.Helper()
	var conns []net.Conn
	for i := range n {
		c, err := net.Dial("tcp", lis)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		roundTrip(t, c, fmt.Sprint(i))
		conns = append(conns, c)
	}
	return conns
}

// TestTerminatingEndpointFromFile: editing the endpoints file to mark an
// endpoint terminating stops new sessions to it and moves its sessions.
func TestTerminatingEndpointFromFile(t *testing.T) {
	b1, b2 := echoServer(t), echoServer(t)
	file, write := endpointsFile(t)
	write(fmt.Sprintf("- {address: %q}\n- {address: %q}\n", b1, b2))
	admin, debug, lis := testnet.FreeAddr(t), testnet.FreeAddr(t), testnet.FreeAddr(t)
	r := start(t, fmt.Sprintf(`
admin: {address: %q, debugAddress: %q, pprof: true}
listeners:
  - name: echo
    address: %q
    endpoints: {file: %q}
    balance: {policy: maglev, key: client-ip-port}
    drain: {timeout: 500ms}
`, admin, debug, lis, file))
	if code, body := get(t, "http://"+debug+"/debug/pprof/goroutine?debug=1"); code != 200 || !strings.Contains(body, "goroutine profile") {
		t.Errorf("/debug/pprof/goroutine with admin.pprof: %d %.80s", code, body)
	}
	conns := openSessions(t, lis, 20)
	onB2 := len(r.a.Sessions().Endpoint(b2))
	if onB2 == 0 || onB2 == 20 {
		t.Fatalf("%d of 20 sessions on %s; want a spread", onB2, b2)
	}
	write(fmt.Sprintf("- {address: %q}\n- {address: %q, ready: false, serving: true, terminating: true}\n", b1, b2))
	deadline := time.Now().Add(5 * time.Second)
	for len(r.a.Sessions().Endpoint(b2)) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(r.a.Sessions().Endpoint(b2)); n != 0 {
		t.Fatalf("%d sessions still on the terminating endpoint", n)
	}
	for i := range 20 {
		c, err := net.Dial("tcp", lis)
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c, "x")
		c.Close()
		if n := len(r.a.Sessions().Endpoint(b2)); n != 0 {
			t.Fatalf("new session %d went to the terminating endpoint", i)
		}
	}
	// Gone from the file, with no session left: its series leave /metrics
	// (but the drain ledger's, kept drain.LedgerKeep after the drain).
	if _, m := get(t, "http://"+admin+"/metrics"); !strings.Contains(m, fmt.Sprintf("endpoint=%q", b2)) {
		t.Fatalf("/metrics has no series of %s while it is listed", b2)
	}
	write(fmt.Sprintf("- {address: %q}\n", b1))
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, m := get(t, "http://"+admin+"/metrics")
		m = withoutLines(m, "longhaul_drain_")
		if !strings.Contains(m, fmt.Sprintf("endpoint=%q", b2)) && strings.Contains(m, fmt.Sprintf("endpoint=%q", b1)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5s after %s left the file, /metrics still has its series (or lost %s's)", b2, b1)
		}
	}
	_ = conns
}

// TestNewPortsInUse: a listener, admin or debug address that is taken, or
// a debug token that cannot be read, is a clear error naming it, and
// whatever New had bound already is released.
func TestNewPortsInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	busy := taken.Addr().String()
	const yaml = `
admin: {address: %q, debugAddress: %q, debugTokenFile: %q}
listeners:
  - name: first
    address: %q
    endpoints: {static: ["127.0.0.1:1"]}
  - name: second
    address: %q
    endpoints: {static: ["127.0.0.1:1"]}
`
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing")
	free1, free2, free3 := testnet.FreeAddr(t), testnet.FreeAddr(t), testnet.FreeAddr(t)
	for _, tc := range []struct{ name, admin, debug, token, first, second, want string }{
		{"admin", busy, free1, token, free2, free3, "admin listener on " + busy},
		{"debug", free1, busy, token, free2, free3, "admin debug listener on " + busy},
		{"debug token", free1, free2, missing, free3, testnet.FreeAddr(t), "admin.debugTokenFile: debug token: open " + missing},
		{"second listener", free1, free2, token, free3, busy, busy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(fmt.Sprintf(yaml, tc.admin, tc.debug, tc.token, tc.first, tc.second)))
			if err != nil {
				t.Fatal(err)
			}
			a, err := New(cfg, Options{})
			if err == nil || a != nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, %v; want an error naming %s", a, err, tc.want)
			}
			// The addresses New bound before failing are free again.
			for _, addr := range []string{tc.admin, tc.debug, tc.first, tc.second} {
				if addr == busy {
					continue
				}
				ln, err := net.Listen("tcp", addr)
				if err != nil {
					t.Errorf("%s still bound after New failed: %v", addr, err)
					continue
				}
				ln.Close()
			}
		})
	}
}

// TestKillTimeFromFile: a terminating endpoint whose entry in the endpoints
// file carries a kill time gets its sessions' migration deadline at the
// kill time minus drain.killMargin, well before the 20s drain timeout.
func TestKillTimeFromFile(t *testing.T) {
	b1, b2 := echoServer(t), echoServer(t)
	file, write := endpointsFile(t)
	write(fmt.Sprintf("- {address: %q}\n", b2))
	admin, lis := testnet.FreeAddr(t), testnet.FreeAddr(t)
	r := start(t, fmt.Sprintf(`
admin: {address: %q}
listeners:
  - name: echo
    address: %q
    endpoints: {file: %q}
    drain: {timeout: 20s, window: 100ms, killMargin: 1500ms}
`, admin, lis, file))
	conns := openSessions(t, lis, 5)
	kill := time.Now().Add(4 * time.Second).Truncate(time.Millisecond)
	write(fmt.Sprintf("- {address: %q}\n- {address: %q, ready: false, serving: true, terminating: true, killTime: %q}\n",
		b1, b2, kill.Format(time.RFC3339Nano)))
	want := kill.Add(-1500 * time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for {
		infos := r.a.Sessions().Infos()
		asked := 0
		for _, in := range infos {
			if in.Migrating {
				asked++
				if !in.Deadline.Equal(want) {
					t.Fatalf("session %d: deadline %v, want the kill time %v minus the 1.5s margin: %v",
						in.ID, in.Deadline, kill, want)
				}
			}
		}
		if asked == len(conns) && len(infos) == len(conns) {
			t.Logf("%d sessions asked to leave by %v (kill time %v minus 1.5s)", asked, want.Format(time.StampMilli), kill.Format(time.StampMilli))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d sessions asked to move within 5s", asked, len(conns))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// panickySource panics on its first Run and serves one endpoint on the next.
type panickySource struct {
	runs atomic.Int32
	addr string
}

func (s *panickySource) Run(ctx context.Context, publish discovery.Publisher) error {
	if s.runs.Add(1) == 1 {
		panic("test: source bug")
	}
	snap, err := discovery.NewSnapshot("echo", []discovery.Endpoint{{Address: s.addr, Ready: true, Serving: true}})
	if err != nil {
		return err
	}
	publish(snap)
	<-ctx.Done()
	return nil
}

// TestSourcePanicRestarts: an endpoint source that panics is counted, run
// again after sourceRestart, and the listener then serves; the process does
// not end.
func TestSourcePanicRestarts(t *testing.T) {
	guard.SetLogger(zap.NewNop())
	be := echoServer(t)
	src := &panickySource{addr: be}
	admin, lis := testnet.FreeAddr(t), testnet.FreeAddr(t)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
admin: {address: %q}
listeners:
  - name: echo
    address: %q
    endpoints: {kubernetes: {namespace: ns, service: echo, port: "80"}}
`, admin, lis)))
	if err != nil {
		t.Fatal(err)
	}
	before := guard.Count("discovery")
	start := time.Now()
	a, err := New(cfg, Options{Kubernetes: func(config.Listener, *zap.Logger) (discovery.Source, error) { return src, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer guard.SetLogger(nil) // after New, which sets it
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitReady(t, a)
	took := time.Since(start)
	if got := guard.Count("discovery") - before; got != 1 || src.runs.Load() != 2 {
		t.Fatalf("panics counted %v, source runs %d; want 1 and 2", got, src.runs.Load())
	}
	if took < sourceRestart {
		t.Errorf("ready %v after the panic, want the %v restart pause", took, sourceRestart)
	}
	c, err := net.Dial("tcp", lis)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "after the panic")
	t.Logf("source panicked, ran again and was ready %v later", took.Round(time.Millisecond))
}

// TestTimeoutsAndLimitsReachListeners: the timeouts and limits of the
// configuration are those the listeners apply: a half-closed TCP session
// to an endpoint that never reads ends after timeouts.halfClosed, a second
// connection from one address is closed under maxConnectionsPerClient 1,
// and an idle HTTP/1.1 connection closes after timeouts.keepAliveIdle.
func TestTimeoutsAndLimitsReachListeners(t *testing.T) {
	hold := make(chan struct{})
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { <-hold; c.Close() })
		}
	})
	t.Cleanup(func() { mute.Close(); close(hold); wg.Wait() })
	web := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	webLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { web.Serve(webLn) })
	t.Cleanup(func() { web.Close() })

	admin, tcpAddr, httpAddr := testnet.FreeAddr(t), testnet.FreeAddr(t), testnet.FreeAddr(t)
	r := start(t, fmt.Sprintf(`
admin: {address: %q}
listeners:
  - name: raw
    address: %q
    endpoints: {static: [%q]}
    timeouts: {halfClosed: 300ms}
    maxConnectionsPerClient: 1
  - name: web
    address: %q
    protocol: http
    endpoints: {static: [%q]}
    timeouts: {keepAliveIdle: 300ms}
`, admin, tcpAddr, mute.Addr().String(), httpAddr, webLn.Addr().String()))

	within := func(what string, c net.Conn, since time.Time, lo, hi time.Duration) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, c)
		took := time.Since(since)
		t.Logf("%s after %v", what, took)
		if took < lo || took > hi {
			t.Errorf("%s after %v, want between %v and %v", what, took, lo, hi)
		}
	}
	first, err := net.Dial("tcp", tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	// The first session is registered before the second connection comes.
	for deadline := time.Now().Add(5 * time.Second); r.a.Sessions().Len() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first session was not registered within 5s")
		}
	}
	second, err := net.Dial("tcp", tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	within("the second connection from one address closed", second, time.Now(), 0, time.Second)
	first.(*net.TCPConn).CloseWrite()
	within("half-closed session ended", first, time.Now(), 300*time.Millisecond, 1300*time.Millisecond)

	c, err := net.Dial("tcp", httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	within("idle HTTP/1.1 connection closed", c, time.Now(), 250*time.Millisecond, 1300*time.Millisecond)
}

// TestMemoryBudgetFromGOMEMLIMIT: with a memory limit set, half of it is
// the budget of what client connections hold, shown in /metrics.
func TestMemoryBudgetFromGOMEMLIMIT(t *testing.T) {
	old := debug.SetMemoryLimit(512 << 20)
	defer debug.SetMemoryLimit(old)
	admin, lis := testnet.FreeAddr(t), testnet.FreeAddr(t)
	r := start(t, fmt.Sprintf(`
admin: {address: %q}
listeners:
  - name: g
    address: %q
    protocol: grpc
    endpoints: {static: ["127.0.0.1:1"]}
`, admin, lis))
	if got := r.a.budget.Limit(); got != 256<<20 {
		t.Fatalf("budget %d, want half of GOMEMLIMIT (256 MiB)", got)
	}
	_, m := get(t, "http://"+admin+"/metrics")
	for _, want := range []string{"longhaul_memory_budget_limit_bytes 2.68435456e+08", "longhaul_memory_budget_used_bytes 0", "longhaul_memory_budget_shed_total 0"} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestShutdownHonoursTCPImmediate: with drain.tcp immediate, longhaul's own
// shutdown closes each raw TCP session at its turn in the drain window (10s,
// half the timeout), as an endpoint drain does, not at the 20s deadline;
// each is counted as closed by policy.
func TestShutdownHonoursTCPImmediate(t *testing.T) {
	b := echoServer(t)
	lis := testnet.FreeAddr(t)
	r := start(t, fmt.Sprintf(`
admin: {address: %q}
listeners:
  - name: echo
    address: %q
    endpoints: {static: [%q]}
    drain: {timeout: 20s, tcp: immediate}
`, testnet.FreeAddr(t), lis, b))
	conns := openSessions(t, lis, 3)
	began := time.Now()
	r.cancel()
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("session %d: got %v, want EOF", i, err)
		}
	}
	closed := time.Since(began)
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return")
	}
	took := time.Since(began)
	r.done <- nil // for the cleanup
	t.Logf("sessions closed %v after the shutdown began, Run returned after %v (drain timeout 20s)", closed, took)
	if closed > 12*time.Second || took > 14*time.Second {
		t.Errorf("sessions closed %v and Run returned %v after the shutdown began: want within the 10s window, not at the 20s deadline", closed, took)
	}
	if n := testutil.ToFloat64(r.a.metrics.MigrationsEnded.WithLabelValues("echo", "tcp", "closed")); n != 3 {
		t.Errorf("migrations ended closed by policy: %v, want 3", n)
	}
}
