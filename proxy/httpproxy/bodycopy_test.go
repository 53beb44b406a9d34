package httpproxy

import (
	"bytes"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"
)

// TestStreamBodyFlushesBeforeBlocking: a part is flushed before the copy
// waits for the next one, and parts that are ready together go in one flush.
func TestStreamBodyFlushesBeforeBlocking(t *testing.T) {
	pr, pw := io.Pipe()
	var out bytes.Buffer
	var flushes atomic.Int32
	flushed := make(chan struct{}, 4)
	go func() {
		pw.Write([]byte("first"))
		select { // the copy must flush "first" before it blocks for more
		case <-flushed:
		case <-time.After(5 * time.Second):
			pw.CloseWithError(errors.New("no flush while waiting"))
			return
		}
		pw.Write([]byte("second"))
		pw.Close()
	}()
	rerr, werr := streamBody(&out, func() { flushes.Add(1); flushed <- struct{}{} }, pr)
	if rerr != nil || werr != nil {
		t.Fatalf("streamBody: read %v, write %v", rerr, werr)
	}
	if out.String() != "firstsecond" {
		t.Errorf("copied %q", out.String())
	}
	if n := flushes.Load(); n < 1 {
		t.Errorf("%d flushes, want at least 1", n)
	}

	// Everything at once, then EOF: no flush at all (the caller's final
	// write carries it).
	flushes.Store(0)
	out.Reset()
	body := io.NopCloser(bytes.NewReader([]byte("all at once")))
	if _, werr := streamBody(&out, func() { flushes.Add(1) }, body); werr != nil || out.String() != "all at once" {
		t.Fatalf("got %q, %v", out.String(), werr)
	}
	if n := flushes.Load(); n > 1 {
		t.Errorf("%d flushes for a body that was ready at once, want at most 1", n)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("client gone") }

// TestStreamBodyWriteErrorEndsReader: when the client side fails, the copy
// returns at once even though the body has more to come, and its reader
// goroutine is gone (goleak checks at the end of the package).
func TestStreamBodyWriteErrorEndsReader(t *testing.T) {
	pr, pw := io.Pipe()
	go pw.Write([]byte("x")) // then never closes: a stuck upstream
	done := make(chan error, 1)
	go func() {
		_, werr := streamBody(failWriter{}, func() {}, pr)
		done <- werr
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("write error not reported")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("streamBody hung on a failed client with a stuck upstream")
	}
	pw.Close()
}
