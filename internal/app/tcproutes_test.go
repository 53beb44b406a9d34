package app

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/internal/proxytest"
	"github.com/longhaul-proxy/longhaul/internal/testnet"
)

// tlsVia completes a TLS handshake with serverName through addr and
// returns the name the backend announces; the connection closes when the
// test ends. roots nil skips verification.
func tlsVia(t *testing.T, addr, serverName string, roots *tls.Config) (string, *tls.Conn, *bufio.Reader, error) {
	t.Helper()
	cfg := &tls.Config{ServerName: serverName, InsecureSkipVerify: roots == nil}
	if roots != nil {
		cfg.RootCAs = roots.RootCAs
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return "", nil, nil, err
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	name, err := br.ReadString('\n')
	return strings.TrimSuffix(name, "\n"), c, br, err
}

// tlsEcho wants msg echoed on c (read through br).
func tlsEcho(t *testing.T, c *tls.Conn, br *bufio.Reader, msg, what string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\n", msg); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if line, err := br.ReadString('\n'); err != nil || line != msg+"\n" {
		t.Fatalf("%s: echo %q, %v", what, line, err)
	}
}

// TestTLSRoutesFromConfig: a tcp listener with TLS routes passes each
// connection through to the TLS server of its ClientHello's server name,
// whose own certificate the client verifies; no SNI or an unmatched name
// is closed; a drain of one backend's endpoint closes its session at its
// drain deadline and leaves the other backend's alone.
func TestTLSRoutesFromConfig(t *testing.T) {
	shop := proxytest.StartTLSServer(t, "shop", "shop.example.com")
	blog := proxytest.StartTLSServer(t, "blog", "*.example.com")
	file, write := endpointsFile(t)
	write(fmt.Sprintf("- {address: %q}\n", shop.Addr()))
	addr := testnet.FreeAddr(t)
	r := start(t, fmt.Sprintf(`
admin: {address: %q}
log: {level: warn}
listeners:
  - name: edge
    address: %q
    protocol: tcp
    drain: {timeout: 600ms}
    backends:
      - {name: shop, endpoints: {file: %q}}
      - {name: blog, endpoints: {static: [%q]}}
    routes:
      tls:
        - name: shop
          hostnames: [shop.example.com]
          rules: [{backendRefs: [{name: shop}]}]
        - name: rest
          hostnames: ["*.example.com"]
          rules: [{backendRefs: [{name: blog}]}]
`, testnet.FreeAddr(t), addr, file, blog.Addr()))
	roots := &tls.Config{RootCAs: proxytest.Pool(shop, blog)}
	name, cs, brs, err := tlsVia(t, addr, "shop.example.com", roots)
	if err != nil || name != "shop" || !cs.ConnectionState().PeerCertificates[0].Equal(shop.Cert) {
		t.Fatalf("shop.example.com: reached %q, %v", name, err)
	}
	name, cb, brb, err := tlsVia(t, addr, "www.example.com", roots)
	if err != nil || name != "blog" || !cb.ConnectionState().PeerCertificates[0].Equal(blog.Cert) {
		t.Fatalf("www.example.com: reached %q, %v", name, err)
	}
	for _, sni := range []string{"", "example.org"} {
		if name, _, _, err := tlsVia(t, addr, sni, nil); err == nil {
			t.Errorf("SNI %q: reached %q, want the connection closed", sni, name)
		}
	}
	if in := r.a.Sessions().Endpoint(shop.Addr()); len(in) != 1 || in[0].Info().Upstream != "edge/shop" {
		t.Fatalf("sessions on the shop endpoint: %d, want 1 of upstream edge/shop", len(in))
	}

	// The shop endpoint terminates and stops serving: its session is closed at the drain
	// deadline (drain.tcp deadline), the blog session carries on.
	left := time.Now()
	write(fmt.Sprintf("- {address: %q, ready: false, serving: false, terminating: true}\n", shop.Addr()))
	cs.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = io.Copy(io.Discard, brs)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the shop session is still open 10s after its endpoint left")
	}
	proxytest.AssertWithin(t, "the shop session closed", time.Since(left), 0, 600*time.Millisecond+proxytest.Slack)
	tlsEcho(t, cb, brb, "still here", "the blog session after the shop endpoint left")
}

