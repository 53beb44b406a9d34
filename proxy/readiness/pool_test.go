package readiness

import (
	"testing"
)

// TestPoolSpreadsAndWakes: sockets parked through a Pool land on every
// Poller (by descriptor number), and each wakes on its data; Close wakes
// what is still parked.
func TestPoolSpreadsAndWakes(t *testing.T) {
	pool, err := NewPool(3)
	if err != nil {
		t.Fatal(err)
	}
	const n = 12
	woke := make(chan int, 2*n)
	var peers [n]interface{ Write([]byte) (int, error) }
	for i := range n {
		a, b := pair(t)
		peers[i] = b
		rc := rawConn(t, a)
		if _, err := pool.Park(rc, func() { woke <- i }); err != nil {
			t.Fatal(err)
		}
	}
	if got := pool.Parked(); got != n {
		t.Fatalf("Parked() = %d, want %d", got, n)
	}
	for i, q := range pool.ps {
		if q.Parked() == 0 {
			t.Errorf("poller %d holds no socket of %d", i, n)
		}
	}
	// Half get data and wake; the others stay parked until Close.
	for i := range n / 2 {
		peers[i].Write([]byte{1})
	}
	seen := map[int]bool{}
	for len(seen) < n/2 {
		ch := make(chan struct{}, 1)
		go func() { seen[<-woke] = true; ch <- struct{}{} }()
		awaitWake(t, ch, "of a socket given data")
	}
	for i := range n / 2 {
		if !seen[i] {
			t.Errorf("socket %d got data and did not wake", i)
		}
	}
	if got := pool.Parked(); got != n/2 {
		t.Errorf("Parked() after the wake-ups = %d, want %d", got, n/2)
	}
	if err := pool.Close(); err != nil {
		t.Fatal(err)
	}
	if got := pool.Parked(); got != 0 {
		t.Errorf("Parked() after Close = %d, want 0", got)
	}
	for range n / 2 {
		ch := make(chan struct{}, 1)
		go func() { <-woke; ch <- struct{}{} }()
		awaitWake(t, ch, "at Close")
	}
}
