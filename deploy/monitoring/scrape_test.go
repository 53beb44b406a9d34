package monitoring

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/net/http2"

	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/internal/app"
	"github.com/longhaul-proxy/longhaul/internal/guard"
	"github.com/longhaul-proxy/longhaul/internal/testnet"
)

// TestMetricsExported: every metric the dashboard and the alerting rules
// name is exported by a running longhaul. The test runs one in-process (an
// App, as longhaul run builds it) with a tcp, an http and a tcp listener
// whose only endpoint refuses, makes the events that create the labelled
// series (a TCP session, HTTP requests, a dial error, an HTTP/2 connection
// closed for a PING flood, a refused reload, a drain of each listener's
// endpoint, the TCP one with a kill time it misses), scrapes /metrics, and
// looks each name up among the families scraped (a histogram's _bucket,
// _sum and _count series by the histogram's name).
//
// The panics counter is the one series longhaul cannot be made to create
// from outside (it counts bugs): the test recovers one panic through
// internal/guard, whose counter every App registers, so that the family is
// scraped from the App like the others.
func TestMetricsExported(t *testing.T) {
	// A memory budget exists only under GOMEMLIMIT.
	prev := debug.SetMemoryLimit(1 << 30)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })

	b1, b2 := echoServer(t), echoServer(t)
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
	w1, w2 := testnet.H2CServer(t, hello), testnet.H2CServer(t, hello)
	dead := refusingAddr(t)
	tcpFile, writeTCP := endpointsFile(t, "tcp.yaml")
	webFile, writeWeb := endpointsFile(t, "web.yaml")
	writeTCP(fmt.Sprintf("- {address: %q}\n", b2))
	writeWeb(fmt.Sprintf("- {address: %q}\n", w1))
	admin, echoAddr, webAddr, deadAddr := testnet.FreeAddr(t), testnet.FreeAddr(t), testnet.FreeAddr(t), testnet.FreeAddr(t)
	yaml := fmt.Sprintf(`
admin: {address: %q}
listeners:
  - name: echo
    address: %q
    endpoints: {file: %q}
    maxConnectionsPerClient: 64
    drain: {timeout: 20s, window: 100ms, killMargin: 0s}
  - name: web
    protocol: http
    address: %q
    http: {upstream: h2c}
    endpoints: {file: %q}
    drain: {timeout: 5s, window: 100ms}
  - name: dead
    address: %q
    endpoints: {static: [%q]}
    timeouts: {connect: 2s}
`, admin, echoAddr, tcpFile, webAddr, webFile, deadAddr, dead)
	a := run(t, yaml)

	// One TCP session on b2, kept open for its drain.
	session, err := net.Dial("tcp", echoAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	roundTrip(t, session, "hello")
	// HTTP/1.1 and HTTP/2 requests through the http listener.
	for _, h2 := range []bool{false, true} {
		if code, body := httpGet(t, "http://"+webAddr+"/", h2); code != 200 || body != "hello" {
			t.Fatalf("GET through the http listener (h2c %v): %d %q", h2, code, body)
		}
	}
	pingFlood(t, webAddr)
	// A connection through the listener whose endpoint refuses: longhaul
	// closes it once the dial failed.
	c, err := net.Dial("tcp", deadAddr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a connection to the listener whose endpoint refuses: read %v, want it closed", err)
	}
	c.Close()
	guard.Do("monitoring_test", func() { panic("recorded by the metrics test") })
	// A change that needs a restart is refused.
	next, err := config.Parse([]byte(strings.Replace(yaml, admin, testnet.FreeAddr(t), 1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(next); err == nil {
		t.Fatal("Reload of a new admin address: applied, want refused")
	}
	// b2 turns terminating with a kill time before drain's least time:
	// the session is forced, late. w1 turns terminating: its pooled
	// upstream connections drain.
	kill := time.Now().Add(100 * time.Millisecond)
	writeTCP(fmt.Sprintf("- {address: %q}\n- {address: %q, ready: false, serving: true, terminating: true, killTime: %q}\n",
		b1, b2, kill.Format(time.RFC3339Nano)))
	writeWeb(fmt.Sprintf("- {address: %q}\n- {address: %q, ready: false, serving: true, terminating: true}\n", w2, w1))

	want := map[string][]string{} // name -> where it is used
	for where, expr := range dashboardExprs(t) {
		for _, n := range metricNames(expr) {
			want[n] = append(want[n], "dashboard "+where)
		}
	}
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			for _, n := range metricNames(r.Expr) {
				want[n] = append(want[n], "alert "+r.Alert)
			}
		}
	}
	var fams map[string]*dto.MetricFamily
	missing := func() []string {
		var out []string
		for n := range want {
			if _, ok := familyOf(n, histograms(fams)); !ok {
				out = append(out, n)
			}
		}
		slices.Sort(out)
		return out
	}
	// The series of the drains and the migrations appear as they happen.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		fams = scrape(t, "http://"+admin+"/metrics")
		if len(missing()) == 0 && ended(fams) == 1 {
			break
		}
		if time.Now().After(deadline) {
			states := map[string]float64{}
			for _, st := range []string{"left", "moved", "forced", "closed"} {
				states[st] = value(fams, "longhaul_drain_sessions", map[string]string{"listener": "echo", "state": st})
			}
			t.Fatalf("20 s after the drains began, /metrics lacks %q (the TCP drain's sessions: %v)", missing(), states)
		}
	}
	for name, v := range map[string]map[string]string{
		"longhaul_config_reloads_total":      {"result": "refused"},
		"longhaul_dial_errors_total":         {"listener": "dead", "endpoint": dead},
		"longhaul_migrations_ended_total":    {"listener": "echo"},
		"longhaul_connections_abusive_total": {"listener": "web"},
		"longhaul_panics_total":              {"where": "monitoring_test"},
	} {
		if got := value(fams, name, v); got < 1 {
			t.Errorf("%s%v = %v, want at least 1", name, v, got)
		}
	}
	if got := value(fams, "longhaul_drain_kill_margin_seconds", map[string]string{"listener": "echo", "endpoint": b2}); got >= 0 {
		t.Errorf("the kill margin of %s is %v, want negative (its kill time came before drain's least time)", b2, got)
	}

	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	slices.Sort(names)
	var unused []string
	for f := range fams {
		if !strings.HasPrefix(f, "longhaul_") {
			continue
		}
		used := false
		for _, n := range names {
			if fam, _ := familyOf(n, histograms(fams)); fam == f {
				used = true
			}
		}
		if !used {
			unused = append(unused, f)
		}
	}
	slices.Sort(unused)
	t.Logf("%d metric names of the dashboard and the rules, all exported: %s", len(names), strings.Join(names, " "))
	t.Logf("longhaul families scraped and used by neither: %q", unused)
}

