package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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

// straceBulk attaches `strace -c -f` to the proxy, runs one bulk transfer
// through it and returns strace's summary table.
func straceBulk(ctx context.Context, straceBin string, t *target, size int64) (string, error) {
	if t.pid() == 0 {
		return "", fmt.Errorf("%s is not running", t.name)
	}
	out := filepath.Join(t.dir, "strace.txt")
	cmd := exec.Command(straceBin, "-c", "-f", "-o", out, "-p", strconv.Itoa(t.pid()))
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
	if err := stop(); err != nil && !isSignalExit(err) {
		return "", fmt.Errorf("strace: %w: %s", err, errb.String())
	}
	if bulkErr != nil {
		return "", fmt.Errorf("bulk under strace: %w", bulkErr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return "", fmt.Errorf("strace output: %w", err)
	}
	return string(b), nil
}

func isSignalExit(err error) bool {
	ee, ok := err.(*exec.ExitError)
	return ok && !ee.Success()
}
