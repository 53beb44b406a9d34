package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/longhaul-proxy/longhaul/benchmarks/internal/proc"
)

// ghzPackage is the pinned ghz: @latest resolves to an old release.
const ghzPackage = "github.com/bojand/ghz/cmd/ghz@v0.120.0"

// streamModules are where Debian's libnginx-mod-stream puts the module.
var streamModules = []string{
	"/usr/lib/nginx/modules/ngx_stream_module.so",
	"/usr/share/nginx/modules/ngx_stream_module.so",
}

// toolSet is every program the run uses.
type toolSet struct {
	longhaul, haproxy, nginx, ghz, strace string
	// longhaulBase is longhaul built from the -base revision; empty
	// without it.
	longhaulBase      string
	nginxStreamModule string // empty when stream is built in
}

// needs says which programs the selected workloads and targets use.
type needs struct {
	haproxy, nginx, ghz, strace bool
}

// prepareTools installs what is missing (when install is set), builds
// longhaul into work and locates everything.
func prepareTools(ctx context.Context, n needs, install bool, toolsDir, repo, work string, logf func(string, ...any)) (toolSet, error) {
	var ts toolSet
	var pkgs []string
	if n.haproxy && !onPath("haproxy") {
		pkgs = append(pkgs, "haproxy")
	}
	if n.nginx {
		if !onPath("nginx") {
			pkgs = append(pkgs, "nginx")
		}
		if findStreamModule() == "" && !nginxHasStaticStream(ctx) {
			pkgs = append(pkgs, "libnginx-mod-stream")
		}
	}
	if n.strace && !onPath("strace") {
		pkgs = append(pkgs, "strace")
	}
	if len(pkgs) > 0 {
		if !install {
			return ts, fmt.Errorf("missing Debian packages %s (run without -no-install to install them)", strings.Join(pkgs, " "))
		}
		if err := aptInstall(ctx, pkgs, logf); err != nil {
			return ts, err
		}
	}
	var err error
	if n.haproxy {
		if ts.haproxy, err = exec.LookPath("haproxy"); err != nil {
			return ts, fmt.Errorf("haproxy: %w", err)
		}
	}
	if n.nginx {
		if ts.nginx, err = exec.LookPath("nginx"); err != nil {
			return ts, fmt.Errorf("nginx: %w", err)
		}
		ts.nginxStreamModule = findStreamModule()
		if ts.nginxStreamModule == "" && !nginxHasStaticStream(ctx) {
			return ts, errors.New("nginx: no stream module found (libnginx-mod-stream)")
		}
	}
	if n.strace {
		if ts.strace, err = exec.LookPath("strace"); err != nil {
			return ts, fmt.Errorf("strace: %w", err)
		}
	}
	if n.ghz {
		if ts.ghz, err = ensureGhz(ctx, toolsDir, install, logf); err != nil {
			return ts, err
		}
	}
	logf("building longhaul from %s", repo)
	ts.longhaul, err = proc.BuildLonghaul(ctx, repo, work)
	return ts, err
}

// longhaulBin is the binary of the longhaul or longhaul-base target.
func (ts toolSet) longhaulBin(target string) string {
	if target == longhaulBase {
		return ts.longhaulBase
	}
	return ts.longhaul
}

func onPath(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}

func findStreamModule() string {
	for _, p := range streamModules {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// nginxHasStaticStream reports whether nginx was built with the stream
// module compiled in (--with-stream without =dynamic).
func nginxHasStaticStream(ctx context.Context) bool {
	out, err := exec.CommandContext(ctx, "nginx", "-V").CombinedOutput()
	if err != nil {
		return false
	}
	for _, f := range strings.Fields(string(out)) {
		if f == "--with-stream" {
			return true
		}
	}
	return false
}

func aptInstall(ctx context.Context, pkgs []string, logf func(string, ...any)) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("missing Debian packages %s and not root: install them first", strings.Join(pkgs, " "))
	}
	logf("installing %s with apt-get", strings.Join(pkgs, " "))
	envs := []string{"DEBIAN_FRONTEND=noninteractive"}
	if err := proc.Run(ctx, "", envs, "apt-get", "update", "-q"); err != nil {
		return fmt.Errorf("apt-get update: %w", err)
	}
	args := append([]string{"install", "-y", "-q", "--no-install-recommends"}, pkgs...)
	if err := proc.Run(ctx, "", envs, "apt-get", args...); err != nil {
		return fmt.Errorf("apt-get install: %w", err)
	}
	return nil
}

// ensureGhz returns ghz from toolsDir, building it there with go install
// when it is missing or was built from another version.
func ensureGhz(ctx context.Context, toolsDir string, install bool, logf func(string, ...any)) (string, error) {
	bin := filepath.Join(toolsDir, "ghz")
	stamp := filepath.Join(toolsDir, ".ghz.version")
	if b, err := os.ReadFile(stamp); err == nil && strings.TrimSpace(string(b)) == ghzPackage {
		if _, err := os.Stat(bin); err == nil {
			return bin, nil
		}
	}
	if !install {
		return "", fmt.Errorf("ghz not found in %s (run without -no-install to build it)", toolsDir)
	}
	if err := os.MkdirAll(toolsDir, 0o755); err != nil {
		return "", fmt.Errorf("tools dir: %w", err)
	}
	tmp, err := os.MkdirTemp(toolsDir, "build-")
	if err != nil {
		return "", fmt.Errorf("tools dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	logf("building %s into %s", ghzPackage, toolsDir)
	if err := proc.Run(ctx, tmp, []string{"GOBIN=" + tmp, "CGO_ENABLED=0"}, "go", "install", ghzPackage); err != nil {
		return "", fmt.Errorf("build ghz: %w", err)
	}
	if err := os.Rename(filepath.Join(tmp, "ghz"), bin); err != nil {
		return "", fmt.Errorf("install ghz: %w", err)
	}
	if err := os.WriteFile(stamp, []byte(ghzPackage+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("ghz stamp: %w", err)
	}
	return bin, nil
}

func defaultToolsDir() string {
	if d := os.Getenv("LONGHAUL_TOOLS_BIN"); d != "" {
		return d
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "longhaul-tools")
	}
	return filepath.Join(cache, "longhaul", "tools")
}
