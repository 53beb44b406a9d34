package main

import (
	"bytes"
	"context"
	"io"
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-quick", "-conns", "77", "-workloads", "idle, tcp-bulk"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.reps != 1 || o.conns != 77 || o.bulkBytes != 256<<20 || o.idleConns != 1000 {
		t.Errorf("quick options = reps %d conns %d bulk %d idle %d", o.reps, o.conns, o.bulkBytes, o.idleConns)
	}
	if strings.Join(o.workloads, ",") != "tcp-bulk,idle" {
		t.Errorf("workloads = %v, want canonical order tcp-bulk,idle", o.workloads)
	}
	if len(o.targets) != 4 {
		t.Errorf("targets = %v", o.targets)
	}
	for _, bad := range [][]string{
		{"-reps", "0"}, {"-workloads", "nope"}, {"-targets", "envoy"}, {"-targets", ","},
		{"-idle-conns", "-5"}, {"-reps", "x"}, {"extra"},
	} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) succeeded", bad)
		}
	}
}

func TestResultsTable(t *testing.T) {
	r := newResults(3)
	for rep, v := range []float64{2, 2.2, 1.8} {
		r.add("tcp-bulk", direct, rep, metrics{mGBps: v * 2})
		r.add("tcp-bulk", haproxy, rep, metrics{mGBps: v, mCPUPerGB: 0.5})
	}
	r.add("tcp-bulk", longhaul, 0, metrics{mGBps: 3, mCPUPerGB: 0.25})
	r.fail("tcp-bulk", longhaul, 1, io.ErrUnexpectedEOF)
	wl := allWorkloads()[0]
	var b bytes.Buffer
	r.table(&b, wl, []string{direct, longhaul, haproxy})
	out := b.String()
	for _, want := range []string{
		"| direct | 4.00 (3.60–4.40) | 1.00 | 2.00 | – | – |",
		"| longhaul | 3.00 | 0.75 | 1.50 | 0.250 | 0.50 |",
		"| haproxy | 2.00 (1.80–2.20) | 0.50 | 1.00 | 0.500 | 1.00 |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if len(r.errors) != 1 || !strings.Contains(r.errors[0], "repetition 2") {
		t.Errorf("errors = %q", r.errors)
	}
	if got := r.series("tcp-bulk", direct, column{metric: mGBps, kind: minusDirect}); got[0] != 0 {
		t.Errorf("direct minus direct = %v", got)
	}
	if got := r.get("nope", direct, 0, mGBps); !math.IsNaN(got) {
		t.Errorf("missing metric = %v, want NaN", got)
	}
}

func TestParseGhz(t *testing.T) {
	out := []byte(`{"count":1000,"total":1000000000,"average":500000,"rps":998.5,
		"latencyDistribution":[{"percentage":50,"latency":400000},{"percentage":99,"latency":2000000}],
		"statusCodeDistribution":{"OK":998,"Unavailable":2},"errorDistribution":{"rpc error: draining":2}}`)
	r, err := parseGhz(out)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := r.percentile(99); err != nil || p != 2*time.Millisecond {
		t.Errorf("p99 = %v, %v", p, err)
	}
	if _, err := r.percentile(75); err == nil {
		t.Error("p75 was not reported but no error")
	}
	if r.failures() != 2 {
		t.Errorf("failures = %d, want 2", r.failures())
	}
	for _, bad := range []string{"", "{", `{"count":0}`, "[1]"} {
		if _, err := parseGhz([]byte(bad)); err == nil {
			t.Errorf("parseGhz(%q) succeeded", bad)
		}
	}
	args := strings.Join(ghzArgs("127.0.0.1:1", 10, 2, 1000), " ")
	if !strings.Contains(args, "--rps 1000") || !strings.HasSuffix(args, "127.0.0.1:1") || strings.Contains(args, "-z") {
		t.Errorf("ghz args = %s", args)
	}
}

