package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/longhaul-proxy/longhaul/admin"
	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/internal/app"
	"github.com/longhaul-proxy/longhaul/internal/testnet"
)

// liveApp is a running longhaul App with one TCP listener, echo, in front
// of echo backends listed in an endpoints file that the test edits.
type liveApp struct {
	a        *app.App
	admin    string // admin address: the live page and /status
	lis      string // the listener's address
	backends []*echoBackend
	file     string
}

// startLive runs an App over n echo backends, all ready (pods backend-1 to
// backend-n), least-connections, with a drain of drainYAML; it stops when
// the test ends.
func startLive(t *testing.T, n int, drainYAML string) *liveApp {
	t.Helper()
	l := &liveApp{file: filepath.Join(t.TempDir(), "endpoints.yaml")}
	for i := 1; i <= n; i++ {
		b, err := startEcho(fmt.Sprintf("backend-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
		l.backends = append(l.backends, b)
	}
	l.setEndpoints(t, nil)
	l.admin, l.lis = testnet.FreeAddr(t), testnet.FreeAddr(t)
	cfg, err := config.Parse(fmt.Appendf(nil, `
admin: {address: %q}
listeners:
  - name: echo
    address: %q
    protocol: tcp
    endpoints: {file: %q}
    balance: {policy: least-connections}
    drain: %s
`, l.admin, l.lis, l.file, drainYAML))
	if err != nil {
		t.Fatal(err)
	}
	if l.a, err = app.New(cfg, app.Options{Logger: zap.NewNop()}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("app: %v", err)
		}
	})
	for deadline := time.Now().Add(10 * time.Second); l.a.Ready().Check() != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not ready after 10s: %v", l.a.Ready().Check())
		}
	}
	return l
}

// setEndpoints writes the endpoints file: every backend ready, but those
// in terminating, terminating with their kill time.
func (l *liveApp) setEndpoints(t *testing.T, terminating map[*echoBackend]time.Time) {
	t.Helper()
	var sb strings.Builder
	sb.WriteString("endpoints:\n")
	for _, b := range l.backends {
		if kill, ok := terminating[b]; ok {
			fmt.Fprintf(&sb, "  - {address: %q, pod: %q, ready: false, serving: true, terminating: true, killTime: %q}\n",
				b.Addr(), b.name, kill.UTC().Format(time.RFC3339Nano))
		} else {
			fmt.Fprintf(&sb, "  - {address: %q, pod: %q}\n", b.Addr(), b.name)
		}
	}
	tmp := l.file + ".tmp"
	if err := os.WriteFile(tmp, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, l.file); err != nil {
		t.Fatal(err)
	}
}

// open opens a session through the listener, checked with a round trip;
// it is closed when the test ends.
func (l *liveApp) open(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", l.lis, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	clientConns.Store(c.LocalAddr().String(), c)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	if got, err := bufio.NewReader(c).ReadString('\n'); err != nil || got != "hello\n" {
		t.Fatalf("echo through longhaul: %q, %v", got, err)
	}
	c.SetDeadline(time.Time{})
	return c
}

// perEndpoint counts the live sessions of each backend, as the App's
// registry has them.
func (l *liveApp) perEndpoint() map[string]int { return sessionsPerEndpoint(l.a) }

// TestStatusPrintsTheView: longhaul status against a running App prints the
// listener, every endpoint with its pod, state and session count, and the
// table fingerprint.
func TestStatusPrintsTheView(t *testing.T) {
	l := startLive(t, 2, "{timeout: 5s}")
	for range 3 {
		l.open(t)
	}
	per := l.perEndpoint()
	var out, errb bytes.Buffer
	if code := realMain([]string{"status", "--admin", l.admin}, &out, &errb); code != 0 {
		t.Fatalf("status: exit %d: %s", code, errb.String())
	}
	t.Logf("longhaul status:\n%s", out.String())
	s := out.String()
	if !strings.Contains(s, "listener echo (tcp on "+l.lis+")") {
		t.Errorf("no line of listener echo on %s", l.lis)
	}
	if !regexp.MustCompile(`backend echo: sessions 3, table fingerprint [0-9a-f]{16}\n`).MatchString(s) {
		t.Errorf("no backend line with 3 sessions and a fingerprint")
	}
	for _, b := range l.backends {
		re := regexp.MustCompile(fmt.Sprintf(`\n +%s +%s +ready +sessions %d +#{%d}\n`,
			b.name, regexp.QuoteMeta(b.Addr()), per[b.Addr()], per[b.Addr()]))
		if !re.MatchString(s) {
			t.Errorf("no row %s %s ready with %d sessions", b.name, b.Addr(), per[b.Addr()])
		}
	}
}

// TestStatusWatch: --watch redraws (clearing the screen) every interval
// until its context ends, then returns nil.
func TestStatusWatch(t *testing.T) {
	l := startLive(t, 1, "{timeout: 5s}")
	l.open(t)
	w := &redraws{ch: make(chan struct{}, 16)}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- statusCmd(ctx, []string{"--admin", l.admin, "--watch", "--interval", "50ms"}, w) }()
	for i := range 2 {
		select {
		case <-w.ch:
		case err := <-done:
			t.Fatalf("watch returned after %d redraws: %v", i, err)
		case <-ctx.Done():
			t.Fatalf("%d redraws in 20s, want 2", i)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("watch on cancel: %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch still running 5s after its context ended")
	}
	out := w.String()
	if n := strings.Count(out, clearScreen); n < 2 {
		t.Errorf("%d screen clears, want at least 2", n)
	}
	// The first frame is whole: a second clear followed it.
	if frames := strings.Split(out, clearScreen); len(frames) < 3 ||
		!regexp.MustCompile(`listener echo[^\n]*\n.*sessions 1,[^\n]*\n +backend-1 +\S+ +ready +sessions 1 `).MatchString(frames[1]) {
		t.Errorf("the first frame lacks listener echo and backend-1 with its session:\n%s", out)
	}
}

