package proxy

import (
	"errors"
	"net"
)

// A panic on one connection's goroutine is contained to that connection
// (see package guard): the goroutine's deferred guard.Recover logs and
// counts it, and the callback closes what the goroutine served.

// errPanicked ends a relay direction whose goroutine panicked.
var errPanicked = errors.New("relay goroutine panicked")

// testHookRelay, when not nil (tests only), runs at the start of each
// direction of a TCP session's relay, on its goroutine; up is the client
// to endpoint direction.
var testHookRelay func(s *tcpSession, up bool)

// testHookConn, when not nil (tests only), runs on an HTTP listener's
// goroutine for each accepted connection before it is sniffed.
var testHookConn func(c net.Conn)

// abort closes both sides of a TCP session at once, for a relay direction
// that panicked: the other direction then ends on its closed socket.
func (s *tcpSession) abort() {
	s.client.Close()
	s.backend.Close()
}
