package httpproxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/internal/guard"
	"github.com/longhaul-proxy/longhaul/internal/proxytest"
)

// TestHTTPPanicClosesOneConnection: a panic on the goroutine that sniffs
// and serves one accepted HTTP connection closes that connection; an
// HTTP/2 client connection already open on the same listener keeps
// serving requests on it.
func TestHTTPPanicClosesOneConnection(t *testing.T) {
	var panicNext atomic.Bool
	testHookConn = func(net.Conn) {
		if panicNext.CompareAndSwap(true, false) {
			panic("test: conn bug")
		}
	}
	t.Cleanup(func() { testHookConn = nil })
	proxytest.CaptureGuard(t)
	be := startH2CBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	p := startHTTPProxy(t, Config{UpstreamH2: true}, balancer.Policy{Kind: balancer.Maglev}, be)
	var dials atomic.Int32
	c := &http.Client{Transport: &http2.Transport{AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, n, a string, _ *tls.Config) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, n, a)
		}}}
	defer c.CloseIdleConnections()
	get := func() error {
		resp, err := c.Get("http://" + p.addr + "/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != "ok" {
			return fmt.Errorf("got %d %q", resp.StatusCode, b)
		}
		return nil
	}
	if err := get(); err != nil {
		t.Fatal(err)
	}
	before := guard.Count("http")
	panicNext.Store(true)
	victim, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	victim.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	victim.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := victim.Read(make([]byte, 1)); n != 0 || err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("victim read %d, %v; want the connection closed", n, err)
	}
	if got := guard.Count("http") - before; got != 1 {
		t.Errorf("longhaul_panics_total{where=http} rose by %v, want 1", got)
	}
	for i := range 10 {
		if err := get(); err != nil {
			t.Fatalf("request %d on the open connection after the panic: %v", i, err)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("the client dialled %d times, want its one connection kept", n)
	}
}
