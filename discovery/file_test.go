package discovery

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestParseEndpointsFileEmpty(t *testing.T) {
	for name, in := range map[string]string{
		"0 bytes":           "",
		"blank":             " \n\t\n",
		"comments only":     "# endpoints go here\n# none yet\n",
		"empty list":        "[]",
		"empty list in doc": "endpoints: []\n",
		"null list":         "endpoints:\n",
		"empty doc":         "{}",
		"allowEmpty false":  "endpoints: []\nallowEmpty: false\n",
	} {
		s, err := ParseEndpointsFile("f", []byte(in))
		if !errors.Is(err, ErrEmptyEndpoints) {
			t.Errorf("%s (%q): got %v, %v; want ErrEmptyEndpoints", name, in, s, err)
		}
	}
	for _, in := range []string{"endpoints: []\nallowEmpty: true\n", "allowEmpty: true\n", `{"endpoints": [], "allowEmpty": true}`} {
		s, err := ParseEndpointsFile("f", []byte(in))
		if err != nil || len(s.Endpoints) != 0 {
			t.Errorf("%q: got %v, %v; want an empty snapshot", in, s, err)
		}
	}
}

func TestParseEndpointsFileKillTime(t *testing.T) {
	s, err := ParseEndpointsFile("f", []byte(`
endpoints:
  - {address: 127.0.0.1:1}
  - {address: 127.0.0.1:2, ready: false, serving: true, terminating: true, killTime: "2030-06-01T12:00:00.25+02:00"}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2030, 6, 1, 10, 0, 0, 250e6, time.UTC)
	if got := s.Endpoints[1].KillTime; !got.Equal(want) || got.Location() != time.UTC {
		t.Errorf("kill time %v, want %v in UTC", got, want)
	}
	if !s.Endpoints[0].KillTime.IsZero() {
		t.Errorf("kill time %v on an entry without one", s.Endpoints[0].KillTime)
	}
}

// fileRun runs a File source on path and collects what it publishes.
type fileRun struct {
	got     chan *Snapshot
	errs    chan error
	rereads atomic.Int64
	reread  chan struct{} // one per reread, when the test listens
	logs    *observer.ObservedLogs
}

func runFile(t *testing.T, path string, poll time.Duration) *fileRun {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	r := &fileRun{got: make(chan *Snapshot, 100), errs: make(chan error, 100), reread: make(chan struct{}, 1000), logs: logs}
	src := &File{Service: "f", Path: path, Poll: poll, Logger: zap.New(core),
		OnError: func(err error) { r.errs <- err },
		onReread: func() {
			r.rereads.Add(1)
			select {
			case r.reread <- struct{}{}:
			default:
			}
		}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, func(s *Snapshot) { r.got <- s }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	if s := r.next(t); s == nil {
		t.Fatal("no first snapshot")
	}
	return r
}

func (r *fileRun) next(t *testing.T) *Snapshot {
	t.Helper()
	return recv(t, r.got, "no snapshot published")
}

func (r *fileRun) nextErr(t *testing.T) error {
	t.Helper()
	return recv(t, r.errs, "no rejection reported")
}

// recv returns the next value from ch, failing the test with what after 5s.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatal(what + " within 5s")
		var zero T
		return zero
	}
}

// quiet checks that nothing is published or reported while n more rereads
// happen (the poll makes them).
func (r *fileRun) quiet(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-r.reread:
		case <-time.After(5 * time.Second):
			t.Fatal("no reread within 5s")
		}
	}
	select {
	case s := <-r.got:
		t.Fatalf("published %+v, want the last good endpoints kept", s.Endpoints)
	case err := <-r.errs:
		t.Fatalf("reported %v again", err)
	default:
	}
}

// replaceFile writes content to path by rename, as editors do.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// TestFileIgnoresNeighbours: a log file written beside the endpoints file,
// 40 writes 60ms apart (each past the settle delay, so each would be its
// own read), makes no read of the endpoints file; an edit of the file
// itself still does.
func TestFileIgnoresNeighbours(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "eps.yaml")
	replaceFile(t, path, "- {address: 127.0.0.1:1}\n")
	r := runFile(t, path, time.Hour)
	logf, err := os.Create(filepath.Join(dir, "proxy.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	const writes = 40
	for i := range writes {
		fmt.Fprintf(logf, "line %d\n", i)
		time.Sleep(60 * time.Millisecond) // pacing the load, past the settle delay
	}
	time.Sleep(2 * settleDelay) // let a read triggered by the last write happen, if any
	if n := r.rereads.Load(); n > 1 {
		t.Fatalf("the endpoints file was read %d times for %d writes to a neighbour, want at most 1", n, writes)
	} else {
		t.Logf("%d writes to a neighbour file: %d reads of the endpoints file", writes, n)
	}
	replaceFile(t, path, "- {address: 127.0.0.1:2}\n")
	if s := r.next(t); s.Endpoints[0].Address != "127.0.0.1:2" {
		t.Fatalf("after an edit: %+v", s.Endpoints)
	}
}

// TestFileRefusesEmpty: a file truncated to 0 bytes, or left with comments
// only, keeps the last good endpoints; an explicit empty list is applied.
func TestFileRefusesEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "eps.yaml")
	replaceFile(t, path, "- {address: 127.0.0.1:1}\n")
	r := runFile(t, path, 20*time.Millisecond)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	if err := r.nextErr(t); !errors.Is(err, ErrEmptyEndpoints) {
		t.Fatalf("truncated file: got %v, want ErrEmptyEndpoints", err)
	}
	r.quiet(t, 3)
	replaceFile(t, path, "# all gone\n")
	if err := r.nextErr(t); !errors.Is(err, ErrEmptyEndpoints) {
		t.Fatalf("comments only: got %v, want ErrEmptyEndpoints", err)
	}
	r.quiet(t, 3)
	replaceFile(t, path, "endpoints: []\nallowEmpty: true\n")
	if s := r.next(t); len(s.Endpoints) != 0 {
		t.Fatalf("explicit empty list: %+v", s.Endpoints)
	}
}

// TestFileRejectionLoggedOnce: a bad content is logged once, however many
// polls and events read it again, and again once the content changes to
// another bad one.
func TestFileRejectionLoggedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "eps.yaml")
	replaceFile(t, path, "- {address: 127.0.0.1:1}\n")
	r := runFile(t, path, 10*time.Millisecond)
	rejected := func() int {
		return r.logs.FilterMessage("endpoints file rejected; keeping the last good endpoints").Len()
	}
	replaceFile(t, path, "- {address: 127.0.0.1:1, bogus: 1}\n")
	r.nextErr(t)
	// The same bad content, rewritten (an event on the file) and polled.
	replaceFile(t, path, "- {address: 127.0.0.1:1, bogus: 1}\n")
	r.quiet(t, 20)
	if n := rejected(); n != 1 {
		t.Fatalf("rejection logged %d times over 20 rereads, want once", n)
	}
	replaceFile(t, path, "- {address: nowhere}\n")
	r.nextErr(t)
	r.quiet(t, 5)
	if n := rejected(); n != 2 {
		t.Fatalf("rejection logged %d times after a second bad content, want twice", n)
	}
	// A missing file is reported once too.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	r.nextErr(t)
	r.quiet(t, 5)
	replaceFile(t, path, "- {address: 127.0.0.1:9}\n")
	if s := r.next(t); s.Endpoints[0].Address != "127.0.0.1:9" {
		t.Fatalf("after recovery: %+v", s.Endpoints)
	}
}

// TestFileConfigMapSwap swaps a ConfigMap volume's data as the kubelet
// does (a new timestamped directory, a ..data symlink renamed over the old
// one, the old directory removed); the file is a symlink through ..data.
// The poll is an hour: the ..data event alone must bring the change.
func TestFileConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	version := func(name, content string) {
		t.Helper()
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "eps.yaml"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(name, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..2025_01_01_00_00_00.1", "- {address: 127.0.0.1:1}\n")
	path := filepath.Join(dir, "eps.yaml")
	if err := os.Symlink(filepath.Join("..data", "eps.yaml"), path); err != nil {
		t.Fatal(err)
	}
	r := runFile(t, path, time.Hour)
	for i, v := range []string{"..2025_01_01_00_01_00.2", "..2025_01_01_00_02_00.3"} {
		old := []string{"..2025_01_01_00_00_00.1", "..2025_01_01_00_01_00.2"}[i]
		version(v, fmt.Sprintf("- {address: 127.0.0.1:%d}\n", i+2))
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			t.Fatal(err)
		}
		if s := r.next(t); s.Endpoints[0].Address != fmt.Sprintf("127.0.0.1:%d", i+2) {
			t.Fatalf("swap %d: %+v", i+1, s.Endpoints)
		}
	}
}
