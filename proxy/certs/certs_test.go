package certs

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/internal/testcert"
)

func static(t *testing.T, cn string) (*Static, testcert.Pair) {
	t.Helper()
	p := testcert.New(t, cn, cn)
	s, err := FromPEM(p.CertPEM, p.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return s, p
}

func cnOf(t *testing.T, c *tls.Certificate) string {
	t.Helper()
	if c == nil {
		return "<nil>"
	}
	if c.Leaf == nil {
		t.Fatal("certificate without a parsed leaf")
	}
	return c.Leaf.Subject.CommonName
}

func TestSetSelection(t *testing.T) {
	exact, _ := static(t, "www.example.com")
	wild, _ := static(t, "wild.example.com")
	deeper, _ := static(t, "wild.b.example.com")
	def, _ := static(t, "default")
	s, err := NewSet([]Entry{
		{Hostnames: []string{"*.example.com"}, Source: wild},
		{Hostnames: []string{"www.example.com"}, Source: exact},
		{Hostnames: []string{"*.b.example.com"}, Source: deeper},
		{Source: def},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ sni, want string }{
		{"www.example.com", "www.example.com"},
		{"WWW.Example.COM.", "www.example.com"}, // case and the root's dot do not matter
		{"a.example.com", "wild.example.com"},
		{"x.y.example.com", "wild.example.com"}, // a wildcard covers any number of labels
		{"a.b.example.com", "wild.b.example.com"},
		{"b.example.com", "wild.example.com"}, // "*.b.example.com" needs a label before it
		{"example.com", "default"},
		{"other.org", "default"},
		{"", "default"}, // no SNI
	} {
		if got := cnOf(t, s.For(&tls.ClientHelloInfo{ServerName: c.sni})); got != c.want {
			t.Errorf("SNI %q: got %s, want %s", c.sni, got, c.want)
		}
	}
	// Without a default, a name no entry covers gets the first entry.
	s, err = NewSet([]Entry{{Hostnames: []string{"www.example.com"}, Source: exact}, {Hostnames: []string{"*.example.com"}, Source: wild}})
	if err != nil {
		t.Fatal(err)
	}
	if got := cnOf(t, s.For(&tls.ClientHelloInfo{ServerName: "other.org"})); got != "www.example.com" {
		t.Errorf("no default: got %s, want the first entry's", got)
	}
	empty, err := NewSet(nil)
	if err != nil || !empty.Empty() || empty.For(&tls.ClientHelloInfo{}) != nil {
		t.Fatalf("empty set: %v, %v", empty, err)
	}
}

func TestSetRefusesBadEntries(t *testing.T) {
	good, _ := static(t, "a")
	_, err := NewSet([]Entry{
		{Hostnames: []string{"Upper.example.com"}, Source: good},
		{Hostnames: []string{"*example.com"}, Source: good},
		{Hostnames: []string{"a.*.example.com"}, Source: good},
		{Hostnames: []string{"*."}, Source: good},
		{Hostnames: []string{"ok.example.com"}},
	})
	if err == nil {
		t.Fatal("bad entries accepted")
	}
	for _, want := range []string{`"Upper.example.com"`, `"*example.com"`, `"a.*.example.com"`, `"*."`, "certificate 4: no source"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestFromPEMErrors(t *testing.T) {
	p := testcert.New(t, "a", "a")
	other := testcert.New(t, "b", "b")
	for name, c := range map[string][2][]byte{
		"garbage":        {[]byte("Hello world\n"), []byte("Hello world\n")},
		"key of another": {p.CertPEM, other.KeyPEM},
		"no key":         {p.CertPEM, nil},
	} {
		_, err := FromPEM(c[0], c[1])
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), "PRIVATE KEY-----") {
			t.Errorf("%s: the error quotes the key: %v", name, err)
		}
	}
}

// TestSetPicksWhatTheClientSupports: with an ECDSA and an Ed25519 pair for
// one name, a client that only accepts Ed25519 gets that one.
func TestSetPicksWhatTheClientSupports(t *testing.T) {
	ec, _ := static(t, "ecdsa")
	ed := ed25519Pair(t, "ed25519")
	s, err := NewSet([]Entry{{Hostnames: []string{"a.example"}, Source: ec}, {Hostnames: []string{"a.example"}, Source: ed}})
	if err != nil {
		t.Fatal(err)
	}
	hello := &tls.ClientHelloInfo{ServerName: "a.example", SupportedVersions: []uint16{tls.VersionTLS13},
		SignatureSchemes: []tls.SignatureScheme{tls.Ed25519}}
	if got := cnOf(t, s.For(hello)); got != "ed25519" {
		t.Fatalf("got %s, want ed25519", got)
	}
	hello.SignatureSchemes = []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}
	hello.SupportedCurves = []tls.CurveID{tls.CurveP256}
	if got := cnOf(t, s.For(hello)); got != "ecdsa" {
		t.Fatalf("got %s, want ecdsa", got)
	}
}

func TestSetForAllocatesNothing(t *testing.T) {
	var entries []Entry
	for i := range 100 {
		src, _ := static(t, fmt.Sprintf("h%d.example.com", i))
		entries = append(entries, Entry{Hostnames: []string{fmt.Sprintf("h%d.example.com", i), fmt.Sprintf("*.w%d.example.com", i)}, Source: src})
	}
	s, err := NewSet(entries)
	if err != nil {
		t.Fatal(err)
	}
	hellos := []*tls.ClientHelloInfo{{ServerName: "h42.example.com"}, {ServerName: "a.b.w7.example.com"}, {ServerName: "none.org"}}
	if n := testing.AllocsPerRun(100, func() {
		for _, h := range hellos {
			s.For(h)
		}
	}); n != 0 {
		t.Fatalf("For allocates %.1f times", n)
	}
}

// TestFilesReload: a rewritten pair is served once the check interval
// has passed on the injected clock; a broken one keeps the last good
// certificate and is reported.
func TestFilesReload(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	mod := time.Now().Add(-time.Hour)
	write := func(cn string, key []byte) {
		t.Helper()
		p := testcert.New(t, cn, cn)
		if key == nil {
			key = p.KeyPEM
		}
		if err := os.WriteFile(cf, p.CertPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(kf, key, 0o600); err != nil {
			t.Fatal(err)
		}
		mod = mod.Add(time.Minute) // a distinct modification time, whatever the file system's resolution
		os.Chtimes(cf, mod, mod)
		os.Chtimes(kf, mod, mod)
	}
	write("first", nil)
	f, err := NewFiles(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	f.Now = func() time.Time { return now }
	var reported []error
	f.OnError = func(err error) { reported = append(reported, err) }
	if got := cnOf(t, f.Certificate()); got != "first" {
		t.Fatalf("got %s, want first", got)
	}
	write("second", nil)
	now = now.Add(500 * time.Millisecond)
	if got := cnOf(t, f.Certificate()); got != "first" {
		t.Fatalf("before the check interval: got %s, want first", got)
	}
	now = now.Add(time.Second)
	if got := cnOf(t, f.Certificate()); got != "second" {
		t.Fatalf("after rotation: got %s, want second", got)
	}
	write("third", []byte("garbage"))
	now = now.Add(time.Second)
	if got := cnOf(t, f.Certificate()); got != "second" || len(reported) != 1 {
		t.Fatalf("after a bad key: got %s (errors %v), want second and one error", got, reported)
	}
	if _, err := NewFiles(cf, filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing key was accepted")
	}
}

// TestStoreRotation: real TLS handshakes over loopback. A handshake after
// Store.Set gets the new certificate; a connection made before keeps
// working with the old one.
func TestStoreRotation(t *testing.T) {
	oldSrc, oldPair := static(t, "a.example")
	newSrc, newPair := static(t, "a.example")
	set := func(src Source) *Set {
		s, err := NewSet([]Entry{{Hostnames: []string{"a.example"}, Source: src}})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	st := NewStore(set(oldSrc))
	ln, err := tls.Listen("tcp", "127.0.0.1:0", st.TLSConfig("http/1.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	dial := func(p testcert.Pair) (*tls.Conn, error) {
		return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(),
			&tls.Config{ServerName: "a.example", RootCAs: p.Pool, NextProtos: []string{"http/1.1"}})
	}
	before, err := dial(oldPair)
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	st.Set(set(newSrc))
	if _, err := dial(oldPair); err == nil {
		t.Fatal("a handshake after the rotation was served the old certificate")
	}
	after, err := dial(newPair)
	if err != nil {
		t.Fatalf("a handshake after the rotation: %v", err)
	}
	after.Close()
	// The connection made before still carries data.
	before.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := before.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(before, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("the earlier connection after the rotation: %q, %v", buf, err)
	}
	// An empty set fails the handshake instead of serving nothing.
	empty, _ := NewSet(nil)
	st.Set(empty)
	if _, err := dial(newPair); err == nil {
		t.Fatal("a handshake with no certificate succeeded")
	}
	before.Close()
	ln.Close()
	<-done
}

func BenchmarkSetFor(b *testing.B) {
	var entries []Entry
	for i := range 1000 {
		entries = append(entries, Entry{Hostnames: []string{fmt.Sprintf("h%d.example.com", i), fmt.Sprintf("*.w%d.example.com", i)}, Source: &Static{cert: &tls.Certificate{}}})
	}
	s, err := NewSet(entries)
	if err != nil {
		b.Fatal(err)
	}
	hellos := []*tls.ClientHelloInfo{{ServerName: "h420.example.com"}, {ServerName: "a.b.w7.example.com"}, {ServerName: "none.org"}}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.For(hellos[i%len(hellos)])
	}
}

func ed25519Pair(t *testing.T, cn string) Source {
	t.Helper()
	p := testcert.NewEd25519(t, cn, "a.example")
	s, err := FromPEM(p.CertPEM, p.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
