package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestLivePageInBrowser loads the live page in headless Chromium while an
// endpoint drains and checks what it shows: the draining endpoint marked
// terminating and not eligible with its two sessions, the drain's sessions
// left and its deadline and kill time counted down, then, once the clients
// leave it and one reconnects, the drain finished and the migrations listed
// from the drained endpoint to the other one. A pod name made of markup is
// shown as text and runs nothing. No script error and no CSP
// violation is logged. It keeps screenshots in its artefact directory, and
// leaves no Chromium process behind.
func TestLivePageInBrowser(t *testing.T) {
	chromium := findChromium(t)
	l := startLive(t, 2, "{timeout: 60s, window: 500ms, killMargin: 0s}")
	for range 4 {
		l.open(t)
	}
	b1, b2 := l.backends[0], l.backends[1]
	if per := l.perEndpoint(); per[b1.Addr()] != 2 || per[b2.Addr()] != 2 {
		t.Fatalf("sessions per endpoint %v, want 2 and 2 (least-connections)", per)
	}
	// b1's pod name is markup, which the page must show as text.
	const hostile = `<img src=x onerror="window.pwned=1">backend-1`
	b1.name = hostile
	kill := time.Now().Add(2 * time.Minute)
	l.setEndpoints(t, map[*echoBackend]time.Time{b2: kill})

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir, err := os.MkdirTemp("", "longhaul-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	allocCtx, stopAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.UserDataDir(dir), chromedp.WindowSize(1280, 900))...)
	tab, stopTab := chromedp.NewContext(allocCtx)
	var consoleMu sync.Mutex
	var console []string
	consoleDone := make(chan struct{})
	defer func() {
		// Close the browser, then check that none of its processes is
		// left (they all name the user data directory on their command
		// line: --user-data-dir, the crash handler's --database).
		if err := chromedp.Cancel(tab); err != nil {
			t.Logf("closing the browser: %v", err)
		}
		stopTab()
		stopAlloc()
		<-consoleDone
		if left := processesWith(dir); len(left) > 0 {
			t.Errorf("chromium processes left running: %v", left)
		}
	}()
	if _, err := chromedp.Run(tab, chromedp.Evaluate[int]("1")); err != nil {
		t.Fatalf("starting %s: %v", chromium, err)
	}
	msgs := chromedp.Console(tab)
	go func() {
		defer close(consoleDone)
		for m, err := range msgs {
			if err != nil {
				return
			}
			consoleMu.Lock()
			console = append(console, m.String()+" ("+m.Source+")")
			consoleMu.Unlock()
		}
	}()

	page := "http://" + l.admin + "/"
	if err := chromedp.Do(tab, chromedp.Navigate(page)); err != nil {
		t.Fatalf("loading %s: %v", page, err)
	}
	wait := func(what, expr string) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(tab, 15*time.Second)
		defer wcancel()
		if _, err := chromedp.Run(wctx, chromedp.Poll[bool](expr, chromedp.WithPollingMutation())); err != nil {
			body, _ := chromedp.Run(tab, chromedp.Evaluate[string]("document.body.innerText"))
			t.Fatalf("the page never showed %s: %v\npage text:\n%s", what, err, body)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(tab, chromedp.Evaluate[string](fmt.Sprintf(
			`(document.querySelector(%s) || {textContent: "(none)"}).textContent`, strconv.Quote(sel))))
		if err != nil {
			t.Fatalf("reading %s: %v", sel, err)
		}
		return s
	}
	shot := func(name string) []byte {
		t.Helper()
		png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		p := filepath.Join(t.ArtifactDir(), name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s (%d bytes)", p, len(png))
		return png
	}
	ep2 := fmt.Sprintf(`tr.endpoint[data-endpoint="%s"]`, b2.Addr())
	ep1 := fmt.Sprintf(`tr.endpoint[data-endpoint="%s"]`, b1.Addr())
	dr := fmt.Sprintf(`tr.drain[data-endpoint="%s"]`, b2.Addr())

	// During the drain: both sessions of b2 asked to move, still open
	// (raw TCP sessions are kept until the deadline).
	wait("the drain of "+b2.name+" with its 2 sessions asked to move",
		fmt.Sprintf(`(r => r && r.querySelector(".asked").textContent === "2")(document.querySelector(%s))`, strconv.Quote(dr)))
	if got := text(`[data-listener="echo"] h3`); !strings.Contains(got, "tcp on "+l.lis) {
		t.Errorf("listener heading %q, want echo, tcp on %s", got, l.lis)
	}
	for sel, want := range map[string]string{
		ep2 + " .conditions": "not readyservingterminating", ep2 + " td:nth-child(2)": b2.name, ep2 + " td:nth-child(4)": "no", ep2 + " .sessions": "2",
		ep1 + " td:nth-child(2)": hostile, ep1 + " td:nth-child(4)": "yes", ep1 + " .sessions": "2", ep1 + " .conditions": "readyserving",
		dr + " .left": "2", dr + " .atstart": "2", dr + " .drainstate": "draining",
		`.backend-sessions[data-backend="echo"]`: "4",
	} {
		if got := text(sel); got != want {
			t.Errorf("%s: %q, want %q", sel, got, want)
		}
	}
	if n, err := chromedp.Run(tab, chromedp.Evaluate[int](`document.querySelectorAll("img").length + (window.pwned ? 100 : 0)`)); err != nil || n != 0 {
		t.Errorf("the pod name %q made markup or ran (%d, %v)", hostile, n, err)
	}
	if fp := text(`.fingerprint[data-backend="echo"]`); !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(fp) {
		t.Errorf("table fingerprint %q, want 16 hex digits", fp)
	}
	// The deadline is a minute after the drain began, the kill time two
	// after the edit: both shown counted down from the page's data.
	if got := text(dr + " .deadline"); !inSeconds(got, 0, 60) {
		t.Errorf("drain deadline %q, want in 0 to 60 s", got)
	}
	if got := text(dr + " .killtime"); !inSeconds(got, 60, 120) {
		t.Errorf("drain kill time %q, want in 60 to 120 s", got)
	}
	if got := text(ep2 + " .kill"); !inSeconds(got, 60, 120) {
		t.Errorf("%s's kill time %q, want in 60 to 120 s", b2.name, got)
	}
	if got := text("#migrations"); got != "No migration yet." {
		t.Errorf("migrations before any ended: %q", got)
	}
	shot("live-page-draining.png")

	// The clients of b2 leave and one comes back: it goes to b1.
	n := 0
	for _, in := range l.a.Sessions().Infos() {
		if in.Endpoint == b2.Addr() {
			closeClient(t, in.Client)
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d sessions on %s, want 2", n, b2.Addr())
	}
	l.open(t)
	wait("two migrations from "+b2.Addr(), fmt.Sprintf(
		`[...document.querySelectorAll("tr.migration .from")].filter(e => e.textContent === %s).length === 2`, strconv.Quote(b2.Addr())))
	wait("a migration's client reconnected to "+b1.Addr(), fmt.Sprintf(
		`[...document.querySelectorAll("tr.migration .to")].some(e => e.textContent === %s)`, strconv.Quote(b1.Addr())))
	wait("the drain finished", fmt.Sprintf(`(r => r && r.querySelector(".drainstate").textContent.startsWith("finished"))(document.querySelector(%s))`, strconv.Quote(dr)))
	for sel, want := range map[string]string{
		"tr.migration .reason": "endpoint", "tr.migration .outcome": "moved",
		dr + " .left": "0", dr + " .ended": "2 / 0 / 0", ep2 + " .sessions": "0", ep1 + " .sessions": "3",
	} {
		if got := text(sel); got != want {
			t.Errorf("%s: %q, want %q", sel, got, want)
		}
	}
	if got := text("#state"); got != "live" {
		t.Errorf("page state %q, want live", got)
	}
	png := shot("live-page.png")
	if p := os.Getenv("LONGHAUL_LIVE_PAGE_SCREENSHOT"); p != "" {
		// Refresh the screenshot the README shows (docs/live-page.png).
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	consoleMu.Lock()
	defer consoleMu.Unlock()
	for _, m := range console {
		if strings.HasPrefix(m, "error") || strings.HasPrefix(m, "exception") || strings.Contains(m, "Content Security Policy") {
			t.Errorf("browser console: %s", m)
		}
	}
}

// inSeconds reports whether s reads "in N.Ns" with N between lo and hi.
func inSeconds(s string, lo, hi float64) bool {
	m := regexp.MustCompile(`^in (\d+\.\d)s$`).FindStringSubmatch(s)
	if m == nil {
		return false
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v >= lo && v <= hi
}

// clientConns are the test's client connections by local address, for
// closeClient.
var clientConns sync.Map

// closeClient closes the test's connection whose local address is addr.
func closeClient(t *testing.T, addr string) {
	t.Helper()
	c, ok := clientConns.Load(addr)
	if !ok {
		t.Fatalf("no client connection from %s", addr)
	}
	c.(net.Conn).Close()
}

// findChromium returns the path of Chromium (hack/deps.sh installs it).
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium on PATH: run hack/deps.sh (apt-get install chromium)")
	return ""
}

// processesWith returns the pids of the processes with an argument that
// contains sub.
func processesWith(sub string) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for a := range bytes.SplitSeq(b, []byte{0}) {
			if bytes.Contains(a, []byte(sub)) {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}
