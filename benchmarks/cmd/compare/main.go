// Command compare measures longhaul side by side with direct connections,
// HAProxy and NGINX on loopback, and writes a Markdown report.
//
//	go run ./benchmarks/cmd/compare            # full run, about 10 to 15 minutes on 2 cores
//	go run ./benchmarks/cmd/compare -quick     # smoke run, about 1 minute
//	go run ./benchmarks/cmd/compare -workloads tcp-bulk,idle -reps 5
//	go run ./benchmarks/cmd/compare -workloads rollout -targets longhaul,haproxy,nginx
//	go run ./benchmarks/cmd/compare -workloads rollout-scale -targets longhaul -reps 1
//	go run ./benchmarks/cmd/compare -base main   # also longhaul built from main: no slower?
//
// It installs what is missing (Debian haproxy, nginx, libnginx-mod-stream
// and strace with apt-get; ghz with go install into a cache directory),
// builds ./cmd/longhaul, runs the backends and the load generator in this
// process, and the proxies in the foreground with generated configurations.
// See benchmarks/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/longhaul-proxy/longhaul/benchmarks/internal/proc"
)

// options are the command's flags.
type options struct {
	reps                         int
	quick                        bool
	workloads, targets           []string
	bulkBytes                    int64
	conns, pings                 int
	grpcN, grpcRateN, httpN      int
	wsClients, wsMsgs, idleConns int
	out, toolsDir                string
	// base is the git revision longhaul-base is built from; empty for none.
	base                  string
	install, strace, keep bool
	haproxySplice         bool
	longhaulDebug         string
	limit                 time.Duration
	rolloutWS             int
	rolloutDrain          time.Duration
	rolloutScaleWS        int
	rolloutScaleInterval  time.Duration
}

