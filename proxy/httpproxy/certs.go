package httpproxy

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"
)

// CertFiles serves a certificate from files and reloads it when either
// file changes (checked at most once a second, on the handshake path), so
// that a renewed certificate needs no restart. A bad new pair is logged by
// the caller's OnError and the last good certificate stays in use.
type CertFiles struct {
	CertFile, KeyFile string
	OnError           func(error)

	mu      sync.Mutex
	cert    *tls.Certificate
	modCert time.Time
	modKey  time.Time
	checked time.Time
}

// NewCertFiles loads the pair once, so that a bad pair fails at start.
func NewCertFiles(certFile, keyFile string) (*CertFiles, error) {
	c := &CertFiles{CertFile: certFile, KeyFile: keyFile}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *CertFiles) reload() error {
	ci, err := os.Stat(c.CertFile)
	if err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	ki, err := os.Stat(c.KeyFile)
	if err != nil {
		return fmt.Errorf("certificate key: %w", err)
	}
	if c.cert != nil && ci.ModTime().Equal(c.modCert) && ki.ModTime().Equal(c.modKey) {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return fmt.Errorf("load certificate %s: %w", c.CertFile, err)
	}
	c.cert, c.modCert, c.modKey = &cert, ci.ModTime(), ki.ModTime()
	return nil
}

// GetCertificate implements tls.Config.GetCertificate.
func (c *CertFiles) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.checked) >= time.Second {
		c.checked = now
		if err := c.reload(); err != nil && c.OnError != nil {
			c.OnError(err)
		}
	}
	return c.cert, nil
}

// TLSConfig returns a server TLS config offering h2 and http/1.1 by ALPN.
func (c *CertFiles) TLSConfig() *tls.Config {
	return &tls.Config{GetCertificate: c.GetCertificate, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12}
}
