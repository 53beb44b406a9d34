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

// moduleRoot is the directory of the main module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run from inside the longhaul module")
	}
	root := filepath.Dir(mod)
	if _, err := os.Stat(filepath.Join(root, "cmd", "longhaul")); err != nil {
		return "", fmt.Errorf("%s has no cmd/longhaul: run from the longhaul repository: %w", root, err)
	}
	return root, nil
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
	if v := longhaulVersion(ctx, repo); v != "" {
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

// longhaulVersion names the commit longhaul was built from, and the
// packages that had uncommitted changes then; empty without git.
func longhaulVersion(ctx context.Context, repo string) string {
	head, err := exec.CommandContext(ctx, "git", "-C", repo, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	v := "longhaul: commit " + strings.TrimSpace(string(head))
	st, err := exec.CommandContext(ctx, "git", "-C", repo, "status", "--porcelain", "--untracked-files=no").Output()
	if err != nil {
		return v
	}
	if dirs := changedDirs(string(st)); len(dirs) > 0 {
		v += " plus uncommitted changes in " + strings.Join(dirs, ", ")
	}
	return v
}

// changedDirs lists the top-level directories in `git status --porcelain`
// output, benchmarks/ left out.
func changedDirs(porcelain string) []string {
	seen := map[string]bool{}
	var dirs []string
	for _, line := range strings.Split(porcelain, "\n") {
		if len(line) < 4 {
			continue
		}
		path := strings.TrimSpace(line[3:])
		if _, after, ok := strings.Cut(path, " -> "); ok {
			path = after
		}
		top, _, isDir := strings.Cut(path, "/")
		if isDir {
			top += "/"
		}
		if top == "benchmarks/" || seen[top] {
			continue
		}
		seen[top] = true
		dirs = append(dirs, top)
	}
	return dirs
}
