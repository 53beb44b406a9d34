package proxytest

import (
	"bytes"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/proxy/readiness"
)

// Goroutine frames that AwaitParked counts: the goroutines of a relay's
// directions.
const (
	// WSPump is a WebSocket relay direction (wsframe).
	WSPump = "wsframe.(*pump).run("
	// TCPHalf is a raw TCP session's direction (tcpproxy).
	TCPHalf = "tcpproxy.(*tcpSession).runHalf("
)

// NewPoller returns a readiness Poller that is closed when the test ends.
// Call it before starting what parks on it: cleanups run last registered
// first, so the proxies' and relays' own cleanups run before its Close.
func NewPoller(t testing.TB) *readiness.Poller {
	t.Helper()
	p, err := readiness.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("closing the poller: %v", err)
		}
	})
	return p
}

// Goroutines counts the goroutines with frame (WSPump, TCPHalf) on their
// stack.
func Goroutines(t testing.TB, frame string) int {
	t.Helper()
	var b bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&b, 2); err != nil {
		t.Fatal(err)
	}
	return strings.Count(b.String(), frame)
}

// AwaitParked waits, up to 10s, until p holds n parked sockets and no
// goroutine runs frame: every direction is parked, none on a goroutine.
func AwaitParked(t testing.TB, p *readiness.Poller, n int, frame string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.Parked() != n || Goroutines(t, frame) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("parked %d, goroutines running %s %d; want %d parked, none running", p.Parked(), frame, Goroutines(t, frame), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
