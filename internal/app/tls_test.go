package app

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/internal/testcert"
	"github.com/longhaul-proxy/longhaul/internal/testnet"
)

// TestApplyRotatesCertificates: a TLS listener serves the certificate of
// the client's server name (exact, wildcard, default), and Apply replaces
// its certificates in place: the next handshake gets the new one, while a
// WebSocket opened before keeps flowing on the same listener; a pair that
// does not parse is refused and the old ones stay.
func TestApplyRotatesCertificates(t *testing.T) {
	web := routeBackend(t, "web-0")
	addr := testnet.FreeAddr(t)
	r := start(t, fmt.Sprintf(`
admin: {address: %q}
log: {level: warn}
listeners:
  - {name: boot, address: %q, protocol: http, endpoints: {static: [%q]}}
`, testnet.FreeAddr(t), testnet.FreeAddr(t), web))
	a1 := testcert.New(t, "a-1", "a.example.com")
	a2 := testcert.New(t, "a-2", "a.example.com")
	wild := testcert.New(t, "wild", "x.w.example.com")
	def := testcert.New(t, "default", "other.example.org")
	listener := func(a testcert.Pair) config.Listener {
		l := gatewayListener(t, "tls", addr, "", web, "")
		l.HTTP.TLS.Certificates = []config.Certificate{
			{Hostnames: []string{"a.example.com"}, CertPEM: string(a.CertPEM), KeyPEM: string(a.KeyPEM)},
			{Hostnames: []string{"*.w.example.com"}, CertPEM: string(wild.CertPEM), KeyPEM: string(wild.KeyPEM)},
			{CertPEM: string(def.CertPEM), KeyPEM: string(def.KeyPEM)},
		}
		return l
	}
	if _, err := r.a.Apply([]config.Listener{listener(a1)}); err != nil {
		t.Fatal(err)
	}
	waitReady(t, r.a)
	pool := x509.NewCertPool()
	for _, p := range []testcert.Pair{a1, a2, wild, def} {
		pool.AppendCertsFromPEM(p.CertPEM)
	}
	// served returns the common name of the certificate a handshake with
	// server name sni gets, after a request through it succeeds.
	served := func(sni string) string {
		t.Helper()
		tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: sni, RootCAs: pool}}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + addr + "/x")
		if err != nil {
			t.Fatalf("GET with SNI %s: %v", sni, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET with SNI %s: status %d", sni, resp.StatusCode)
		}
		return testcert.CommonName(*resp.TLS)
	}
	for sni, want := range map[string]string{"a.example.com": "a-1", "x.w.example.com": "wild", "other.example.org": "default"} {
		if got := served(sni); got != want {
			t.Errorf("SNI %s: served %s, want %s", sni, got, want)
		}
	}
	d := websocket.Dialer{TLSClientConfig: &tls.Config{ServerName: "a.example.com", RootCAs: pool}, HandshakeTimeout: 5 * time.Second}
	ws, _, err := d.Dial("wss://"+addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	wsEcho(t, ws, "before", "web-0:before")

	if _, err := r.a.Apply([]config.Listener{listener(a2)}); err != nil {
		t.Fatal(err)
	}
	if got := served("a.example.com"); got != "a-2" {
		t.Errorf("after the rotation: served %s, want a-2", got)
	}
	wsEcho(t, ws, "after", "web-0:after") // the same connection, on the same listener

	bad := listener(a2)
	bad.HTTP.TLS.Certificates[0].KeyPEM = string(a1.KeyPEM) // the key of another certificate
	if _, err := r.a.Apply([]config.Listener{bad}); err == nil || !strings.Contains(err.Error(), "certificates[0].certPEM") {
		t.Fatalf("a mismatched pair: %v, want the validation error", err)
	}
	if got := served("a.example.com"); got != "a-2" {
		t.Errorf("after a refused pair: served %s, want a-2", got)
	}
	wsEcho(t, ws, "still", "web-0:still")
}
