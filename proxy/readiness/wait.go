package readiness

import "time"

// Backoff of a socket's wait before it parks (see ParkWait).
const (
	parkBackoff = 10
	maxParkWait = 100
)

// ParkWait is how long a socket's reader waits for data on its goroutine
// before it parks the socket: base (the configured wait) at first. A socket
// woken within 10 times its wait after it parked doubles the wait, up to
// 100 times base, and one that stayed parked longer goes back to base. A
// park and a wake-up cost about as much CPU as relaying a small message, so
// a steady stream soon stops parking between messages, while an idle
// connection parks after base.
//
// The zero value is ready; it is owned by the socket's reader, one
// goroutine at a time.
type ParkWait struct {
	wait     time.Duration
	parkedAt int64 // unix nanoseconds
}

// Wait returns how long to wait before parking.
func (w *ParkWait) Wait(base time.Duration) time.Duration {
	if w.wait == 0 {
		w.wait = base
	}
	return w.wait
}

// Parked records that the socket was parked now.
func (w *ParkWait) Parked() { w.parkedAt = time.Now().UnixNano() }

// Woke adapts the wait to how long the socket stayed parked.
func (w *ParkWait) Woke(base time.Duration) {
	if time.Since(time.Unix(0, w.parkedAt)) < parkBackoff*w.wait {
		w.wait = min(2*w.wait, maxParkWait*base)
	} else {
		w.wait = base
	}
}
