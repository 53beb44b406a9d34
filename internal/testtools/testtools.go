// Package testtools finds the tools hack/tools.sh builds for the tests
// (h2spec, grpc-go's interop client and server, helm, promtool, Node's ws)
// in the directory LONGHAUL_TOOLS_BIN names. The tests that use them are
// part of the README's test command: when the tools are missing they fail
// with the way to get them, rather than pass; LONGHAUL_SKIP_TOOLS=1 skips
// them instead.
package testtools

import (
	"os"
	"path/filepath"
	"testing"
)

// Dir returns the tools directory.
func Dir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("LONGHAUL_TOOLS_BIN")
	if dir == "" {
		if os.Getenv("LONGHAUL_SKIP_TOOLS") == "1" {
			t.Skip("LONGHAUL_SKIP_TOOLS=1")
		}
		t.Fatal("LONGHAUL_TOOLS_BIN is not set: run `make test`, or set it to the output of hack/tools.sh (or LONGHAUL_SKIP_TOOLS=1 to skip)")
	}
	return dir
}

// Bin returns the path of the executable tool name.
func Bin(t testing.TB, name string) string {
	t.Helper()
	dir := Dir(t)
	bin := filepath.Join(dir, name)
	if fi, err := os.Stat(bin); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("no %s in LONGHAUL_TOOLS_BIN (%s): run hack/tools.sh", name, dir)
	}
	return bin
}
