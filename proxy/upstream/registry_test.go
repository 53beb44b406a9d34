package upstream

import (
	"context"
	"testing"
	"time"
)

// TestWaitUpstream: WaitUpstream returns once the upstream's last session
// ends, whatever other listeners still hold, and with ctx's error while one
// is live.
func TestWaitUpstream(t *testing.T) {
	r := NewRegistry()
	removeA := r.Register(1, "192.0.2.1:80", r.NewID(), &raceSession{})
	removeB := r.Register(2, "192.0.2.1:80", r.NewID(), &raceSession{})
	defer removeB()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := r.WaitUpstream(ctx, 1); err == nil {
		t.Fatal("WaitUpstream returned with a session of the upstream live")
	}
	done := make(chan error, 1)
	go func() { done <- r.WaitUpstream(context.Background(), 1) }()
	removeA()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitUpstream still waiting 10s after the upstream's last session ended")
	}
	if n := r.Len(); n != 1 {
		t.Fatalf("%d sessions live, want b's one", n)
	}
}
