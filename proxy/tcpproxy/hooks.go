package tcpproxy

// testHookRelay, when not nil (tests only), runs at the start of each
// direction of a TCP session's relay, on its goroutine; up is the client
// to endpoint direction.
var testHookRelay func(s *tcpSession, up bool)

// testHookKeepAlive, when not nil (tests only), runs once a session set its
// endpoint socket's keep-alive probes.
var testHookKeepAlive func(s *tcpSession)

// abort closes both sides of a TCP session at once, for a relay direction
// that panicked: the other direction then ends on its closed socket (woken
// first if it is parked: a socket closed under the Parker is never woken).
func (s *tcpSession) abort() {
	s.kickAll()
	s.client.Close()
	s.backend.Close()
}
