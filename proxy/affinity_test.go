package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/longhaul-proxy/longhaul/balancer"
)

// namedBackends start n HTTP/1 endpoints that answer their own address.
func namedBackends(t *testing.T, n int) []string {
	var addrs []string
	for range n {
		var self atomic.Value
		addr := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, self.Load().(string))
		}))
		self.Store(addr)
		addrs = append(addrs, addr)
	}
	return addrs
}

// get sends a GET on client and returns the answering endpoint, the
// response's Connection header and whether the request reused a connection.
func affinityGet(t *testing.T, c *http.Client, url string) (endpoint string, reused bool, closing bool) {
	t.Helper()
	var info httptrace.GotConnInfo
	req, _ := http.NewRequest("GET", url, nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { info = i }}))
	resp, err := c.Do(req)
	if err != nil {
		t.Error(err)
		return "", false, false
	}
	defer resp.Body.Close()
	b, rerr := io.ReadAll(resp.Body)
	if rerr != nil || resp.StatusCode != 200 {
		t.Logf("GET %s: %s, body %q, read error %v", url, resp.Status, b, rerr)
	}
	return string(b), info.Reused, resp.Close
}

// TestAffinityHTTP1: requests on one keep-alive connection all go to one
// endpoint; when drain asks the connection to move, the next response says
// Connection: close and the client's next connection goes elsewhere.
func TestAffinityHTTP1(t *testing.T) {
	be := namedBackends(t, 3)
	p := startHTTPProxy(t, HTTPConfig{Affinity: true}, balancer.Policy{Kind: balancer.LeastConnections}, be...)
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer c.CloseIdleConnections()
	first, _, _ := affinityGet(t, c, "http://"+p.addr+"/")
	for i := range 20 {
		got, reused, closing := affinityGet(t, c, "http://"+p.addr+"/")
		if got != first || !reused || closing {
			t.Fatalf("request %d: endpoint %s reused=%v close=%v, want %s on the same connection", i, got, reused, closing, first)
		}
	}
	ss := p.reg.Endpoint(first)
	if len(ss) != 1 || ss[0].Info().Protocol != "http-affinity" {
		t.Fatalf("sessions on %s: %d, want the pinned connection", first, len(ss))
	}
	// The endpoint turns terminating: drain asks the pin to move.
	var rest []string
	for _, a := range be {
		if a != first {
			rest = append(rest, a)
		}
	}
	setEndpoints(t, p.up, rest...)
	ss[0].Migrate(time.Now().Add(5 * time.Second))
	// The idle connection was closed at once; the next request connects
	// anew and lands on another endpoint.
	got, reused, _ := affinityGet(t, c, "http://"+p.addr+"/")
	if got == first || reused {
		t.Errorf("after the move: endpoint %s reused=%v, want another endpoint on a new connection", got, reused)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.reg.Wait(ctx, func(i SessionInfo) bool { return i.Endpoint == first }); err != nil {
		t.Errorf("the pinned session on %s did not end: %v", first, err)
	}
}

// TestAffinityHTTP2GoAway: an h2c connection is pinned; asked to move while
// a request is in flight, the response ends the connection with GOAWAY
// (in-flight request completes), and the next request, on a new
// connection, goes to another endpoint.
func TestAffinityHTTP2GoAway(t *testing.T) {
	release := make(chan struct{})
	var slowSelf atomic.Value
	slow := startHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, slowSelf.Load().(string))
	}))
	slowSelf.Store(slow)
	other := namedBackends(t, 1)[0]
	p := startHTTPProxy(t, HTTPConfig{Affinity: true}, balancer.Policy{Kind: balancer.Maglev}, slow)
	var dials atomic.Int32
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	if got, _, _ := affinityGet(t, c, "http://"+p.addr+"/"); got != slow {
		t.Fatalf("first request went to %s", got)
	}
	setEndpoints(t, p.up, slow, other) // both eligible; the pin stays
	done := make(chan string, 1)
	go func() { got, _, _ := affinityGet(t, c, "http://"+p.addr+"/slow"); done <- got }()
	time.Sleep(100 * time.Millisecond) // the slow request is in flight
	setEndpoints(t, p.up, other)
	p.reg.Endpoint(slow)[0].Migrate(time.Now().Add(5 * time.Second))
	close(release)
	if got := <-done; got != slow {
		t.Errorf("the request in flight was answered by %s, want %s (it finishes where it started)", got, slow)
	}
	got, _, _ := affinityGet(t, c, "http://"+p.addr+"/")
	if got != other {
		t.Errorf("after GOAWAY the next request went to %s, want %s", got, other)
	}
	if n := dials.Load(); n != 2 {
		t.Errorf("client dialled %d connections, want 2 (the second after GOAWAY)", n)
	}
}
