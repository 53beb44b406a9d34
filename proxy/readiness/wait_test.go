package readiness

import (
	"testing"
	"time"
)

// TestParkWait: woken soon after each park, the wait doubles up to the
// cap; after a long park it is base again.
func TestParkWait(t *testing.T) {
	const base = 10 * time.Millisecond
	var w ParkWait
	if got := w.Wait(base); got != base {
		t.Fatalf("first wait %v, want %v", got, base)
	}
	for i, want := range []time.Duration{20, 40, 80, 160, 320, 640, 1000, 1000} {
		w.Parked() // and woken at once
		w.Woke(base)
		if got := w.Wait(base); got != want*time.Millisecond {
			t.Fatalf("wake-up %d: wait %v, want %v", i, got, want*time.Millisecond)
		}
	}
	w.parkedAt = time.Now().Add(-parkBackoff * w.wait).UnixNano() // parked long
	w.Woke(base)
	if got := w.Wait(base); got != base {
		t.Fatalf("after a long park: wait %v, want %v", got, base)
	}
}
