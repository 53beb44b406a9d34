package config

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

const waitFor = 10 * time.Second

// configWith returns a valid configuration whose one listener has the given
// maxConnections, so that each version is told apart by it.
func configWith(maxConns int) string {
	return fmt.Sprintf(`
listeners:
  - name: echo
    address: 127.0.0.1:7000
    endpoints: {static: ["127.0.0.1:7101"]}
    maxConnections: %d
`, maxConns)
}

// watching runs Watch on path until the test ends, and returns what it
// reports.
type watching struct {
	changes chan *Config
	errs    chan error
}

func startWatch(t *testing.T, path string, flags *pflag.FlagSet) *watching {
	t.Helper()
	w := &watching{changes: make(chan *Config, 100), errs: make(chan error, 100)}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- watch(ctx, path, flags, func(c *Config) { w.changes <- c }, func(err error) { w.errs <- err },
			func() { close(ready) })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch returned %v, want nil", err)
			}
		case <-time.After(waitFor):
			t.Error("Watch did not return after its context ended")
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Watch returned %v before it was ready", err)
	case <-time.After(waitFor):
		t.Fatal("Watch not ready")
	}
	return w
}

// change waits for the next onChange and checks its maxConnections.
func (w *watching) change(t *testing.T, wantMaxConns int) *Config {
	t.Helper()
	select {
	case c := <-w.changes:
		if got := c.Listeners[0].MaxConnections; got != wantMaxConns {
			t.Fatalf("onChange: got maxConnections %v, want %v", got, wantMaxConns)
		}
		return c
	case err := <-w.errs:
		t.Fatalf("got onError(%v), want onChange", err)
	case <-time.After(waitFor):
		t.Fatalf("no onChange within %v", waitFor)
	}
	return nil
}

// error waits for the next onError.
func (w *watching) error(t *testing.T) error {
	t.Helper()
	select {
	case c := <-w.changes:
		t.Fatalf("got onChange(%+v), want onError", c)
	case err := <-w.errs:
		return err
	case <-time.After(waitFor):
		t.Fatalf("no onError within %v", waitFor)
	}
	return nil
}

// quiet checks that nothing was reported.
func (w *watching) quiet(t *testing.T) {
	t.Helper()
	select {
	case c := <-w.changes:
		t.Fatalf("got onChange(maxConnections %d), want nothing", c.Listeners[0].MaxConnections)
	case err := <-w.errs:
		t.Fatalf("got onError(%v), want nothing", err)
	default:
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replace writes content to a temporary file and renames it over path, as
// editors and atomic writers do.
func replace(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	write(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// The tests below mostly replace the file atomically, so that a reload
// never sees it half-written on a slow machine; TestWatchChange also writes
// in place.

func TestWatchChange(t *testing.T) {
	tests := []struct {
		name   string
		update func(t *testing.T, path, content string)
	}{
		{"write in place", write},
		{"rename over", replace},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "longhaul.yaml")
			write(t, path, configWith(1))
			w := startWatch(t, path, nil)
			tt.update(t, path, configWith(2))
			w.change(t, 2)
			tt.update(t, path, configWith(3))
			w.change(t, 3)
			w.quiet(t)
		})
	}
}

func TestWatchInvalid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "longhaul.yaml")
	write(t, path, configWith(1))
	w := startWatch(t, path, nil)

	replace(t, path, configWith(0))
	err := w.error(t)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("got %v, want a *ValidationError", err)
	}
	if got, want := ve.Error(), "listeners[0].maxConnections: 0: must be at least 1"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}

	replace(t, path, "listeners: [")
	w.error(t)

	// Back to the configuration in force: nothing new.
	replace(t, path, configWith(1))
	// A new valid one: reported, and it is the first report since the errors.
	replace(t, path, configWith(4))
	w.change(t, 4)
	w.quiet(t)
}

func TestWatchRemoved(t *testing.T) {
	path := filepath.Join(t.TempDir(), "longhaul.yaml")
	write(t, path, configWith(1))
	w := startWatch(t, path, nil)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := w.error(t); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v, want an error wrapping fs.ErrNotExist", err)
	}
	replace(t, path, configWith(1))
	replace(t, path, configWith(5))
	w.change(t, 5)
}

func TestWatchUnchanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "longhaul.yaml")
	write(t, path, configWith(1))
	w := startWatch(t, path, nil)
	replace(t, path, configWith(1))                 // the same bytes
	replace(t, path, "# a comment\n"+configWith(1)) // the same configuration
	if err := os.Chmod(path, 0o600); err != nil {   // an event without a change
		t.Fatal(err)
	}
	write(t, filepath.Join(filepath.Dir(path), "other.yaml"), "x: y") // another file
	time.Sleep(3 * watchDelay)
	w.quiet(t)
	replace(t, path, configWith(6))
	w.change(t, 6)
	w.quiet(t)
}

// TestWatchCoalesces writes a burst of versions; the reloads must be fewer
// than the writes, and the last one must see the last version.
func TestWatchCoalesces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "longhaul.yaml")
	write(t, path, configWith(1))
	w := startWatch(t, path, nil)
	const n = 10
	for i := 2; i <= n+1; i++ {
		replace(t, path, configWith(i))
	}
	var got []int
	deadline := time.After(waitFor)
	for len(got) == 0 || got[len(got)-1] != n+1 {
		select {
		case c := <-w.changes:
			got = append(got, c.Listeners[0].MaxConnections)
		case err := <-w.errs:
			t.Fatalf("got onError(%v), want onChange", err)
		case <-deadline:
			t.Fatalf("got onChange with maxConnections %v, want the last %d", got, n+1)
		}
	}
	if len(got) > n/2 {
		t.Fatalf("got %d reloads %v for %d writes in a burst, want them coalesced", len(got), got, n)
	}
}

// TestWatchConfigMap swaps a ConfigMap volume's data as the kubelet does:
// a new timestamped directory, a ..data symlink renamed over the old one,
// the old directory removed. The file is a symlink through ..data.
func TestWatchConfigMap(t *testing.T) {
	dir := t.TempDir()
	version := func(name, content string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, name, "config.yaml"), content)
		if err := os.Symlink(name, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..2025_01_01_00_00_00.1", configWith(1))
	path := filepath.Join(dir, "config.yaml")
	if err := os.Symlink(filepath.Join("..data", "config.yaml"), path); err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, path, nil)

	version("..2025_01_01_00_01_00.2", configWith(2))
	if err := os.RemoveAll(filepath.Join(dir, "..2025_01_01_00_00_00.1")); err != nil {
		t.Fatal(err)
	}
	w.change(t, 2)

	version("..2025_01_01_00_02_00.3", configWith(3))
	if err := os.RemoveAll(filepath.Join(dir, "..2025_01_01_00_01_00.2")); err != nil {
		t.Fatal(err)
	}
	w.change(t, 3)
}

// TestWatchSymlinkTarget edits the target of a symlink in another
// directory, which makes no event in the link's own directory.
func TestWatchSymlinkTarget(t *testing.T) {
	target := filepath.Join(t.TempDir(), "real.yaml")
	write(t, target, configWith(1))
	path := filepath.Join(t.TempDir(), "longhaul.yaml")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, path, nil)
	replace(t, target, configWith(2))
	w.change(t, 2)
}

func TestWatchAppliesOverrides(t *testing.T) {
	t.Setenv("LONGHAUL_LOG_FORMAT", "console")
	flags := pflag.NewFlagSet("test", pflag.ContinueOnError)
	BindFlags(flags)
	if err := flags.Parse([]string{"--log-level=debug"}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "longhaul.yaml")
	write(t, path, configWith(1))
	w := startWatch(t, path, flags)
	replace(t, path, "log: {level: error, format: json}\n"+configWith(2))
	c := w.change(t, 2)
	if want := (Log{Level: "debug", Format: "console"}); c.Log != want {
		t.Fatalf("got %v, want %v", c.Log, want)
	}
}

func TestWatchSetupErrors(t *testing.T) {
	tests := []struct {
		name string
		path string
	}{
		{"no path", ""},
		{"missing directory", filepath.Join(t.TempDir(), "missing", "longhaul.yaml")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Watch(context.Background(), tt.path, nil, nil, nil)
			if err == nil {
				t.Fatalf("got no error, want one")
			}
		})
	}
}

// TestWatchReturnsOnCancel checks the public entry point ends with its
// context.
func TestWatchReturnsOnCancel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "longhaul.yaml")
	replace(t, path, configWith(1))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := Watch(ctx, path, nil, nil, nil); err != nil {
		t.Fatalf("got %v, want nil", err)
	}
	if d := time.Since(start); d > waitFor {
		t.Fatalf("returned after %v", d)
	}
}