// TestTCPRoutesApplyInPlace: a tcp listener the Gateway API's output
// adds with TLS routes is updated in place by Apply: a route edit sends
// new connections to the other backend while the session already open
// stays; TLS routes give way to a TCP route on the same socket.
func TestTCPRoutesApplyInPlace(t *testing.T) {
	shop := proxytest.StartTLSServer(t, "shop", "shop.example.com")
	blog := proxytest.StartTLSServer(t, "blog", "shop.example.com", "*.example.com")
	r := start(t, fmt.Sprintf(`
admin: {address: %q}
log: {level: warn}
listeners:
  - {name: echo, address: %q, endpoints: {static: [%q]}}
`, testnet.FreeAddr(t), testnet.FreeAddr(t), echoServer(t)))
	addr := testnet.FreeAddr(t)
	listener := func(routes string) config.Listener {
		t.Helper()
		c, err := config.Parse(fmt.Appendf(nil, `
listeners:
  - name: gw-tls
    address: %q
    protocol: tcp
    backends:
      - {name: shop, endpoints: {static: [%q]}}
      - {name: blog, endpoints: {static: [%q]}}
    routes:
%s`, addr, shop.Addr(), blog.Addr(), routes))
		if err != nil {
			t.Fatal(err)
		}
		return c.Listeners[0]
	}
	srv := func() server {
		for _, l := range r.a.current() {
			if l.cfg.Name == "gw-tls" {
				return l.srv
			}
		}
		return nil
	}
	var first server
	apply := func(lc config.Listener) {
		t.Helper()
		defer func() {
			if first == nil {
				first = srv()
			} else if srv() != first {
				t.Fatal("Apply rebuilt the listener instead of updating it in place")
			}
		}()
		if applied, err := r.a.Apply([]config.Listener{lc}); err != nil || applied["gw-tls"] != nil {
			t.Fatalf("Apply: %v %v", applied, err)
		}
		waitReady(t, r.a)
	}
	apply(listener(`
      tls:
        - {name: shop, hostnames: [shop.example.com], rules: [{backendRefs: [{name: shop}]}]}
        - {name: rest, hostnames: ["*.example.com"], rules: [{backendRefs: [{name: blog}]}]}
`))
	roots := &tls.Config{RootCAs: proxytest.Pool(shop, blog)}
	name, c, br, err := tlsVia(t, addr, "shop.example.com", roots)
	if err != nil || name != "shop" {
		t.Fatalf("before the edit: reached %q, %v", name, err)
	}
	apply(listener(`
      tls:
        - {name: rest, hostnames: ["*.example.com", shop.example.com], rules: [{backendRefs: [{name: blog}]}]}
`))
	if name, _, _, err := tlsVia(t, addr, "shop.example.com", roots); err != nil || name != "blog" {
		t.Errorf("after the edit: reached %q, %v; want blog", name, err)
	}
	tlsEcho(t, c, br, "untouched", "the shop session across the edit")
	if r.a.Upstream("gw-tls/shop") == nil {
		t.Error("backend shop left, with a session on it and still listed")
	}

	// A TCP route instead: every connection to blog, SNI or not.
	apply(listener(`
      tcp:
        - {name: all, rules: [{backendRefs: [{name: blog}]}]}
`))
	if name, _, _, err := tlsVia(t, addr, "", nil); err != nil || name != "blog" {
		t.Errorf("TCP route, no SNI: reached %q, %v; want blog", name, err)
	}
	tlsEcho(t, c, br, "still untouched", "the shop session across the change to a TCP route")
}