// redraws records what a watch writes and signals each screen clear.
type redraws struct {
	mu  sync.Mutex
	buf bytes.Buffer
	ch  chan struct{}
}

func (r *redraws) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if bytes.Contains(p, []byte(clearScreen)) {
		select {
		case r.ch <- struct{}{}:
		default:
		}
	}
	return r.buf.Write(p)
}

func (r *redraws) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

// TestStatusBadAddress: an address where no longhaul listens, one that
// answers something else, and one that is not host:port each give an
// error that says what was read and what to check.
func TestStatusBadAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	// An HTTP server that is not longhaul (404 for /status), and a TCP
	// echo that is not HTTP.
	web := httptest.NewServer(http.NotFoundHandler())
	defer web.Close()
	web404 := strings.TrimPrefix(web.URL, "http://")
	echo, err := startEcho("echo")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	for _, tc := range []struct {
		name, addr string
		want       []string
	}{
		{"nothing listens", closed, []string{"reading http://" + closed + "/status", "connection refused", "is longhaul running"}},
		{"not longhaul", web404, []string{"reading http://" + web404 + "/status: 404 Not Found"}},
		{"not HTTP", echo.Addr(), []string{"reading http://" + echo.Addr() + "/status: "}},
		{"not host:port", "http://127.0.0.1:1/x", []string{`--admin "http://127.0.0.1:1/x": want host:port`}},
	} {
		var out, errb bytes.Buffer
		code := realMain([]string{"status", "--admin", tc.addr}, &out, &errb)
		if code != 1 {
			t.Errorf("%s: exit %d, want 1", tc.name, code)
		}
		for _, w := range tc.want {
			if !strings.Contains(errb.String(), w) {
				t.Errorf("%s: stderr %q lacks %q", tc.name, errb.String(), w)
			}
		}
	}
	if err := statusCmd(context.Background(), []string{"--interval", "0s"}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "must be positive") {
		t.Errorf("--interval 0s: %v", err)
	}
}

// FuzzStatusURL: status turns any --admin value into an http URL of /status
// on one host:port, or an error; never a URL with another path.
func FuzzStatusURL(f *testing.F) {
	for _, s := range []string{"127.0.0.1:9901", "http://[::1]:9901/", "localhost:1", "", "http://", "a/b", "https://x:1", "x:1/status"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		u, err := statusURL(addr)
		if err != nil {
			return
		}
		host, ok := strings.CutPrefix(u, "http://")
		host, ok2 := strings.CutSuffix(host, "/status")
		if !ok || !ok2 || host == "" || strings.ContainsAny(host, "/") {
			t.Fatalf("statusURL(%q) = %q", addr, u)
		}
	})
}

// TestDemoLivePage: the demo prints its live page's address, and what the
// page reads there (/status) shows the rollout: the terminating backend's
// drain, and migrations off it, for the reason endpoint, to another backend.
func TestDemoLivePage(t *testing.T) {
	out := &lineWatch{re: regexp.MustCompile(`live page http://(\S+)/ `), found: make(chan string, 1)}
	done := make(chan error, 1)
	go func() { done <- demoCmd(context.Background(), []string{"--duration", "8s", "--clients", "8"}, out) }()
	var addr string
	select {
	case addr = <-out.found:
	case err := <-done:
		t.Fatalf("the demo ended (%v) without printing its live page:\n%s", err, out.String())
	}
	url, err := statusURL(addr)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	var seen *admin.Status
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
poll:
	for {
		select {
		case err := <-done:
			done <- err
			break poll
		case <-tick.C:
		}
		st, err := fetchStatus(context.Background(), client, url)
		if err != nil {
			continue // not yet, or the demo is ending
		}
		drained := false
		for _, b := range st.Listeners[0].Backends {
			drained = drained || len(b.Drains) > 0
		}
		for _, m := range st.Migrations {
			if m.Reason == "endpoint" && m.To != "" && m.To != m.From && drained {
				seen = st
				break poll
			}
		}
	}
	if err := <-done; err != nil {
		t.Errorf("demo: %v\n%s", err, out.String())
	}
	if seen == nil {
		t.Fatalf("the demo's /status never showed a drain and a migration off it to another backend:\n%s", out.String())
	}
	var b bytes.Buffer
	printStatus(&b, url, seen)
	t.Logf("the demo's status during its rollout:\n%s", b.String())
}

// lineWatch records what the demo prints and sends the first submatch of
// re, once, when it appears.
type lineWatch struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	re    *regexp.Regexp
	found chan string
	sent  bool
}

func (w *lineWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if m := w.re.FindStringSubmatch(w.buf.String()); m != nil && !w.sent {
		w.sent = true
		w.found <- m[1]
	}
	return len(p), nil
}

func (w *lineWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
