package monitoring

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// promtool returns the path of promtool, which hack/tools.sh builds into
// the directory LONGHAUL_TOOLS_BIN names. These tests are part of the
// README's test command; when the tool is missing they fail with the way to
// get it, rather than pass.
func promtool(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("LONGHAUL_TOOLS_BIN")
	if dir == "" {
		if os.Getenv("LONGHAUL_SKIP_TOOLS") == "1" {
			t.Skip("LONGHAUL_SKIP_TOOLS=1")
		}
		t.Fatal("LONGHAUL_TOOLS_BIN is not set: run `make test`, or set it to the output of hack/tools.sh (or LONGHAUL_SKIP_TOOLS=1 to skip)")
	}
	bin := filepath.Join(dir, "promtool")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("promtool: %v: run hack/tools.sh", err)
	}
	return bin
}

// runPromtool runs promtool with args in this directory and fails the
// test, with promtool's output, when it fails.
func runPromtool(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, promtool(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %q: %v\n%s", args, err, out)
	}
	t.Logf("promtool %q:\n%s", args, out)
}

// TestPromtoolCheckRules: promtool accepts the rules file and finds
// nothing to lint in it.
func TestPromtoolCheckRules(t *testing.T) {
	runPromtool(t, "check", "rules", "--lint=all", "--lint-fatal", rulesFile)
}

// TestPromtoolTestRules: promtool's unit tests of the alerts pass (each
// alert firing and not firing, TestRulesShape checks the coverage).
func TestPromtoolTestRules(t *testing.T) {
	runPromtool(t, "test", "rules", rulesTestFile)
}
