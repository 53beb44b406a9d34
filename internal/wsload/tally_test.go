package wsload

import (
	"strings"
	"testing"
	"time"
)

func TestTally(t *testing.T) {
	var tl Tally
	if tl.Errors() != "" || tl.Reconnects() != 0 || tl.ReconnectPeak(time.Second) != 0 {
		t.Fatalf("zero Tally not empty: %q", tl.Errors())
	}
	for i := range 8 {
		tl.Sample("b kind", "error %d\nsecond line", i)
	}
	tl.Sample("a kind", "first")
	got := tl.Errors()
	if !strings.HasPrefix(got, "\n  a kind: first\n  b kind: error 0 second line") {
		t.Errorf("errors not sorted by kind or not folded onto one line: %q", got)
	}
	if n := strings.Count(got, "b kind"); n != errsPerKind {
		t.Errorf("kept %d errors of one kind, want %d", n, errsPerKind)
	}
	base := time.Unix(1000, 0)
	for _, d := range []time.Duration{0, 100 * time.Millisecond, 999 * time.Millisecond, time.Second, 3 * time.Second} {
		tl.Reconnected(base.Add(d))
	}
	if tl.Reconnects() != 5 {
		t.Errorf("reconnects = %d, want 5", tl.Reconnects())
	}
	if p := tl.ReconnectPeak(time.Second); p != 3 {
		t.Errorf("peak per second = %d, want 3", p)
	}
	if p := tl.ReconnectPeak(100 * time.Millisecond); p != 1 {
		t.Errorf("peak per 100ms = %d, want 1", p)
	}
	b := tl.ReconnectBuckets(time.Second)
	if len(b) != 3 || b[1000] != 3 || b[1001] != 1 || b[1003] != 1 {
		t.Errorf("buckets per second = %v, want 1000:3 1001:1 1003:1", b)
	}
}