func main() {
	log.SetFlags(log.Ltime)
	if len(os.Args) == 2 && os.Args[1] == scaleClientsRole {
		scaleClientsMain()
		return
	}
	if err := realMain(os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		log.Printf("compare: %v", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	names := make([]string, 0, 8)
	for _, w := range allWorkloads() {
		names = append(names, w.name)
	}
	fs.IntVar(&o.reps, "reps", 3, "repetitions of each workload on each target")
	fs.BoolVar(&o.quick, "quick", false, "smoke run: 1 repetition, small sizes (flags given explicitly still win)")
	wl := fs.String("workloads", "all", "comma-separated workloads: "+strings.Join(names, ","))
	tg := fs.String("targets", "direct,longhaul,haproxy,nginx", "comma-separated targets: "+strings.Join(knownTargets, ",")+" (with -base, longhaul-base is added to the default)")
	fs.StringVar(&o.base, "base", "", "git revision to build the longhaul-base target from (longhaul before a change), e.g. main or HEAD~1")
	bulkMiB := fs.Int64("bulk-mib", 2048, "MiB sent by tcp-bulk")
	fs.IntVar(&o.conns, "conns", 10000, "connections opened by tcp-connrate")
	fs.IntVar(&o.pings, "pings", 20000, "round trips of tcp-pingpong")
	fs.IntVar(&o.grpcN, "grpc-n", 20000, "calls of grpc-sat")
	fs.IntVar(&o.grpcRateN, "grpc-rate-n", 5000, "calls of grpc-rps (at 1000 rps)")
	fs.IntVar(&o.httpN, "http-n", 40000, "requests of http")
	fs.IntVar(&o.wsClients, "ws-clients", 200, "WebSocket clients of ws (10 messages/s each)")
	fs.IntVar(&o.wsMsgs, "ws-msgs", 50, "messages per WebSocket client of ws")
	fs.IntVar(&o.idleConns, "idle-conns", 10000, "connections held by idle (50000 works: several source addresses and backends)")
	fs.StringVar(&o.out, "out", "benchmarks/RESULTS.md", "report file, relative to the module root unless absolute; - for stdout")
	fs.StringVar(&o.toolsDir, "tools-dir", defaultToolsDir(), "where ghz is built and kept")
	fs.BoolVar(&o.install, "install", true, "install missing Debian packages and build ghz")
	fs.BoolVar(&o.strace, "strace", true, "add an strace -c summary of longhaul during one tcp-bulk run")
	fs.StringVar(&o.longhaulDebug, "longhaul-debug", "", "loopback host:port of longhaul's debug listener with pprof on (for profiling: benchmarks/profile.sh); empty for none")
	fs.BoolVar(&o.haproxySplice, "haproxy-splice", true, "HAProxy's option splice-request/splice-response on its TCP backends (longhaul splices too)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (configs, proxy logs)")
	fs.DurationVar(&o.limit, "limit", 2*time.Minute, "time limit of one measurement")
	fs.IntVar(&o.rolloutWS, "rollout-ws", 300, "WebSocket clients of rollout (2 messages every 0.5 s each)")
	fs.DurationVar(&o.rolloutDrain, "rollout-drain", 3*time.Second, "rollout and rollout-scale: time from a pod turning terminating to its kill (its grace period)")
	fs.IntVar(&o.rolloutScaleWS, "rollout-scale-ws", 10000, "WebSocket clients of rollout-scale (spread over 2 longhaul replicas and 2 client processes)")
	fs.DurationVar(&o.rolloutScaleInterval, "rollout-scale-interval", 5*time.Second, "rollout-scale: each WebSocket client sends 2 messages every this often")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		quick := map[string]func(){
			"reps": func() { o.reps = 1 }, "bulk-mib": func() { *bulkMiB = 256 }, "conns": func() { o.conns = 1000 },
			"pings": func() { o.pings = 2000 }, "grpc-n": func() { o.grpcN = 2000 }, "grpc-rate-n": func() { o.grpcRateN = 1000 },
			"http-n": func() { o.httpN = 4000 }, "ws-clients": func() { o.wsClients = 50 }, "ws-msgs": func() { o.wsMsgs = 10 },
			"idle-conns": func() { o.idleConns = 1000 }, "rollout-ws": func() { o.rolloutWS = 100 },
			"rollout-scale-ws": func() { o.rolloutScaleWS = 500 },
		}
		for name, f := range quick {
			if !set[name] {
				f()
			}
		}
	}
	o.bulkBytes = *bulkMiB << 20
	for name, v := range map[string]int{"reps": o.reps, "bulk-mib": int(*bulkMiB), "conns": o.conns, "pings": o.pings,
		"grpc-n": o.grpcN, "grpc-rate-n": o.grpcRateN, "http-n": o.httpN, "ws-clients": o.wsClients,
		"ws-msgs": o.wsMsgs, "idle-conns": o.idleConns, "rollout-ws": o.rolloutWS, "rollout-drain": int(o.rolloutDrain.Milliseconds()),
		"rollout-scale-ws": o.rolloutScaleWS, "rollout-scale-interval": int(o.rolloutScaleInterval.Milliseconds())} {
		if v <= 0 {
			return o, fmt.Errorf("-%s must be positive, got %d", name, v)
		}
	}
	var err error
	if o.workloads, err = pick(*wl, names); err != nil {
		return o, fmt.Errorf("-workloads: %w", err)
	}
	if o.targets, err = pick(*tg, knownTargets); err != nil {
		return o, fmt.Errorf("-targets: %w", err)
	}
	if o.targets, err = baseTargets(o.targets, o.base, set["targets"], strings.TrimSpace(*tg) == "all"); err != nil {
		return o, fmt.Errorf("-targets: %w", err)
	}
	return o, nil
}

// baseTargets reconciles the targets with -base: longhaul-base is added to
// the default targets (and kept by "all") when base is set, dropped from
// "all" when it is not, and refused when listed without base; base with
// explicit targets that lack longhaul-base is refused too.
func baseTargets(targets []string, base string, explicit, all bool) ([]string, error) {
	has := slices.Contains(targets, longhaulBase)
	switch {
	case base == "" && has && explicit && !all:
		return nil, fmt.Errorf("%s needs -base REV, the git revision to build it from", longhaulBase)
	case base == "" && has:
		return slices.DeleteFunc(slices.Clone(targets), func(t string) bool { return t == longhaulBase }), nil
	case base != "" && !has && explicit:
		return nil, fmt.Errorf("-base %s given but %s is not among the targets", base, longhaulBase)
	case base != "" && !has:
		return pick(strings.Join(append(slices.Clone(targets), longhaulBase), ","), knownTargets)
	}
	return targets, nil
}

// pick parses a comma-separated selection of known names, kept in the
// order of known; "all" selects every one.
func pick(s string, known []string) ([]string, error) {
	if strings.TrimSpace(s) == "all" {
		return known, nil
	}
	want := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !slices.Contains(known, f) {
			return nil, fmt.Errorf("unknown %q (known: %s)", f, strings.Join(known, ", "))
		}
		want[f] = true
	}
	var out []string
	for _, k := range known {
		if want[k] {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("nothing selected")
	}
	return out, nil
}

func realMain(args []string, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	noFile, err := raiseNoFile()
	if err != nil {
		log.Printf("warning: %v", err)
	}
	var idleNote string
	if m := maxIdleConns(noFile); o.idleConns > m && (slices.Contains(o.workloads, "idle") || slices.Contains(o.workloads, "idle-tcp")) {
		idleNote = fmt.Sprintf("-idle-conns lowered from %d to %d: the open-files limit stays at %d here (setrlimit cannot pass the hard limit without CAP_SYS_RESOURCE); the proxy and the harness each hold two sockets per connection.", o.idleConns, m, noFile)
		log.Printf("warning: %s", idleNote)
		o.idleConns = m
	}
	var scaleNote string
	if m := maxScaleWS(noFile); o.rolloutScaleWS > m && slices.Contains(o.workloads, "rollout-scale") {
		scaleNote = fmt.Sprintf("-rollout-scale-ws lowered from %d to %d: the open-files limit stays at %d here; the harness holds one socket per WebSocket (the pods' side) and each of the %d longhaul replicas two per WebSocket of its share, with room for a drained pod's sockets while their clients reconnect.", o.rolloutScaleWS, m, noFile, scaleReplicas)
		log.Printf("warning: %s", scaleNote)
		o.rolloutScaleWS = m
	}
	repo, err := proc.ModuleRoot(ctx)
	if err != nil {
		return err
	}
	var base baseRev
	if o.base != "" {
		if base, err = resolveBase(ctx, repo, o.base); err != nil {
			return err
		}
	}
	work, cleanup, err := proc.WorkDir("longhaul-bench-", o.keep)
	if err != nil {
		return err
	}
	defer cleanup()
	var wls []workload
	for _, w := range allWorkloads() {
		if slices.Contains(o.workloads, w.name) {
			wls = append(wls, w)
		}
	}
	for _, w := range wls {
		if w.only != nil && !slices.ContainsFunc(o.targets, w.runsOn) {
			log.Printf("warning: %s runs only on %s, not among the targets: skipped", w.name, strings.Join(w.only, ", "))
		}
	}
	n := needs{haproxy: slices.Contains(o.targets, haproxy), nginx: slices.Contains(o.targets, nginx),
		ghz:    slices.Contains(o.workloads, "grpc-sat") || slices.Contains(o.workloads, "grpc-rps"),
		strace: o.strace && slices.Contains(o.workloads, "tcp-bulk") && slices.Contains(o.targets, longhaul)}
	tools, err := prepareTools(ctx, n, o.install, o.toolsDir, repo, work, log.Printf)
	if err != nil {
		return err
	}
	// Now, while the tree is as longhaul was built from it.
	info := collectInfo(ctx, args, o, tools, repo)
	info.notes = append(info.notes, idleNote, scaleNote)
	if base.commit != "" {
		log.Printf("building longhaul-base from %s (%s)", base.rev, base.commit)
		if tools.longhaulBase, err = buildBase(ctx, repo, base, work); err != nil {
			return err
		}
		info.base = base
	}
	be, err := startBackends()
	if err != nil {
		return err
	}
	defer be.close()
	// HAProxy wants two descriptors per maxconn, two per splice pipe (64
	// when asked for) and a few more; it refuses to start without them.
	maxConns := min(o.idleConns+512, int(min(noFile, 1<<20)-512)/2)
	targets, err := newTargets(o.targets, work, be.addrs, tools, maxConns, noFile, o.haproxySplice, o.longhaulDebug)
	if err != nil {
		return err
	}
	defer func() {
		for _, t := range targets {
			t.Stop()
		}
	}()
	for _, t := range targets {
		if t.name == longhaulBase {
			if err := checkBaseConfig(ctx, tools.longhaulBase, t.config, base); err != nil {
				return err
			}
		}
		if err := t.start(ctx); err != nil {
			return err
		}
	}
	e := &env{opts: o, tools: tools, be: be, workDir: work}
	res := newResults(o.reps)
	started := time.Now()
	for _, w := range wls {
		measureWorkload(ctx, e, w, targets, res)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Right after tcp-bulk, while longhaul carries no other traffic
		// (later workloads leave connections closing for a while).
		if w.name == "tcp-bulk" && n.strace {
			for _, t := range targets {
				if t.name == longhaul {
					log.Printf("tcp-bulk under strace on %s", t.name)
					info.straceOut, info.straceNote = straceReport(ctx, tools.strace, t, o)
				}
			}
		}
	}
	log.Printf("measured in %v", time.Since(started).Round(time.Second))
	return writeOut(o, repo, func(w io.Writer) {
		writeReport(w, info, res, wls, o.targets, o)
	})
}

// measureWorkload runs w on every target, o.reps times, rotating the order.
func measureWorkload(ctx context.Context, e *env, w workload, targets []*target, res *results) {
	for rep := range e.opts.reps {
		for i := range targets {
			t := targets[(i+rep)%len(targets)]
			if w.proxiesOnly && !t.isProxy() || !w.runsOn(t.name) {
				continue
			}
			if ctx.Err() != nil {
				return
			}
			if w.fresh {
				if err := t.restart(ctx); err != nil {
					res.fail(w.name, t.name, rep, err)
					continue
				}
			}
			mctx, cancel := context.WithTimeout(ctx, e.opts.limit)
			start := time.Now()
			m, err := w.run(mctx, e, t)
			cancel()
			if err == nil {
				err = t.Alive()
			}
			if err != nil {
				log.Printf("%s rep %d %s: FAILED: %v", w.name, rep+1, t.name, err)
				res.fail(w.name, t.name, rep, err)
				if aerr := t.Alive(); aerr != nil {
					if rerr := t.restart(ctx); rerr != nil {
						log.Printf("%s: restart failed: %v", t.name, rerr)
					}
				}
				continue
			}
			log.Printf("%s rep %d %s: %s (%v)", w.name, rep+1, t.name, formatMetrics(m), time.Since(start).Round(time.Millisecond))
			res.add(w.name, t.name, rep, m)
		}
	}
}

func formatMetrics(m metrics) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %.3g", k, m[k])
	}
	return b.String()
}

