package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// straceBulk attaches `strace -f` with opts to the proxy, runs one bulk
// transfer through it and returns what strace wrote: with -c, its summary
// table.
func straceBulk(ctx context.Context, straceBin string, t *target, size int64, opts ...string) (string, error) {
	if t.Pid() == 0 {
		return "", fmt.Errorf("%s is not running", t.name)
	}
	// Not in t.dir: longhaul watches its configuration's directory, and
	// strace writing there would feed it events to read.
	out := filepath.Join(filepath.Dir(t.Dir), "strace-"+t.name+".txt")
	args := append(append([]string{"-f"}, opts...), "-o", out, "-p", strconv.Itoa(t.Pid()))
	cmd := exec.Command(straceBin, args...)
	var errb syncBuffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("strace: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stop := func() error {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			return fmt.Errorf("strace did not stop on SIGINT: %v", <-done)
		}
	}
	// strace reports each thread it attaches to on stderr.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(errb.String(), "attached") {
		if time.Now().After(deadline) {
			_ = stop()
			return "", fmt.Errorf("strace did not attach: %s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // let it reach every thread
	_, bulkErr := bulk(ctx, t.addrs.TCPSink, size)
	// strace's own exit status after SIGINT is not interesting; its
	// output file is.
	_ = stop()
	if bulkErr != nil {
		return "", fmt.Errorf("bulk under strace: %w", bulkErr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return "", fmt.Errorf("strace output: %w", err)
	}
	return string(b), nil
}

// In strace -f output a call is on one line, as in
// `1234  write(7, "\1\0\0\0\0\0\0\0", 8) = 8`, or split in an
// "<unfinished ...>" line and a "<... write resumed>" line with the result.
var (
	rwStart  = regexp.MustCompile(`\b(read|write)\((\d+),`)
	rwResume = regexp.MustCompile(`<\.\.\. (read|write) resumed>`)
	rwResult = regexp.MustCompile(`\)\s+=\s+(-?\d+)`)
)

// rwSummary describes the read and write calls in strace output: how many,
// on which descriptors, and their largest and total byte counts.
type rwSummary struct {
	calls, maxBytes, totalBytes int
	fds                         []int
}

func summarizeRW(out string) rwSummary {
	var s rwSummary
	seen := map[int]bool{}
	for _, line := range strings.Split(out, "\n") {
		if m := rwStart.FindStringSubmatch(line); m != nil && !rwResume.MatchString(line) {
			s.calls++
			fd, _ := strconv.Atoi(m[2])
			if !seen[fd] {
				seen[fd] = true
				s.fds = append(s.fds, fd)
			}
		} else if !rwResume.MatchString(line) {
			continue
		}
		if r := rwResult.FindStringSubmatch(line); r != nil {
			if n, _ := strconv.Atoi(r[1]); n > 0 {
				s.totalBytes += n
				s.maxBytes = max(s.maxBytes, n)
			}
		}
	}
	slices.Sort(s.fds)
	return s
}

func (s rwSummary) String() string {
	if s.calls == 0 {
		return "no read or write call at all"
	}
	fds := make([]string, len(s.fds))
	for i, fd := range s.fds {
		fds[i] = strconv.Itoa(fd)
	}
	return fmt.Sprintf("%d read/write calls in all, on descriptor(s) %s, at most %d bytes each (%d bytes in all)",
		s.calls, strings.Join(fds, ", "), s.maxBytes, s.totalBytes)
}
