// Package testnet holds what the tests of several packages need of the
// loopback network.
package testnet

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"testing"
)

// FreeAddr returns a loopback address that was free a moment ago. Another
// process may take it before the caller binds it: callers that start a
// program on it retry with another address when it cannot bind.
//
// The port is below the kernel's ephemeral range (32768 and up by
// default), so that the outgoing connections of tests running meanwhile
// do not take it, and it was free on every address: a program that binds
// all addresses (":port") needs that.
func FreeAddr(t testing.TB) string {
	t.Helper()
	for range 100 {
		port := freeLow + rand.IntN(freeHigh-freeLow)
		ln, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
		if err != nil {
			continue // taken
		}
		ln.Close()
		return fmt.Sprintf("127.0.0.1:%d", port)
	}
	t.Fatal("no free port found below the ephemeral range")
	return ""
}

// The range FreeAddr picks ports from.
const freeLow, freeHigh = 20000, 32768

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
