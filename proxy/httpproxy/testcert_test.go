package httpproxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// selfSigned returns PEM certificate and key for 127.0.0.1 and localhost.
func selfSigned(t testing.TB, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func TestCertFilesReload(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	write := func(cn string) {
		c, k := selfSigned(t, cn)
		os.WriteFile(cf, c, 0o600)
		os.WriteFile(kf, k, 0o600)
	}
	write("first")
	c, err := NewCertFiles(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	cn := func() string {
		crt, err := c.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		x, _ := x509.ParseCertificate(crt.Certificate[0])
		return x.Subject.CommonName
	}
	if got := cn(); got != "first" {
		t.Fatalf("got %q, want first", got)
	}
	time.Sleep(1100 * time.Millisecond)
	write("second")
	later := time.Now().Add(2 * time.Second)
	os.Chtimes(cf, later, later)
	os.Chtimes(kf, later, later)
	if got := cn(); got != "second" {
		t.Fatalf("after rotation: got %q, want second", got)
	}
	// A broken pair keeps the last good certificate.
	var reported error
	c.OnError = func(err error) { reported = err }
	os.WriteFile(kf, []byte("garbage"), 0o600)
	later = later.Add(2 * time.Second)
	os.Chtimes(kf, later, later)
	time.Sleep(1100 * time.Millisecond)
	if got := cn(); got != "second" || reported == nil {
		t.Fatalf("after a bad key: got %q (err %v), want second and an error", got, reported)
	}
	if _, err := NewCertFiles(cf, filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing key accepted")
	}
}
