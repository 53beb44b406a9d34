// Command soak runs the built longhaul binary for a long time (30 minutes
// by default) in front of loopback backends and holds long-lived
// connections of every kind through it at a steady, modest rate: gRPC
// unary calls and bidi streams on a few ClientConns, HTTP/2 requests on a
// few connections, WebSocket messages, TCP echoes, and two quiet lanes
// whose gaps outlast the HTTP/2 relay's upstream PING and idle timers (see
// internal/soak). Every 10 s it samples longhaul's resident memory (from
// /proc) and goroutines (go_goroutines on its admin /metrics).
//
//	go run ./benchmarks/cmd/soak                      # 30 minutes
//	go run ./benchmarks/cmd/soak -duration 2m
//	go run ./benchmarks/cmd/soak -out benchmarks/RESULTS.md   # also update its "## Soak" section
//
// It prints a Markdown section: per kind of call the ok and failed counts;
// per lane the connections the clients opened (want: one per client, none
// replaced) and those longhaul opened to the backend; RSS and goroutines
// after the warm-up, min, max, end and slope. It exits non-zero if a call
// failed, a connection was replaced, or a figure grew past its bound.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/longhaul-proxy/longhaul/benchmarks/internal/proc"
	"github.com/longhaul-proxy/longhaul/internal/soak"
)

// options are the command's flags.
type options struct {
	plan               soak.Plan
	out                string
	goroutineBound     int
	rssBoundMiB        int
	keep               bool
	warmUp, sampleRate time.Duration
}