func TestSmallHelpers(t *testing.T) {
	if got := parseCPUModel(strings.NewReader("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n")); got != "AMD EPYC 7B13" {
		t.Errorf("cpu model = %q", got)
	}
	if got := parseCPUModel(strings.NewReader("")); got != "unknown CPU" {
		t.Errorf("cpu model of nothing = %q", got)
	}
	if got := maxIdleConns(20000); got != 9488 {
		t.Errorf("maxIdleConns(20000) = %d", got)
	}
	if got := maxIdleConns(100); got != 0 {
		t.Errorf("maxIdleConns(100) = %d", got)
	}
	if got := bytesLabel(2 << 30); got != "2 GiB" {
		t.Errorf("bytesLabel = %q", got)
	}
	if got := quoteArgs([]string{"-out", "a b"}); got != `-out "a b"` {
		t.Errorf("quoteArgs = %q", got)
	}
	if got := shorten("proxy: a lease at pick time", 12); got != "proxy: a le…" {
		t.Errorf("shorten = %q", got)
	}
	if got := shorten("short", 12); got != "short" {
		t.Errorf("shorten = %q", got)
	}
	if got := cell([]float64{1, 3, 2}, 1); got != "2.0 (1.0–3.0)" {
		t.Errorf("cell = %q", got)
	}
}

// TestLoadGenerators drives each generator a few times against the
// in-process backends: a check of the harness, not a benchmark.
func TestLoadGenerators(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	be, err := startBackends()
	if err != nil {
		t.Fatal(err)
	}
	defer be.close()
	if _, err := bulk(ctx, be.addrs.TCPSink, 3<<20+5); err != nil {
		t.Errorf("bulk: %v", err)
	}
	if lat, failed, err := connRate(ctx, be.addrs.TCPEcho, 20, 4); err != nil || failed != 0 || lat.Len() != 20 {
		t.Errorf("connRate: %d ok, %d failed, %v", lat.Len(), failed, err)
	}
	if lat, err := pingPong(ctx, be.addrs.TCPEcho, 50); err != nil || lat.Len() != 50 {
		t.Errorf("pingPong: %v", err)
	}
	if tcs, failed, err := dialTCPEcho(ctx, be.addrs.TCPEcho, 7, 3); err != nil || failed != 0 || len(tcs) != 7 {
		t.Errorf("dialTCPEcho: %d open, %d failed, %v", len(tcs), failed, err)
	} else {
		for _, c := range tcs {
			if err := tcpEchoByte(c); err != nil {
				t.Errorf("echo after holding: %v", err)
			}
			c.Close()
		}
	}
	if r, err := httpLoad(ctx, be.addrs.HTTP[0], 30, 3); err != nil || r.ok != 30 || r.failed != 0 {
		t.Errorf("httpLoad: %+v, %v", r, err)
	}
	var urls []string
	for _, a := range be.addrs.HTTP {
		urls = append(urls, "ws://"+a+"/ws")
	}
	conns, failed, err := dialWS(ctx, urls, 6, 3)
	defer closeAll(conns)
	if err != nil || failed != 0 || len(conns) != 6 {
		t.Fatalf("dialWS: %d open, %d failed, %v", len(conns), failed, err)
	}
	r := wsEcho(ctx, conns, 10*time.Millisecond, 3, 64)
	if r.sent != 18 || r.failed != 0 || r.lat.Len() != 18 {
		t.Errorf("wsEcho: sent %d, failed %d, echoed %d", r.sent, r.failed, r.lat.Len())
	}
}

func TestSummarizeRW(t *testing.T) {
	out := `21902 write(7, "\1\0\0\0\0\0\0\0", 8)   = 8
21903 read(7, "\1\0\0\0\0\0\0\0", 8)    = 8
21903 --- SIGURG {si_signo=SIGURG, si_code=SI_TKILL, si_pid=21897, si_uid=0} ---
21904 read(12,  <unfinished ...>
21904 <... read resumed>"abc", 4096) = 3
21905 read(9, 0xc000100000, 4096) = -1 EAGAIN (Resource temporarily unavailable)
21903 splice(3, NULL, 5, NULL, 1048576, SPLICE_F_NONBLOCK) = 65536
`
	s := summarizeRW(out)
	if s.calls != 4 || s.maxBytes != 8 || s.totalBytes != 19 || len(s.fds) != 3 || s.fds[0] != 7 || s.fds[2] != 12 {
		t.Errorf("summarizeRW = %+v", s)
	}
	if got := s.String(); !strings.Contains(got, "4 read/write calls") || !strings.Contains(got, "7, 9, 12") {
		t.Errorf("String() = %q", got)
	}
	if got := summarizeRW("").String(); got != "no read or write call at all" {
		t.Errorf("empty: %q", got)
	}
}
