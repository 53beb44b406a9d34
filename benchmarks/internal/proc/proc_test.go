package proc

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestChangedDirs(t *testing.T) {
	if got := strings.Join(ChangedDirs(" M proxy/a.go\nM  proxy/b.go\n M Makefile\n M benchmarks/x.go\nR  a/x -> drain/y\n"), ","); got != "proxy/,Makefile,drain/" {
		t.Errorf("ChangedDirs = %q", got)
	}
}

// TestProcLifecycle runs a program that exits at once: Start reports that
// it exited before listening, with its output, and Alive and Pid see no
// program afterwards.
func TestProcLifecycle(t *testing.T) {
	dir := t.TempDir()
	p := &Proc{Name: "sh", Argv: []string{"sh", "-c", "echo hello from sh; exit 3"}, Dir: dir}
	err := p.Start(context.Background(), []string{Loopback(1)}, 2*time.Second)
	if err == nil || !strings.Contains(err.Error(), "exited before listening") {
		t.Fatalf("Start: %v, want exited before listening", err)
	}
	if p.Pid() != 0 || p.Alive() != nil {
		t.Errorf("after a failed start: pid %d, alive %v", p.Pid(), p.Alive())
	}
	b, _ := os.ReadFile(filepath.Join(dir, "output.log"))
	if !strings.Contains(string(b), "hello from sh") || !strings.Contains(p.LogTail(), "hello from sh") {
		t.Errorf("output.log %q, tail %q", b, p.LogTail())
	}
	ports, err := FreePorts(2)
	if err != nil || len(ports) != 2 || ports[0] == ports[1] {
		t.Errorf("FreePorts: %v %v", ports, err)
	}
}
