package h2relay

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc/connectivity"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestClientThatStopsReadingIsClosed: a client that grants all the window
// it can but never reads its socket does not hold its connection (and the
// endpoint's stream) forever: once the socket buffers are full, the
// relay's write stalls and WriteTimeout ends the connection.
func TestClientThatStopsReadingIsClosed(t *testing.T) {
	const size = 64 << 20
	chunk := make([]byte, 64<<10)
	be := startH2CBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for n := 0; n < size; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	p := startRelay(t, Config{Router: &testRouter{addrs: []string{be}}, WriteTimeout: 300 * time.Millisecond})
	rc := dialRaw(t, p.addr)
	rc.c.SetDeadline(time.Now().Add(20 * time.Second))
	// All the window the protocol allows, on the stream and the connection.
	if err := rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1}); err != nil {
		t.Fatal(err)
	}
	if err := rc.fr.WriteWindowUpdate(0, 1<<31-1-65535); err != nil {
		t.Fatal(err)
	}
	rc.headers(1, true, ":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/")
	// Read nothing for a while: the relay's socket buffer and ours fill,
	// then its write stalls for longer than WriteTimeout.
	time.Sleep(3 * time.Second)
	n, err := io.Copy(io.Discard, rc.c)
	if err == nil && n >= size {
		t.Fatalf("read %d bytes to the end: the relay waited for a client that did not read", n)
	}
	if n >= size {
		t.Fatalf("read all %d bytes of the response; want the connection cut short", n)
	}
	t.Logf("the relay closed the connection after %d of %d bytes (%v)", n, size, err)
}

// TestConnectionsOutliveWriteTimeout: WriteTimeout bounds each write, not
// the connection. Calls keep coming on one client connection for ten times
// WriteTimeout; every one succeeds, on the same client and endpoint
// connections throughout (a deadline left behind by a write used to fail
// every write after it, closing both without GOAWAY).
func TestConnectionsOutliveWriteTimeout(t *testing.T) {
	const writeTimeout = 100 * time.Millisecond
	be := startBackend(t)
	p := startRelay(t, Config{Router: &testRouter{addrs: []string{be.addr}}, WriteTimeout: writeTimeout})
	cc := dialGRPC(t, p.addr)
	c := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tick := time.NewTicker(writeTimeout / 4)
	defer tick.Stop()
	start := time.Now()
	calls := 0
	for time.Since(start) < 10*writeTimeout {
		if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("call %d, %v after the first: %v", calls, time.Since(start).Round(time.Millisecond), err)
		}
		calls++
		<-tick.C
	}
	if n := be.ln.open(); n != 1 {
		t.Errorf("the endpoint saw %d connections open; want the first one still in use", n)
	}
	if s := cc.GetState(); s != connectivity.Ready {
		t.Errorf("client connection is %v after %d calls; want READY", s, calls)
	}
	t.Logf("%d calls over %v on one connection with WriteTimeout %v", calls, time.Since(start).Round(time.Millisecond), writeTimeout)
}