func writeOut(o options, repo string, write func(io.Writer)) error {
	if o.out == "-" {
		write(os.Stdout)
		return nil
	}
	path := o.out
	if !filepath.IsAbs(path) {
		path = filepath.Join(repo, path)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	write(f)
	if err := f.Close(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	log.Printf("wrote %s", path)
	return nil
}

// straceReport runs two bulk transfers through t under strace: one for the
// -c summary, one tracing only read and write to show what they carry.
func straceReport(ctx context.Context, bin string, t *target, o options) (summary, note string) {
	sctx, cancel := context.WithTimeout(ctx, o.limit)
	defer cancel()
	summary, err := straceBulk(sctx, bin, t, o.bulkBytes, "-c")
	if err != nil {
		return "", "strace failed: " + oneLine(err.Error())
	}
	rw, err := straceBulk(sctx, bin, t, o.bulkBytes, "-e", "trace=read,write", "-e", "signal=none")
	if err != nil {
		return summary, "The second pass (read and write only) failed: " + oneLine(err.Error())
	}
	sum := summarizeRW(rw)
	note = fmt.Sprintf("A second %s run under `strace -f -e trace=read,write` saw %s.", bytesLabel(o.bulkBytes), sum)
	if int64(sum.totalBytes) < o.bulkBytes/1000 {
		note += " The data went by `splice`, not by read/write."
	}
	if sum.calls > 0 && sum.maxBytes <= 8 && len(sum.fds) == 1 {
		note += " Calls of 8 bytes on a single descriptor are the Go netpoller's eventfd wake-ups."
	}
	return summary, note
}
