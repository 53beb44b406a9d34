package proc

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ModuleRoot is the directory of the main module's go.mod, which must be
// longhaul's.
func ModuleRoot(ctx context.Context) (string, error) {
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

// BuildLonghaul builds repo's ./cmd/longhaul into dir/bin/longhaul and
// returns its path.
func BuildLonghaul(ctx context.Context, repo, dir string) (string, error) {
	bin := filepath.Join(dir, "bin", "longhaul")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", fmt.Errorf("build longhaul: %w", err)
	}
	if err := Run(ctx, repo, nil, "go", "build", "-o", bin, "./cmd/longhaul"); err != nil {
		return "", fmt.Errorf("build longhaul: %w", err)
	}
	return bin, nil
}

// Run runs a command in dir with env added, its output folded into the
// error on failure.
func Run(ctx context.Context, dir string, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		s := strings.TrimSpace(out.String())
		if len(s) > 2000 {
			s = "..." + s[len(s)-2000:]
		}
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, s)
	}
	return nil
}

// LonghaulVersion names the commit of repo longhaul was built from, and
// the top-level directories that had uncommitted changes then; empty
// without git.
func LonghaulVersion(ctx context.Context, repo string) string {
	head, err := exec.CommandContext(ctx, "git", "-C", repo, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	v := "longhaul: commit " + strings.TrimSpace(string(head))
	st, err := exec.CommandContext(ctx, "git", "-C", repo, "status", "--porcelain", "--untracked-files=no").Output()
	if err != nil {
		return v
	}
	if dirs := ChangedDirs(string(st)); len(dirs) > 0 {
		v += " plus uncommitted changes in " + strings.Join(dirs, ", ")
	}
	return v
}

// ChangedDirs lists the top-level directories in `git status --porcelain`
// output, benchmarks/ left out.
func ChangedDirs(porcelain string) []string {
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

// Loopback is 127.0.0.1:port.
func Loopback(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// FreePorts asks the kernel for n unused loopback ports. They are released
// before use, so another program could take one meanwhile; the program's
// start then fails loudly.
func FreePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// WorkDir makes a temporary directory named after prefix and returns it
// with the function that removes it; with keep it is left for inspection
// (its path logged) and the function does nothing.
func WorkDir(prefix string, keep bool) (string, func(), error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", nil, fmt.Errorf("work dir: %w", err)
	}
	if keep {
		log.Printf("work directory: %s", dir)
		return dir, func() {}, nil
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}
