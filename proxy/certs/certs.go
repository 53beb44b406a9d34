package certs

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Source yields the current certificate of one pair.
type Source interface {
	Certificate() *tls.Certificate
}

// Static is a certificate that does not change.
type Static struct{ cert *tls.Certificate }

// FromPEM parses a PEM certificate chain and its key. The error says what
// is wrong without quoting the key.
func FromPEM(certPEM, keyPEM []byte) (*Static, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("parse certificate and key: %w", err)
	}
	return &Static{cert: &cert}, nil
}

// Certificate implements Source.
func (s *Static) Certificate() *tls.Certificate { return s.cert }

// Files serves a certificate from PEM files and reloads it when either
// file changes, checked at most once a second on the handshake path, so
// that a renewed certificate needs no restart. A bad new pair is reported
// to OnError and the last good certificate stays in use.
type Files struct {
	CertFile, KeyFile string
	// OnError, if set, is told of a reload that failed.
	OnError func(error)
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu      sync.Mutex // guards the fields below
	cert    *tls.Certificate
	modCert time.Time
	modKey  time.Time
	checked time.Time
}

// NewFiles loads the pair once, so that a bad pair fails at start.
func NewFiles(certFile, keyFile string) (*Files, error) {
	f := &Files{CertFile: certFile, KeyFile: keyFile}
	if err := f.reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// reload reads the pair if either file changed. f.mu is held, or f is not
// shared yet.
func (f *Files) reload() error {
	ci, err := os.Stat(f.CertFile)
	if err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	ki, err := os.Stat(f.KeyFile)
	if err != nil {
		return fmt.Errorf("certificate key: %w", err)
	}
	if f.cert != nil && ci.ModTime().Equal(f.modCert) && ki.ModTime().Equal(f.modKey) {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return fmt.Errorf("load certificate %s: %w", f.CertFile, err)
	}
	f.cert, f.modCert, f.modKey = &cert, ci.ModTime(), ki.ModTime()
	return nil
}

// Certificate implements Source.
func (f *Files) Certificate() *tls.Certificate {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now
	if f.Now != nil {
		now = f.Now
	}
	if t := now(); t.Sub(f.checked) >= time.Second {
		f.checked = t
		if err := f.reload(); err != nil && f.OnError != nil {
			f.OnError(err)
		}
	}
	return f.cert
}

// Entry is one certificate and the server names it serves: exact names or
// "*." wildcards, lower-case; none makes it the default.
type Entry struct {
	Hostnames []string
	Source    Source
}

// Set is an immutable index of Entries by server name.
type Set struct {
	exact map[string][]Source
	// wild is keyed by the wildcard's suffix with its dot (".example.com").
	wild  map[string][]Source
	def   []Source
	first Source
}

// NewSet indexes entries. Entries naming the same hostname are offered in
// their order: the first the client supports (by its signature schemes and
// curves) wins. It fails on an entry without a Source or with a hostname
// that is not a name or wildcard.
func NewSet(entries []Entry) (*Set, error) {
	s := &Set{exact: map[string][]Source{}, wild: map[string][]Source{}}
	var errs []error
	for i, e := range entries {
		if e.Source == nil {
			errs = append(errs, fmt.Errorf("certificate %d: no source", i))
			continue
		}
		if s.first == nil {
			s.first = e.Source
		}
		if len(e.Hostnames) == 0 {
			s.def = append(s.def, e.Source)
		}
		for _, h := range e.Hostnames {
			switch suffix, wild := strings.CutPrefix(h, "*"); {
			case h == "" || h != strings.ToLower(h) || strings.Contains(suffix, "*"):
				errs = append(errs, fmt.Errorf("certificate %d: hostname %q: want a lower-case name or a \"*.\" wildcard", i, h))
			case wild && !strings.HasPrefix(suffix, ".") || wild && len(suffix) < 2:
				errs = append(errs, fmt.Errorf("certificate %d: hostname %q: a wildcard is \"*.\" and a domain", i, h))
			case wild:
				s.wild[suffix] = append(s.wild[suffix], e.Source)
			default:
				s.exact[h] = append(s.exact[h], e.Source)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// Empty reports whether the set has no certificate (every handshake
// then fails).
func (s *Set) Empty() bool { return s == nil || s.first == nil }

// candidates returns the sources for a server name, as the package doc
// orders them. It allocates nothing.
func (s *Set) candidates(name string) []Source {
	if name != "" {
		if c := s.exact[name]; c != nil {
			return c
		}
		// The longest suffix first: drop one label at a time.
		for i := strings.IndexByte(name, '.'); i >= 0; {
			if c := s.wild[name[i:]]; c != nil && i > 0 {
				return c
			}
			j := strings.IndexByte(name[i+1:], '.')
			if j < 0 {
				break
			}
			i += 1 + j
		}
	}
	return s.def
}

// For returns the certificate for a handshake, or nil when the set is
// empty.
func (s *Set) For(hello *tls.ClientHelloInfo) *tls.Certificate {
	if s.Empty() {
		return nil
	}
	name := ""
	if hello != nil {
		name = normalise(hello.ServerName)
	}
	c := s.candidates(name)
	if len(c) == 0 {
		return s.first.Certificate()
	}
	if len(c) > 1 && hello != nil {
		for _, src := range c {
			if cert := src.Certificate(); cert != nil && hello.SupportsCertificate(cert) == nil {
				return cert
			}
		}
	}
	return c[0].Certificate()
}

// normalise lower-cases a server name and drops a trailing dot, without
// allocating when it is already so.
func normalise(name string) string {
	name = strings.TrimSuffix(name, ".")
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(name)
		}
	}
	return name
}

// Store holds a listener's current Set.
type Store struct {
	cur atomic.Pointer[Set]
}

// NewStore returns a store serving s.
func NewStore(s *Set) *Store {
	st := &Store{}
	st.cur.Store(s)
	return st
}

// Set replaces the set that later handshakes use.
func (st *Store) Set(s *Set) { st.cur.Store(s) }

// Current returns the set in use.
func (st *Store) Current() *Set { return st.cur.Load() }

// errNoCertificate fails a handshake on a listener with no certificate.
var errNoCertificate = errors.New("certs: the listener has no certificate")

// GetCertificate implements tls.Config.GetCertificate.
func (st *Store) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := st.cur.Load().For(hello); c != nil {
		return c, nil
	}
	return nil, errNoCertificate
}

// TLSConfig returns a server config that takes its certificates from the
// store and offers protos by ALPN (h2 and http/1.1 for an HTTP listener).
func (st *Store) TLSConfig(protos ...string) *tls.Config {
	return &tls.Config{GetCertificate: st.GetCertificate, NextProtos: protos, MinVersion: tls.VersionTLS12}
}
