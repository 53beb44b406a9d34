// Package testnet holds what the tests of several packages need of the
// loopback network.
package testnet

import (
	"net"
	"testing"
)

// FreeAddr returns a loopback address that was free a moment ago. Another
// process may take it before the caller binds it: callers that start a
// program on it retry with another address when it cannot bind.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
