package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/longhaul-proxy/longhaul/benchmarks/internal/proc"
)

// raiseNoFile lifts RLIMIT_NOFILE for this process and the proxies it
// starts (they inherit it): the idle workload holds tens of thousands of
// sockets on each side. Without CAP_SYS_RESOURCE it can go no further than
// the hard limit. It returns the soft limit in force.
func raiseNoFile() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	const want = 1 << 20
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: max(want, lim.Max)}); err == nil {
		return want, nil
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: lim.Max, Max: lim.Max}); err != nil {
		return lim.Cur, fmt.Errorf("setrlimit NOFILE to %d: %w", lim.Max, err)
	}
	return lim.Max, nil
}

// maxIdleConns is how many idle connections fit in a limit of noFile open
// files: the proxy and this process (clients and backends) each hold two
// sockets per connection, plus some spare.
func maxIdleConns(noFile uint64) int {
	const spare = 1024
	if noFile < 2*spare {
		return 0
	}
	return int(noFile-spare) / 2
}

func collectInfo(ctx context.Context, args []string, o options, tools toolSet, repo string) reportInfo {
	info := reportInfo{
		command:   strings.TrimSpace("go run ./benchmarks/cmd/compare " + quoteArgs(args)),
		date:      time.Now().UTC().Format("2006-01-02 15:04 MST"),
		cpus:      strconv.Itoa(runtime.NumCPU()),
		model:     cpuModel("/proc/cpuinfo"),
		kernel:    readTrim("/proc/sys/kernel/osrelease"),
		goVersion: runtime.Version(),
		reps:      o.reps,
		quick:     o.quick,
	}
	if v := proc.LonghaulVersion(ctx, repo); v != "" {
		info.versions = append(info.versions, v)
	}
	if tools.haproxy != "" {
		info.versions = append(info.versions, firstLine(ctx, tools.haproxy, "-v"))
	}
	if tools.nginx != "" {
		info.versions = append(info.versions, firstLine(ctx, tools.nginx, "-v"))
	}
	if tools.ghz != "" {
		info.versions = append(info.versions, "ghz: "+strings.TrimPrefix(ghzPackage, "github.com/bojand/ghz/cmd/"))
	}
	return info
}

// cpuModel returns the first "model name" of a cpuinfo file.
func cpuModel(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	return parseCPUModel(f)
}

func parseCPUModel(r io.Reader) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func firstLine(ctx context.Context, name string, args ...string) string {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return filepath.Base(name) + ": version unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"$\\") {
			a = strconv.Quote(a)
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
