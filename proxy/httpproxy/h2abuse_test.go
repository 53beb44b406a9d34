package httpproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/longhaul-proxy/longhaul/balancer"
)

// HTTP/2 abuse on the net/http path (listeners with HTTP/1 endpoints, where
// Go's HTTP/2 server serves the client): the attacks of the relay's
// adversarial suite (proxy/h2relay/abuse_test.go) that Go's server bounds
// itself, checked through longhaul.

// h2Attacker is a raw HTTP/2 client with buffered writes.
func h2Attacker(t *testing.T, addr string) (net.Conn, *bufio.Writer, *http2.Framer) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	bw := bufio.NewWriterSize(c, 64<<10)
	fr := http2.NewFramer(bw, c)
	io.WriteString(bw, http2.ClientPreface)
	fr.WriteSettings()
	bw.Flush()
	return c, bw, fr
}

// TestNetHTTPRapidReset: HEADERS + RST_STREAM pairs, up to 100,000 on one
// connection. Go's server closes the connection (or bounds the handlers);
// the endpoint sees a bounded number of requests.
func TestNetHTTPRapidReset(t *testing.T) {
	var reached atomic.Int64
	be := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		io.WriteString(w, "ok")
	}))
	p := startHTTPProxy(t, Config{}, balancer.Policy{Kind: balancer.Maglev}, be)
	if p.l.relay != nil {
		t.Fatal("HTTP/1 endpoints: the net/http path was expected")
	}
	c, bw, fr := h2Attacker(t, p.addr)
	go io.Copy(io.Discard, c)
	var sb strings.Builder
	enc := hpack.NewEncoder(&sb)
	const pairs = 100_000
	start := time.Now()
	sent := 0
	for ; sent < pairs; sent++ {
		sb.Reset()
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "a"}, {":path", "/"}} {
			enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		id := uint32(2*sent + 1)
		if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: []byte(sb.String()), EndStream: true, EndHeaders: true}) != nil ||
			fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
			break
		}
		if sent%100 == 99 && bw.Flush() != nil {
			break
		}
	}
	bw.Flush()
	took := time.Since(start)
	if n := reached.Load(); n >= 1000 {
		t.Errorf("%d of %d reset requests reached the endpoint; want under 1,000", n, sent)
	}
	t.Logf("net/http path, rapid reset: %d pairs written in %v, %d requests reached the endpoint", sent, took.Round(time.Millisecond), reached.Load())
}

// TestNetHTTPPingFloodNonReading: PINGs from a client that never reads;
// Go's server closes it once its unanswered control frames pass its bound.
func TestNetHTTPPingFloodNonReading(t *testing.T) {
	p := startHTTPProxy(t, Config{}, balancer.Policy{Kind: balancer.Maglev}, startHTTPBackend(t, http.NotFoundHandler()))
	c, bw, fr := h2Attacker(t, p.addr)
	start := time.Now()
	for i := 0; i < 500_000; i++ {
		if fr.WritePing(false, [8]byte{byte(i)}) != nil {
			break
		}
		if i%100 == 99 && bw.Flush() != nil {
			break
		}
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the flooder's connection was not closed: %v", err)
	}
	// Writing the flood is most of the time, and the race detector slows
	// the server that reads it several times.
	bound := 5 * time.Second
	if raceEnabled {
		bound = 15 * time.Second
	}
	if took := time.Since(start); took > bound {
		t.Errorf("closed %v into the flood; want within %v", took, bound)
	}
	t.Logf("net/http path, non-reading PING flood: closed %v in", time.Since(start).Round(time.Millisecond))
}