// histograms maps each family of fams to whether it is a histogram.
func histograms(fams map[string]*dto.MetricFamily) map[string]bool {
	out := make(map[string]bool, len(fams))
	for n, f := range fams {
		out[n] = f.GetType() == dto.MetricType_HISTOGRAM
	}
	return out
}

// value returns the sum of the values of the series of family name whose
// labels include labels (a counter's or a gauge's), 0 if there are none.
// ended counts the echo listener's drain sessions that ended after they
// were asked to move. The one session is forced at its deadline, or, when
// its start's timer fires only after that deadline on a busy machine,
// closed: either way the drain's series exist.
func ended(fams map[string]*dto.MetricFamily) float64 {
	var n float64
	for _, state := range []string{"moved", "forced", "closed"} {
		n += value(fams, "longhaul_drain_sessions", map[string]string{"listener": "echo", "state": state})
	}
	return n
}

func value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	var sum float64
	for _, m := range fams[name].GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range labels {
			match = match && have[k] == v
		}
		if match {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// scrape GETs url and parses it as Prometheus' text format.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return fams
}

// run starts an App from the configuration yaml and waits until it is
// ready; it stops when the test ends.
func run(t *testing.T, yaml string) *app.App {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	a, err := app.New(cfg, app.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return 30 s after its context ended")
		}
	})
	for deadline := time.Now().Add(10 * time.Second); a.Ready().Check() != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v", a.Ready().Check())
		}
	}
	return a
}

// echoServer serves TCP echo on a loopback address until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() { io.Copy(c, c); c.Close() })
		}
	})
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

// refusingAddr returns a loopback address nothing listens on (it was
// bound a moment ago): a dial to it is refused.
func refusingAddr(t *testing.T) string { return testnet.FreeAddr(t) }

// endpointsFile returns the path of an endpoints file and a function that
// replaces its content at once (a rename, as an editor or a ConfigMap
// update does).
func endpointsFile(t *testing.T, name string) (string, func(string)) {
	t.Helper()
	file := filepath.Join(t.TempDir(), name)
	return file, func(s string) {
		t.Helper()
		if err := os.WriteFile(file+".tmp", []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(file+".tmp", file); err != nil {
			t.Fatal(err)
		}
	}
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

// httpGet GETs url over HTTP/1.1 or, with h2c, HTTP/2 with prior
// knowledge, on a connection of its own.
func httpGet(t *testing.T, url string, h2c bool) (int, string) {
	t.Helper()
	protos := new(http.Protocols)
	if h2c {
		protos.SetUnencryptedHTTP2(true)
	} else {
		protos.SetHTTP1(true)
	}
	tr := &http.Transport{Protocols: protos}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// pingFlood sends an HTTP/2 connection's preface and then more PINGs
// than longhaul's budget allows, and waits until longhaul closes it
// (GOAWAY ENHANCE_YOUR_CALM).
func pingFlood(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	closed := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, c); closed <- err }()
	fr := http2.NewFramer(c, nil)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for i := range 2000 { // the budget is 1000 in 10 s
		if err := fr.WritePing(false, [8]byte{byte(i >> 8), byte(i)}); err != nil {
			break // closed: over the budget
		}
	}
	if err := <-closed; errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("longhaul did not close an HTTP/2 connection that sent 2000 PINGs")
	}
}