func main() {
	log.SetFlags(log.Ltime)
	if err := realMain(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		log.Printf("soak: %v", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	p := &o.plan
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&p.Duration, "duration", 30*time.Minute, "how long the clients run, warm-up included")
	fs.DurationVar(&o.warmUp, "warmup", 30*time.Second, "when the first sample is taken; growth is measured from there")
	fs.DurationVar(&o.sampleRate, "sample", 10*time.Second, "time between samples of RSS and goroutines")
	fs.DurationVar(&p.Interval, "interval", 100*time.Millisecond, "time between two calls of one busy client (a unary caller, a stream, a connection)")
	fs.DurationVar(&p.QuietGap, "quiet-gap", soak.UpstreamIdle+10*time.Second, "time between two messages of the quiet lanes (not within 5s of the 75s keep-alive idle or the 90s upstream idle timeouts)")
	fs.DurationVar(&p.CallTimeout, "call-timeout", 10*time.Second, "bound on one call or echo")
	fs.IntVar(&p.GRPCConns, "grpc-conns", 2, "gRPC ClientConns, each with a unary caller and -streams bidi streams")
	fs.IntVar(&p.StreamsPerConn, "streams", 4, "bidi streams per gRPC ClientConn")
	fs.IntVar(&p.HTTP2Conns, "http2-conns", 2, "HTTP/2 (h2c) client connections")
	fs.IntVar(&p.HTTP1Conns, "http1-conns", 2, "HTTP/1.1 keep-alive client connections")
	fs.IntVar(&p.WSConns, "ws-conns", 4, "WebSocket connections")
	fs.IntVar(&p.TCPConns, "tcp-conns", 4, "TCP connections")
	fs.IntVar(&o.goroutineBound, "goroutine-bound", 20, "most goroutines longhaul may end with above its count after the warm-up")
	fs.IntVar(&o.rssBoundMiB, "rss-bound-mib", 32, "most MiB of RSS longhaul may end with above its RSS after the warm-up")
	fs.StringVar(&o.out, "out", "", "also write the section into this Markdown file (relative to the module root unless absolute), replacing its \"## Soak\" section or appending one")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (configuration, longhaul's log)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	// Samples fall half an interval off the clients' ticks.
	p.WarmUp = o.warmUp + p.Interval/2
	p.SampleEvery = o.sampleRate
	if o.goroutineBound <= 0 || o.rssBoundMiB <= 0 {
		return o, fmt.Errorf("-goroutine-bound and -rss-bound-mib must be positive")
	}
	if err := p.Validate(); err != nil {
		return o, err
	}
	return o, nil
}

func realMain(args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	repo, err := proc.ModuleRoot(ctx)
	if err != nil {
		return err
	}
	work, cleanup, err := proc.WorkDir("longhaul-soak-", o.keep)
	if err != nil {
		return err
	}
	defer cleanup()
	log.Printf("building longhaul from %s", repo)
	bin, err := proc.BuildLonghaul(ctx, repo, work)
	if err != nil {
		return err
	}
	version := proc.LonghaulVersion(ctx, repo)

	be, err := soak.StartBackends()
	if err != nil {
		return err
	}
	defer be.Close()
	ports, err := proc.FreePorts(len(soak.Lanes) + 1)
	if err != nil {
		return err
	}
	admin, listen := proc.Loopback(ports[0]), soak.Addrs{}
	for i, l := range soak.Lanes {
		listen[l] = proc.Loopback(ports[i+1])
	}
	cfg := filepath.Join(work, "longhaul.yaml")
	if err := os.WriteFile(cfg, soak.Config(admin, listen, be.Addrs), 0o644); err != nil {
		return fmt.Errorf("longhaul config: %w", err)
	}
	lh := &proc.Proc{Name: "longhaul", Argv: []string{bin, "run", "--config", cfg}, Dir: work}
	// Only the admin address is probed: longhaul binds its listeners
	// before it, and a probe of the TCP listener would open a backend
	// connection that the counts would take for a reconnect.
	if err := lh.Start(ctx, []string{admin}, 15*time.Second); err != nil {
		return err
	}
	defer lh.Stop()
	if err := waitReady(ctx, admin, 10*time.Second); err != nil {
		return err
	}

	probes := []soak.Probe{
		{Name: "longhaul RSS", Unit: "MiB", Bound: float64(o.rssBoundMiB << 20), Read: func() (float64, error) {
			s, err := lh.Sample()
			return float64(s.RSSBytes), err
		}},
		{Name: "longhaul goroutines", Bound: float64(o.goroutineBound), Read: func() (float64, error) {
			return scrapeGauge(admin, "go_goroutines")
		}},
	}
	log.Printf("soak of %v through longhaul (admin http://%s/metrics)", o.plan.Duration, admin)
	res, err := soak.Drive(ctx, listen, be, o.plan, probes)
	if res == nil {
		return err
	}
	if err != nil { // interrupted: report what ran, write nothing
		res.Markdown(stdout)
		return fmt.Errorf("interrupted after %v: %w", res.Took.Round(time.Second), err)
	}
	problems := res.Problems()
	if err := lh.Alive(); err != nil {
		problems = append(problems, err.Error())
	}
	var sec bytes.Buffer
	writeSection(&sec, args, version, res)
	if _, err := stdout.Write(sec.Bytes()); err != nil {
		return err
	}
	if o.out != "" {
		path := o.out
		if !filepath.IsAbs(path) {
			path = filepath.Join(repo, path)
		}
		if err := updateSection(path, sec.String()); err != nil {
			return err
		}
		log.Printf("wrote the %s section of %s", sectionHeading, path)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%d problems:\n%s", len(problems), strings.Join(problems, "\n"))
	}
	return nil
}

// waitReady polls the admin /readyz until it answers 200.
func waitReady(ctx context.Context, admin string, limit time.Duration) error {
	cli := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(limit)
	for {
		resp, err := cli.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("longhaul not ready after %v: %w", limit, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// scrapeGauge reads one unlabelled series from the admin /metrics.
func scrapeGauge(admin, name string) (float64, error) {
	cli := &http.Client{Timeout: 5 * time.Second}
	resp, err := cli.Get("http://" + admin + "/metrics")
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("metrics: status %d", resp.StatusCode)
	}
	return gaugeValue(io.LimitReader(resp.Body, 16<<20), name)
}

// gaugeValue finds the sample "name value" in Prometheus text format.
func gaugeValue(r io.Reader, name string) (float64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name+" ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			break
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("metrics: %s: %w", name, err)
		}
		return v, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	return 0, fmt.Errorf("metrics: no %s sample", name)
}

// sectionHeading is the heading of the section soak writes.
const sectionHeading = "## Soak"

func writeSection(w io.Writer, args []string, version string, res *soak.Result) {
	p := res.Plan
	fmt.Fprintf(w, "%s\n\n", sectionHeading)
	fmt.Fprintf(w, "`go run ./benchmarks/cmd/soak %s` on %s, %d cores, %s; %s.\n\n", strings.Join(args, " "),
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), runtime.Version(), version)
	fmt.Fprintf(w, "The built binary with default timers in front of loopback backends: %d gRPC ClientConns (a unary call and %d bidi streams each), %d HTTP/2, %d HTTP/1.1, %d WebSocket and %d TCP connections, plus a quiet gRPC stream and quiet HTTP/2 and HTTP/1.1 connections (see internal/soak).\n\n",
		p.GRPCConns, p.StreamsPerConn, p.HTTP2Conns, p.HTTP1Conns, p.WSConns, p.TCPConns)
	res.Markdown(w)
	fmt.Fprintln(w)
}

// updateSection replaces the section of the Markdown file at path that
// starts with sectionHeading (up to the next level-2 heading) with sec, or
// appends sec when there is none; the rest of the file is kept.
func updateSection(path, sec string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("report: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(replaceSection(string(old), sectionHeading, sec)), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// replaceSection returns doc with the section under the level-2 heading
// (a line equal to heading, up to the next line starting "## " or the end)
// replaced by sec, or with sec appended after a blank line.
func replaceSection(doc, heading, sec string) string {
	sec = strings.TrimRight(sec, "\n") + "\n"
	lines := strings.SplitAfter(doc, "\n")
	start := -1
	for i, l := range lines {
		if strings.TrimRight(l, "\r\n") == heading {
			start = i
			break
		}
	}
	if start < 0 {
		if doc == "" {
			return sec
		}
		return strings.TrimRight(doc, "\n") + "\n\n" + sec
	}
	end := len(lines)
	for i := start + 1; i < len(lines); i++ {
		if strings.HasPrefix(lines[i], "## ") {
			end = i
			break
		}
	}
	rest := strings.Join(lines[end:], "")
	if rest != "" {
		sec += "\n"
	}
	return strings.Join(lines[:start], "") + sec + rest
}
