package proxytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"testing"
	"time"
)

// SelfSigned returns a certificate for the DNS names (exact or
// "*.example.com"), signed by its own key, and the certificate itself
// for a client's RootCAs.
func SelfSigned(t testing.TB, names ...string) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: names[0]},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              names,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf
}

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
	cert, leaf := SelfSigned(t, names...)
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	s := &TLSServer{Name: name, Cert: leaf}
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
