package h2relay

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// FuzzServeConn: any bytes after a valid preface neither panic nor hang
// the connection: ServeConn returns once the client closes.
func FuzzServeConn(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0})                                                          // SETTINGS
	f.Add([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8})       // SETTINGS, PING
	f.Add([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 5, 1, 5, 0, 0, 0, 1, 0x82, 0x86, 0x84, 0x41, 0x80}) // SETTINGS, HEADERS
	f.Add([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 4, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0})                   // WINDOW_UPDATE 0
	f.Fuzz(func(t *testing.T, data []byte) {
		srv := New(Config{
			Router: &testRouter{addrs: []string{"endpoint:1"}},
			Dial: func(context.Context, string, string) (net.Conn, error) {
				return nil, io.ErrUnexpectedEOF
			},
		})
		defer srv.Close()
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			srv.ServeConn(context.Background(), server)
			close(done)
		}()
		go io.Copy(io.Discard, client)
		client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		client.Write([]byte(http2.ClientPreface))
		client.Write(data)
		client.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("ServeConn did not return after the client closed")
		}
	})
}
