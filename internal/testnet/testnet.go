// Package testnet holds what the tests of several packages need of the
// loopback network.
package testnet

import (
	"net"
	"net/http"
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

// H2CServer serves h on a loopback address over HTTP/1.1 and over HTTP/2
// with prior knowledge (h2c), until the test ends, and returns the address.
func H2CServer(t testing.TB, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: protos}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String()
}
