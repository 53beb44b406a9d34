package tcpproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/internal/proxytest"
	"github.com/longhaul-proxy/longhaul/proxy/listen"
	"github.com/longhaul-proxy/longhaul/proxy/metrics"
	"github.com/longhaul-proxy/longhaul/proxy/route"
	"github.com/longhaul-proxy/longhaul/proxy/upstream"
)

// routedProxy is a TCP listener with routes over named backends, each an
// upstream of its own sharing one registry.
type routedProxy struct {
	l        *Listener
	reg      *upstream.Registry
	backends map[string]*Backend
	addr     string
}

// startRouted runs a listener whose backends are name → endpoint
// addresses, routed by the spec that spec builds over them.
func startRouted(t testing.TB, cfg Config, endpoints map[string][]string, spec func(b map[string]*Backend) route.Spec[*Backend]) *routedProxy {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "edge"
	}
	reg, m := upstream.NewRegistry(), metrics.New(nil)
	p := &routedProxy{reg: reg, backends: map[string]*Backend{}}
	var first *upstream.Upstream
	for name, addrs := range endpoints {
		up := upstream.NewUpstream(cfg.Name+"/"+name, balancer.Policy{Kind: balancer.LeastConnections}, reg, m)
		if first == nil {
			first = up
		}
		proxytest.SetEndpoints(t, up, addrs...)
		p.backends[name] = &Backend{Up: up}
	}
	tb, err := route.New(spec(p.backends))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Routes = tb
	p.l = New(cfg, first)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.l.Serve(ctx, ln) }()
	t.Cleanup(func() {
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		p.l.Shutdown(sctx)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return p
}

func (p *routedProxy) rejected(reason string) float64 {
	return testutil.ToFloat64(p.l.metrics.Rejected.WithLabelValues(p.l.cfg.Name, reason))
}

// tlsRoute is a TLS route of the hostnames to the backends, weight 1 each.
func tlsRoute(name string, hosts []string, bs ...*Backend) route.TLSRoute[*Backend] {
	var refs []route.Backend[*Backend]
	for _, b := range bs {
		refs = append(refs, route.Backend[*Backend]{Ref: b, Weight: 1})
	}
	return route.TLSRoute[*Backend]{Meta: route.Meta{Namespace: "edge", Name: name}, Hostnames: hosts,
		Rules: []route.TLSRule[*Backend]{{Backends: refs}}}
}

// tlsDial completes a TLS handshake with serverName through the proxy
// and returns the name the backend announces and the certificate it
// showed.
func tlsDial(t testing.TB, addr, serverName string, roots *tls.Config) (string, *tls.Conn, error) {
	t.Helper()
	cfg := roots.Clone()
	cfg.ServerName = serverName
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(&d, "tcp", addr, cfg)
	if err != nil {
		return "", nil, err
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	name, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSuffix(name, "\n"), c, err
}

// TestTLSPassthrough: crypto/tls clients reach, through one listener,
// the TLS server of the route their ServerName matches best, and each
// handshake completes against that server's own certificate; no SNI, or
// a name no route matches, closes the connection before any backend is
// dialled.
func TestTLSPassthrough(t *testing.T) {
	shop := proxytest.StartTLSServer(t, "shop", "shop.example.com", "*.shop.example.com")
	blog := proxytest.StartTLSServer(t, "blog", "*.example.com")
	p := startRouted(t, Config{}, map[string][]string{"shop": {shop.Addr()}, "blog": {blog.Addr()}},
		func(b map[string]*Backend) route.Spec[*Backend] {
			return route.Spec[*Backend]{TLS: []route.TLSRoute[*Backend]{
				tlsRoute("shop", []string{"shop.example.com"}, b["shop"]),
				tlsRoute("shop-wild", []string{"*.shop.example.com"}, b["shop"]),
				tlsRoute("wild", []string{"*.example.com"}, b["blog"]),
			}}
		})
	roots := &tls.Config{RootCAs: proxytest.Pool(shop, blog)}
	for sni, want := range map[string]*proxytest.TLSServer{
		"shop.example.com":      shop, // exact
		"a.shop.example.com":    shop, // the longer wildcard
		"www.example.com":       blog,
		"Blog.Example.com":      blog,
		"cart.shop.example.com": shop,
	} {
		name, c, err := tlsDial(t, p.addr, sni, roots)
		if err != nil {
			t.Errorf("%s: %v", sni, err)
			continue
		}
		if name != want.Name || !c.ConnectionState().PeerCertificates[0].Equal(want.Cert) {
			t.Errorf("%s: reached %q, want %q with its certificate", sni, name, want.Name)
		}
		// The session relays both ways after the peeked ClientHello.
		fmt.Fprintf(c, "ping %s\n", sni)
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "ping "+sni+"\n" {
			t.Errorf("%s: echo %q, %v", sni, line, err)
		}
		if in := p.reg.Endpoint(want.Addr()); len(in) == 0 || in[0].Info().Upstream != "edge/"+want.Name {
			t.Errorf("%s: no session registered with upstream edge/%s", sni, want.Name)
		}
	}
	dialled := shop.Accepted() + blog.Accepted()
	for _, c := range []struct {
		name string
		cfg  *tls.Config
	}{
		{"no SNI", &tls.Config{InsecureSkipVerify: true}},
		{"unmatched", &tls.Config{ServerName: "example.org", InsecureSkipVerify: true}},
		{"apex not matched by the wildcard", &tls.Config{ServerName: "example.com", InsecureSkipVerify: true}},
	} {
		d := net.Dialer{Timeout: 5 * time.Second}
		conn, err := tls.DialWithDialer(&d, "tcp", p.addr, c.cfg)
		if err == nil {
			conn.Close()
			t.Errorf("%s: handshake completed, want the connection closed", c.name)
		}
	}
	if n := shop.Accepted() + blog.Accepted(); n != dialled {
		t.Errorf("%d backend connections for clients without a route", n-dialled)
	}
	if n := p.rejected("no_route"); n != 3 {
		t.Errorf("rejected no_route = %v, want 3", n)
	}
}

// TestTLSRouteCatchAll: a route without hostnames takes what the others
// do not, exact and wildcard names still win.
func TestTLSRouteCatchAll(t *testing.T) {
	exact := proxytest.StartTLSServer(t, "exact", "api.example.com")
	rest := proxytest.StartTLSServer(t, "rest", "api.example.com", "*.example.com", "other.org")
	p := startRouted(t, Config{}, map[string][]string{"exact": {exact.Addr()}, "rest": {rest.Addr()}},
		func(b map[string]*Backend) route.Spec[*Backend] {
			return route.Spec[*Backend]{TLS: []route.TLSRoute[*Backend]{
				tlsRoute("any", nil, b["rest"]),
				tlsRoute("exact", []string{"api.example.com"}, b["exact"]),
			}}
		})
	roots := &tls.Config{RootCAs: proxytest.Pool(exact, rest)}
	for sni, want := range map[string]string{"api.example.com": "exact", "www.example.com": "rest", "other.org": "rest"} {
		if name, _, err := tlsDial(t, p.addr, sni, roots); err != nil || name != want {
			t.Errorf("%s: reached %q, %v; want %q", sni, name, err, want)
		}
	}
}

// TestTCPRouteWeights: a TCPRoute of weights 3:1 splits 400 connections
// about 300:100 (4.6 standard deviations of slack each way).
func TestTCPRouteWeights(t *testing.T) {
	named := func(name string) func(c *net.TCPConn) {
		return func(c *net.TCPConn) { io.WriteString(c, name) }
	}
	a := proxytest.StartServer(t, named("a"))
	b := proxytest.StartServer(t, named("b"))
	p := startRouted(t, Config{}, map[string][]string{"a": {a.Addr()}, "b": {b.Addr()}},
		func(bs map[string]*Backend) route.Spec[*Backend] {
			return route.Spec[*Backend]{TCP: []route.TCPRoute[*Backend]{{Meta: route.Meta{Namespace: "edge", Name: "db"},
				Rules: []route.TCPRule[*Backend]{{Backends: []route.Backend[*Backend]{{Ref: bs["a"], Weight: 3}, {Ref: bs["b"], Weight: 1}}}}}}}
		})
	n := map[string]int{}
	for i := range 400 {
		c := proxytest.Dial(t, p.addr)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		if err != nil || len(got) != 1 {
			t.Fatalf("connection %d: %q, %v", i, got, err)
		}
		n[string(got)]++
		c.Close()
	}
	t.Logf("split %v", n)
	if n["a"] < 260 || n["a"] > 340 || n["a"]+n["b"] != 400 {
		t.Errorf("split %v, want a 300±40 of 400", n)
	}
}

// TestHelloStallAndOversize: a client that sends part of a ClientHello
// and stalls is closed at the hello deadline, while a client arriving
// meanwhile goes through; a ClientHello above the bound, or not TLS at
// all, is closed at once; none of them reaches a backend.
func TestHelloStallAndOversize(t *testing.T) {
	srv := proxytest.StartTLSServer(t, "shop", "shop.example.com")
	p := startRouted(t, Config{HelloTimeout: proxytest.ShortTimeout}, map[string][]string{"shop": {srv.Addr()}},
		func(b map[string]*Backend) route.Spec[*Backend] {
			return route.Spec[*Backend]{TLS: []route.TLSRoute[*Backend]{tlsRoute("shop", []string{"shop.example.com"}, b["shop"])}}
		})
	hello := clientHello(t, &tls.Config{ServerName: "shop.example.com"})

	stalled := proxytest.Dial(t, p.addr)
	stalled.Write(hello[:len(hello)/2])
	sent := time.Now()
	// Another client, within the stall.
	if name, _, err := tlsDial(t, p.addr, "shop.example.com", &tls.Config{RootCAs: proxytest.Pool(srv)}); err != nil || name != "shop" {
		t.Errorf("a client beside the stalled one: %q, %v", name, err)
	}
	if took := time.Since(sent); took >= proxytest.ShortTimeout {
		t.Errorf("the other client took %v, as long as the stall's deadline", took)
	}
	proxytest.AssertWithin(t, "stalled ClientHello closed", proxytest.WaitClosed(t, stalled, stalled, sent),
		proxytest.ShortTimeout-50*time.Millisecond, proxytest.ShortTimeout+proxytest.Slack)

	header := []byte{22, 3, 1, 0x40, 0x01} // a record of 16 KiB + 1
	for name, in := range map[string][]byte{
		"record above 16 KiB":        header,
		"fragments above 16 KiB + 5": padded(hello, maxRecord),
		"not TLS":                    []byte("GET / HTTP/1.1\r\nHost: shop.example.com\r\n\r\n"),
	} {
		c := proxytest.Dial(t, p.addr)
		start := time.Now()
		c.Write(in)
		if took := proxytest.WaitClosed(t, c, c, start); took >= proxytest.ShortTimeout {
			t.Errorf("%s: closed after %v, not at once", name, took)
		}
	}
	if n := srv.Accepted(); n != 1 {
		t.Errorf("the backend accepted %d connections, want the one good client's", n)
	}
	if got := p.rejected("tls_hello_timeout") + p.rejected("tls_hello"); got != 4 {
		t.Errorf("rejected %v ClientHellos, want 4", got)
	}
}

// TestRoutedDrainPerBackend: drain reaches a routed session through its
// backend's upstream: asking the sessions of one backend's endpoint to
// move closes that one at its deadline (drain.tcp deadline) and leaves
// the other backend's session relaying; with DrainImmediate it closes at
// once.
func TestRoutedDrainPerBackend(t *testing.T) {
	for _, immediate := range []bool{false, true} {
		t.Run(fmt.Sprint("immediate=", immediate), func(t *testing.T) {
			a := proxytest.StartTLSServer(t, "a", "a.example.com")
			b := proxytest.StartTLSServer(t, "b", "b.example.com")
			p := startRouted(t, Config{DrainImmediate: immediate}, map[string][]string{"a": {a.Addr()}, "b": {b.Addr()}},
				func(bs map[string]*Backend) route.Spec[*Backend] {
					return route.Spec[*Backend]{TLS: []route.TLSRoute[*Backend]{
						tlsRoute("a", []string{"a.example.com"}, bs["a"]), tlsRoute("b", []string{"b.example.com"}, bs["b"])}}
				})
			roots := &tls.Config{RootCAs: proxytest.Pool(a, b)}
			_, ca, errA := tlsDial(t, p.addr, "a.example.com", roots)
			_, cb, errB := tlsDial(t, p.addr, "b.example.com", roots)
			if errA != nil || errB != nil {
				t.Fatal(errA, errB)
			}
			upA := p.backends["a"].Up
			var ss []upstream.Session
			for _, s := range p.reg.Endpoint(a.Addr()) {
				if s.Info().UpstreamID == upA.ID() {
					ss = append(ss, s)
				}
			}
			if len(ss) != 1 {
				t.Fatalf("%d sessions of backend a, want 1", len(ss))
			}
			deadline := 2 * proxytest.ShortTimeout
			asked := time.Now()
			ss[0].Migrate(asked.Add(deadline))
			lo, hi := deadline-50*time.Millisecond, deadline+proxytest.Slack
			if immediate {
				lo, hi = 0, proxytest.ShortTimeout
			}
			ca.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.Copy(io.Discard, ca); errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("backend a's session still open after 10s")
			}
			proxytest.AssertWithin(t, "the draining backend's session closed", time.Since(asked), lo, hi)
			cb.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(cb, "still\n")
			if line, err := bufio.NewReader(cb).ReadString('\n'); err != nil || line != "still\n" {
				t.Errorf("the other backend's session: %q, %v", line, err)
			}
		})
	}
}

// BenchmarkRoutedTLSSessionSetup measures a whole TLS passthrough
// connection: connect, read and route the ClientHello among 1,000 TLS
// routes, dial, relay it and one byte back, close.
func BenchmarkRoutedTLSSessionSetup(b *testing.B) {
	backend := proxytest.StartServer(b, func(c *net.TCPConn) {
		var h [5]byte
		if _, err := io.ReadFull(c, h[:]); err == nil {
			io.CopyN(io.Discard, c, int64(h[3])<<8|int64(h[4]))
			c.Write([]byte{1})
		}
	})
	p := startRouted(b, Config{}, map[string][]string{"svc": {backend.Addr()}},
		func(bs map[string]*Backend) route.Spec[*Backend] {
			var s route.Spec[*Backend]
			for i := range 1000 {
				s.TLS = append(s.TLS, tlsRoute(fmt.Sprint("svc-", i), []string{fmt.Sprintf("svc-%d.example.com", i)}, bs["svc"]))
			}
			return s
		})
	hello := clientHello(b, &tls.Config{ServerName: "svc-500.example.com"})
	b.ReportAllocs()
	for b.Loop() {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			b.Fatal(err)
		}
		c.Write(hello)
		var one [1]byte
		if _, err := io.ReadFull(c, one[:]); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// TestTLSRouteBehindProxyProtocol: with AcceptProxy the PROXY header
// comes first, then the ClientHello is read and routed; the session is
// registered under the header's client address.
func TestTLSRouteBehindProxyProtocol(t *testing.T) {
	shop := proxytest.StartTLSServer(t, "shop", "shop.example.com")
	p := startRouted(t, Config{AcceptProxy: true}, map[string][]string{"shop": {shop.Addr()}},
		func(b map[string]*Backend) route.Spec[*Backend] {
			return route.Spec[*Backend]{TLS: []route.TLSRoute[*Backend]{tlsRoute("shop", []string{"shop.example.com"}, b["shop"])}}
		})
	raw := proxytest.Dial(t, p.addr)
	client := netip.MustParseAddrPort("203.0.113.7:4242")
	raw.Write(listen.AppendProxyV2(nil, client, netip.MustParseAddrPort("198.51.100.1:443")))
	c := tls.Client(raw, &tls.Config{ServerName: "shop.example.com", RootCAs: proxytest.Pool(shop)})
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if name, err := bufio.NewReader(c).ReadString('\n'); err != nil || name != "shop\n" {
		t.Fatalf("reached %q, %v", name, err)
	}
	if in := p.reg.Endpoint(shop.Addr()); len(in) != 1 || in[0].Info().Client != client.String() {
		t.Errorf("sessions on shop: %d, want 1 from %v", len(in), client)
	}
}
