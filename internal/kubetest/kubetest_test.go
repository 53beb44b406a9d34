package kubetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv("KUBETEST_ORPHAN_DIR"); dir != "" {
		orphan(dir)
		return
	}
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"))
}

func TestStartRestartStop(t *testing.T) {
	start := time.Now()
	c := Start(t)
	t.Logf("started in %v", time.Since(start))
	ctx := context.Background()
	v, err := c.Client.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != Version {
		t.Errorf("server version %q, want %q", v.GitVersion, Version)
	}
	ns := c.CreateNamespace(t, "kubetest-")
	// An open watch must not hold up the restart.
	w, err := c.Client.CoreV1().ConfigMaps(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	start = time.Now()
	c.Restart(t)
	t.Logf("restarted in %v", time.Since(start))
	// Same port, same etcd: the namespace is still there.
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		t.Fatalf("after restart: %v", err)
	}

	start = time.Now()
	c.Stop()
	t.Logf("stopped in %v", time.Since(start))
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err == nil {
		t.Fatal("API server still answers after Stop")
	}
	c.Stop() // idempotent
}

// TestChildrenDieWithTheTest starts a cluster in a child test process that
// then exits without running any cleanup (as a crash would); etcd and
// kube-apiserver must die with it.
func TestChildrenDieWithTheTest(t *testing.T) {
	if os.Getenv("LONGHAUL_SKIP_KUBE") == "1" {
		t.Skip("LONGHAUL_SKIP_KUBE=1")
	}
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pids")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "KUBETEST_ORPHAN_DIR="+dir)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("child: %v, want exit status 3; output:\n%s", err, out)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("child wrote no pids: %v; output:\n%s", err, out)
	}
	for _, f := range strings.Fields(string(b)) {
		pid, _ := strconv.Atoi(f)
		deadline := time.Now().Add(10 * time.Second)
		for alive(pid) {
			if time.Now().After(deadline) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				t.Fatalf("process %d outlived the test process that started it", pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// orphan is the child of TestChildrenDieWithTheTest: it starts a cluster in
// dir, writes the pids to dir/pids and exits at once.
func orphan(dir string) {
	pidFile := filepath.Join(dir, "pids")
	tb := &fakeTB{dir: filepath.Join(dir, "cluster")}
	c := Start(tb)
	pids := fmt.Sprintf("%d %d\n", c.etcd.cmd.Process.Pid, c.apiserver.cmd.Process.Pid)
	if err := os.WriteFile(pidFile, []byte(pids), 0o600); err != nil {
		os.Exit(1)
	}
	os.Exit(3) // no cleanup
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) state ...
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// fakeTB is enough of a testing.TB for Start outside a test.
type fakeTB struct {
	testing.TB
	dir string
}

func (f *fakeTB) Helper()                   {}
func (f *fakeTB) Cleanup(func())            {}
func (f *fakeTB) Failed() bool              { return false }
func (f *fakeTB) Logf(string, ...any)       {}
func (f *fakeTB) Skip(args ...any)          { fmt.Fprintln(os.Stderr, args...); os.Exit(4) }
func (f *fakeTB) Fatal(args ...any)         { fmt.Fprintln(os.Stderr, args...); os.Exit(2) }
func (f *fakeTB) Fatalf(s string, a ...any) { fmt.Fprintf(os.Stderr, s+"\n", a...); os.Exit(2) }
func (f *fakeTB) TempDir() string {
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		f.Fatal(err)
	}
	return f.dir
}
