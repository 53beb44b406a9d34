package h2relay

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
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

// FuzzUpstream: whatever an endpoint sends after its SETTINGS, in answer to
// a request, neither panics nor hangs the relay.
func FuzzUpstream(f *testing.F) {
	addUpstreamSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var wg sync.WaitGroup
		defer wg.Wait()
		srv := New(Config{
			Router:               &testRouter{addrs: []string{"endpoint:1"}},
			Dial:                 pipeEndpoint(&wg, data),
			UpstreamPingInterval: 50 * time.Millisecond, UpstreamPingTimeout: 50 * time.Millisecond,
		})
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			srv.ServeConn(context.Background(), server)
			close(done)
		}()
		wg.Add(1)
		go func() { defer wg.Done(); io.Copy(io.Discard, client) }()
		client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		client.Write([]byte(http2.ClientPreface))
		fr := http2.NewFramer(client, nil)
		fr.WriteSettings()
		// :method GET, :scheme http, :path /, :authority a (static
		// indexes and one literal).
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x82, 0x86, 0x84, 0x41, 0x01, 'a'}, EndStream: true, EndHeaders: true})
		time.Sleep(30 * time.Millisecond)
		client.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("ServeConn did not return after the client closed")
		}
		srv.Close()
	})
}

// FuzzUpstreamRoundTrip: whatever an endpoint sends after its SETTINGS, in
// answer to a round trip with a body, neither panics nor hangs RoundTrip
// or the response body's reads.
func FuzzUpstreamRoundTrip(f *testing.F) {
	addUpstreamSeeds(f)
	f.Add([]byte{0, 0, 1, 1, 4, 0, 0, 0, 1, 0x88, 0, 0, 3, 1, 5, 0, 0, 0, 1, 0x40, 0x01, 'x'}) // HEADERS, bad trailers
	f.Fuzz(func(t *testing.T, data []byte) {
		var wg sync.WaitGroup
		defer wg.Wait()
		srv := New(Config{
			Router:               &testRouter{},
			Dial:                 pipeEndpoint(&wg, data),
			UpstreamPingInterval: 50 * time.Millisecond, UpstreamPingTimeout: 50 * time.Millisecond,
		})
		defer srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", "http://endpoint:1/", strings.NewReader(strings.Repeat("x", 100<<10)))
		done := make(chan struct{})
		go func() {
			defer close(done)
			resp, err := srv.RoundTrip(req)
			if err != nil {
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("RoundTrip or its body read did not return")
		}
	})
}

// addUpstreamSeeds adds the seeds of what an endpoint answers.
func addUpstreamSeeds(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 1, 1, 5, 0, 0, 0, 1, 0x88})                                              // HEADERS :status 200, END_STREAM
	f.Add([]byte{0, 0, 1, 1, 4, 0, 0, 0, 1, 0x88, 0, 0, 2, 0, 1, 0, 0, 0, 1, 'o', 'k'})         // HEADERS, DATA
	f.Add([]byte{0, 0, 4, 3, 0, 0, 0, 0, 1, 0, 0, 0, 7})                                        // RST_STREAM REFUSED
	f.Add([]byte{0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})                            // GOAWAY 0
	f.Add([]byte{0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 1, 1, 4, 0, 0, 0, 1, 0x88}) // SETTINGS window 0, HEADERS
}

// pipeEndpoint returns a Dial whose endpoint sends SETTINGS, then data,
// and closes; its goroutines are counted in wg.
func pipeEndpoint(wg *sync.WaitGroup, data []byte) func(context.Context, string, string) (net.Conn, error) {
	return func(context.Context, string, string) (net.Conn, error) {
		relaySide, endpoint := net.Pipe()
		wg.Add(2)
		go func() { defer wg.Done(); io.Copy(io.Discard, endpoint) }()
		go func() {
			defer wg.Done()
			endpoint.SetWriteDeadline(time.Now().Add(2 * time.Second))
			endpoint.Write([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0}) // SETTINGS
			endpoint.Write(data)
			time.Sleep(10 * time.Millisecond)
			endpoint.Close()
		}()
		return relaySide, nil
	}
}
