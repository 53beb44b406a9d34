package httpproxy

import (
	"net"
)

// A panic on one connection's goroutine is contained to that connection
// (see package guard): the goroutine's deferred guard.Recover logs and
// counts it, and the callback closes what the goroutine served.

// testHookConn, when not nil (tests only), runs on an HTTP listener's
// goroutine for each accepted connection before it is sniffed.
var testHookConn func(c net.Conn)
