package proxytest

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/internal/testcert"
)

// TLSServer is a Server that completes a TLS handshake with a
// certificate of its own on each connection, then writes its name and a
// newline and echoes what it reads.
type TLSServer struct {
	*Server
	Name string
	Cert *x509.Certificate
}

// StartTLSServer starts a TLSServer named name whose certificate is for
// the DNS names.
func StartTLSServer(t testing.TB, name string, names ...string) *TLSServer {
	t.Helper()
	pair := testcert.New(t, names[0], names...)
	cfg := &tls.Config{Certificates: []tls.Certificate{pair.Cert}}
	s := &TLSServer{Name: name, Cert: pair.Cert.Leaf}
	s.Server = StartServer(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(c, cfg)
		if err := tc.Handshake(); err != nil {
			return
		}
		c.SetDeadline(time.Time{})
		if _, err := io.WriteString(tc, name+"\n"); err != nil {
			return
		}
		io.Copy(tc, tc)
	})
	return s
}

// Pool returns a certificate pool of the servers' certificates.
func Pool(servers ...*TLSServer) *x509.CertPool {
	p := x509.NewCertPool()
	for _, s := range servers {
		p.AddCert(s.Cert)
	}
	return p
}
