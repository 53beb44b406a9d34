package main

import (
	"bytes"
	"context"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/benchmarks/internal/proc"
)

func TestParseFlagsBase(t *testing.T) {
	for _, c := range []struct {
		args    []string
		targets string // "" when an error is wanted
		errHas  string
	}{
		{[]string{"-base", "main"}, "direct,longhaul,longhaul-base,haproxy,nginx", ""},
		{[]string{"-base", "main", "-targets", "longhaul, longhaul-base"}, "longhaul,longhaul-base", ""},
		{[]string{"-base", "main", "-targets", "all"}, "direct,longhaul,longhaul-base,haproxy,nginx", ""},
		{[]string{"-targets", "all"}, "direct,longhaul,haproxy,nginx", ""},
		{[]string{}, "direct,longhaul,haproxy,nginx", ""},
		{[]string{"-targets", "direct,longhaul-base,longhaul"}, "", "longhaul-base needs -base REV"},
		{[]string{"-base", "main", "-targets", "direct,longhaul"}, "", "-base main given but longhaul-base is not among the targets"},
	} {
		o, err := parseFlags(c.args, io.Discard)
		if c.targets == "" {
			if err == nil || !strings.Contains(err.Error(), c.errHas) {
				t.Errorf("parseFlags(%q) = %v, want an error with %q", c.args, err, c.errHas)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseFlags(%q): %v", c.args, err)
			continue
		}
		if got := strings.Join(o.targets, ","); got != c.targets {
			t.Errorf("parseFlags(%q) targets = %s, want %s", c.args, got, c.targets)
		}
	}
	if o, err := parseFlags([]string{"-base", "HEAD~1"}, io.Discard); err != nil || o.base != "HEAD~1" {
		t.Errorf("-base HEAD~1: base %q, %v", o.base, err)
	}
}

// baseResults are three repetitions of grpc-sat and ws on direct, longhaul
// and longhaul-base; longhaul's second grpc-sat repetition failed.
func baseResults() *results {
	r := newResults(3)
	for rep, v := range []struct{ lhCPU, baseCPU, lhRate, baseRate, dP50, lhP50, baseP50 float64 }{
		{10, 20, 900, 600, 100, 300, 400},
		{12, 12, 1000, 1000, 110, 210, 210},
		{9, 10, 800, 1000, 90, 190, 140},
	} {
		if rep != 1 {
			r.add("grpc-sat", longhaul, rep, metrics{mCPUPerReq: v.lhCPU, mRate: v.lhRate})
		}
		r.add("grpc-sat", longhaulBase, rep, metrics{mCPUPerReq: v.baseCPU, mRate: v.baseRate})
		r.add("ws", direct, rep, metrics{mP50: v.dP50, mP99: 2 * v.dP50})
		r.add("ws", longhaul, rep, metrics{mP50: v.lhP50, mP99: 2 * v.lhP50, mCPUPerMsg: v.lhCPU})
		r.add("ws", longhaulBase, rep, metrics{mP50: v.baseP50, mP99: 2 * v.baseP50, mCPUPerMsg: v.baseCPU})
	}
	return r
}

func TestBaseRatios(t *testing.T) {
	r := baseResults()
	cpu := column{metric: mCPUPerReq, kind: value}
	got := r.ratioSeries("grpc-sat", longhaul, longhaulBase, cpu)
	if len(got) != 3 || got[0] != 0.5 || got[2] != 0.9 || !math.IsNaN(got[1]) {
		t.Errorf("CPU ratio per repetition = %v, want [0.5 NaN 0.9]", got)
	}
	if c := cell(got, 2); c != "0.70 (0.50–0.90)" {
		t.Errorf("CPU ratio cell = %q", c)
	}
	// Added latency: each target's p50 less direct's in the same
	// repetition, then the ratio: 200/300, 100/100, 100/50.
	added := r.ratioSeries("ws", longhaul, longhaulBase, column{metric: mP50, kind: minusDirect})
	if c := cell(added, 2); c != "1.00 (0.67–2.00)" {
		t.Errorf("added p50 ratio = %v, cell %q", added, c)
	}
	// No base measurement at all: no ratio.
	if c := cell(r.ratioSeries("http", longhaul, longhaulBase, cpu), 2); c != "–" {
		t.Errorf("ratio without measurements = %q", c)
	}
}

func TestBaseSection(t *testing.T) {
	r := baseResults()
	var wls []workload
	for _, w := range allWorkloads() {
		if w.name == "grpc-sat" || w.name == "ws" || w.name == "idle" {
			wls = append(wls, w)
		}
	}
	base := baseRev{rev: "main", commit: "0123456789abcdef0123456789abcdef01234567", subject: "before the refactor"}
	var b bytes.Buffer
	writeBaseSection(&b, r, wls, []string{direct, longhaul, longhaulBase}, base)
	out := b.String()
	for _, want := range []string{
		"## longhaul against its base revision\n",
		"revision main (`0123456789ab`, \"before the refactor\")",
		"| workload | figure | longhaul | longhaul-base | longhaul / base | better |",
		"| grpc-sat | proxy CPU us/req | 9.5 (9.0–10.0) | 12.0 (10.0–20.0) | 0.70 (0.50–0.90) | lower |",
		"| grpc-sat | req/s | 850 (800–900) | 1000 (600–1000) | 1.15 (0.80–1.50) | higher |",
		"| ws | proxy CPU us/msg | 10.0 (9.0–12.0) | 12.0 (10.0–20.0) | 0.90 (0.50–1.00) | lower |",
		"| ws | added p50 us | 100 (100–200) | 100 (50–300) | 1.00 (0.67–2.00) | lower |",
		"| ws | added p99 us | 200 (200–400) | 200 (100–600) | 1.00 (0.67–2.00) | lower |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("section lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "| idle |") {
		t.Errorf("section has a row for idle, which was not measured:\n%s", out)
	}
	b.Reset()
	writeBaseSection(&b, r, wls, []string{direct, longhaul, haproxy}, base)
	if b.Len() != 0 {
		t.Errorf("section without longhaul-base:\n%s", b.String())
	}
	// The whole report: the info line, the section before the tables,
	// longhaul-base's rows in them.
	b.Reset()
	o, _ := parseFlags([]string{"-base", "main", "-quick"}, io.Discard)
	writeReport(&b, reportInfo{reps: 3, base: base}, r, wls, []string{direct, longhaul, longhaulBase}, o)
	out = b.String()
	sec, tables := strings.Index(out, "## longhaul against"), strings.Index(out, "## gRPC unary")
	if !strings.Contains(out, "- longhaul-base: revision main (0123456789abcdef0123456789abcdef01234567, \"before the refactor\")") ||
		sec < 0 || tables < sec || !strings.Contains(out[tables:], "| longhaul-base | 1000 (600–1000) |") {
		t.Errorf("report:\n%s", out)
	}
}

// git runs git in dir for a test, failing it on error.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestBuildBase builds a small module's cmd/longhaul from a commit while
// the working tree holds another version: the binary is the commit's, the
// repository is left as it was, the extracted source is gone.
func TestBuildBase(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	repo, work := t.TempDir(), t.TempDir()
	write := func(path, text string) {
		p := filepath.Join(repo, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	main := func(says string) string {
		return "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"" + says + "\") }\n"
	}
	git(t, repo, "init", "-q")
	write("README", "no command yet\n")
	git(t, repo, "add", ".")
	git(t, repo, "commit", "-q", "-m", "empty")
	write("go.mod", "module example.com/fake\n\ngo 1.22\n")
	write("cmd/longhaul/main.go", main("the base"))
	git(t, repo, "add", ".")
	git(t, repo, "commit", "-q", "-m", "the base revision")
	write("cmd/longhaul/main.go", main("the working tree"))
	status := git(t, repo, "status", "--porcelain")

	if _, err := resolveBase(ctx, repo, "no-such-rev"); err == nil || !strings.Contains(err.Error(), "-base no-such-rev: not a commit") {
		t.Errorf("resolveBase(no-such-rev) = %v", err)
	}
	b, err := resolveBase(ctx, repo, "HEAD")
	if err != nil {
		t.Fatal(err)
	}
	if b.commit != git(t, repo, "rev-parse", "HEAD") || b.subject != "the base revision" {
		t.Errorf("resolveBase(HEAD) = %+v", b)
	}
	bin, err := buildBase(ctx, repo, b, work)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin).Output(); err != nil || strings.TrimSpace(string(out)) != "the base" {
		t.Errorf("%s says %q (%v), want the base", bin, out, err)
	}
	if _, err := os.Stat(filepath.Join(work, "base-src")); !os.IsNotExist(err) {
		t.Errorf("base-src left behind: %v", err)
	}
	if got := git(t, repo, "status", "--porcelain"); got != status {
		t.Errorf("git status after the build = %q, was %q", got, status)
	}
	if got := git(t, repo, "worktree", "list"); strings.Count(got, "\n") != 0 {
		t.Errorf("worktrees after the build:\n%s", got)
	}

	old, err := resolveBase(ctx, repo, "HEAD~1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := buildBase(ctx, repo, old, work); err == nil || !strings.Contains(err.Error(), "revision HEAD~1 has no cmd/longhaul") {
		t.Errorf("buildBase(HEAD~1) = %v", err)
	}
	if _, err := os.Stat(filepath.Join(work, "base-src")); !os.IsNotExist(err) {
		t.Errorf("base-src left behind after a failed build: %v", err)
	}
}

// fakeLonghaul writes a shell script standing in for a longhaul binary.
func fakeLonghaul(t *testing.T, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "longhaul")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckBaseConfig(t *testing.T) {
	ctx := context.Background()
	b := baseRev{rev: "v0.1"}
	rejects := fakeLonghaul(t, `echo 'longhaul validate: listeners[0].maxConnections: unknown key' >&2; exit 1`)
	err := checkBaseConfig(ctx, rejects, "/cfg/longhaul.yaml", b)
	if err == nil || !strings.Contains(err.Error(), "longhaul-base (revision v0.1) rejects the configuration generated for longhaul (/cfg/longhaul.yaml)") ||
		!strings.Contains(err.Error(), "listeners[0].maxConnections: unknown key") {
		t.Errorf("a rejecting base: %v", err)
	}
	noValidate := fakeLonghaul(t, `echo 'unknown command "validate"' >&2; exit 2`)
	if err := checkBaseConfig(ctx, noValidate, "/cfg/longhaul.yaml", b); err != nil {
		t.Errorf("a base without validate: %v", err)
	}
	accepts := fakeLonghaul(t, `[ "$1 $2 $3" = "validate --config /cfg/longhaul.yaml" ] || exit 9; echo valid`)
	if err := checkBaseConfig(ctx, accepts, "/cfg/longhaul.yaml", b); err != nil {
		t.Errorf("an accepting base: %v", err)
	}
}

// TestBaseStartHint: a longhaul-base that exits at start is reported with
// the hint about configuration keys and its output.
func TestBaseStartHint(t *testing.T) {
	bin := fakeLonghaul(t, `echo 'longhaul run: http.webSocket: unknown key'; exit 1`)
	tg := &target{name: longhaulBase, addrs: addrSet{TCPSink: proc.Loopback(1)},
		Proc: proc.Proc{Name: longhaulBase, Argv: []string{bin, "run"}, Dir: t.TempDir()}}
	err := tg.start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "exited before listening") ||
		!strings.Contains(err.Error(), "may reject a key of the generated configuration") || !strings.Contains(err.Error(), "http.webSocket: unknown key") {
		t.Errorf("start = %v", err)
	}
}
