// Package proxytest holds what the tests of longhaul's proxy packages
// share: loopback servers, clients, endpoint lists and assertions. It
// imports none of the listeners, so that their own tests may use it.
package proxytest

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/longhaul-proxy/longhaul/discovery"
	"github.com/longhaul-proxy/longhaul/internal/guard"
)

// Timeouts of the tests of timers: what a test sets, and how far past it
// the proxy may act (timers, scheduling under -race).
const (
	ShortTimeout = 300 * time.Millisecond
	Slack        = time.Second
)

// Stream is a deterministic pseudo-random byte stream (AES-CTR over zeros):
// fast even under the race detector, and no two chunks alike, so that lost,
// duplicated or reordered bytes change the hash.
func Stream(seed byte, n int64) io.Reader {
	key := bytes.Repeat([]byte{seed}, 16)
	blk, _ := aes.NewCipher(key)
	return io.LimitReader(cipher.StreamReader{S: cipher.NewCTR(blk, make([]byte, 16)), R: zeros{}}, n)
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// StreamHash is the SHA-256 of Stream(seed, n).
func StreamHash(seed byte, n int64) [32]byte {
	h := sha256.New()
	io.Copy(h, Stream(seed, n))
	return [32]byte(h.Sum(nil))
}

// Endpoints makes the snapshot of ready endpoints at addrs for service.
func Endpoints(t testing.TB, service string, addrs ...string) *discovery.Snapshot {
	t.Helper()
	eps := make([]discovery.Endpoint, len(addrs))
	for i, a := range addrs {
		eps[i] = discovery.Endpoint{Address: a, Ready: true, Serving: true}
	}
	snap, err := discovery.NewSnapshot(service, eps)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// Updater is what SetEndpoints updates (an upstream.Upstream).
type Updater interface {
	Name() string
	Update(*discovery.Snapshot) error
}

// SetEndpoints gives up the ready endpoints at addrs.
func SetEndpoints(t testing.TB, up Updater, addrs ...string) {
	t.Helper()
	if err := up.Update(Endpoints(t, up.Name(), addrs...)); err != nil {
		t.Fatal(err)
	}
}

// Server accepts TCP connections on loopback and runs a function on each.
type Server struct {
	ln net.Listener
	wg sync.WaitGroup
	n  atomic.Int64
}

// StartServer starts a Server running fn on each connection; the test's
// cleanup closes it and waits for every fn.
func StartServer(t testing.TB, fn func(c *net.TCPConn)) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.n.Add(1)
			s.wg.Add(1)
			go func() { defer s.wg.Done(); defer c.Close(); fn(c.(*net.TCPConn)) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

// Addr returns the server's address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Accepted returns how many connections the server accepted.
func (s *Server) Accepted() int64 { return s.n.Load() }

// Close stops accepting: the address refuses from now on.
func (s *Server) Close() { s.ln.Close() }

// Echo writes back what it reads.
func Echo(c *net.TCPConn) { io.Copy(c, c) }

// Dial connects to addr; the test's cleanup closes the connection.
func Dial(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// EchoRound writes msg on c and reads it back, within 5s.
func EchoRound(c net.Conn, msg string) error {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo: got %q, want %q", buf, msg)
	}
	return nil
}

// SlotWait is how long a test watches a connection above maxConnections
// for an answer it must not get yet: it waits in the backlog, unanswered.
const SlotWait = 300 * time.Millisecond

// ExpectWaiting asserts that c gets nothing, neither bytes nor a close nor
// a reset, for SlotWait: it waits for a slot.
func ExpectWaiting(t testing.TB, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(SlotWait))
	n, err := c.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s above the limit: got %d bytes, %v; want it left waiting", what, n, err)
	}
	c.SetReadDeadline(time.Time{})
}

// CaptureGuard sends guard's reports to an observer for the test.
func CaptureGuard(t testing.TB) *observer.ObservedLogs {
	core, logs := observer.New(zap.ErrorLevel)
	guard.SetLogger(zap.New(core))
	t.Cleanup(func() { guard.SetLogger(nil) })
	return logs
}

// AssertWithin fails unless took is in [lo, hi].
func AssertWithin(t testing.TB, what string, took, lo, hi time.Duration) {
	t.Helper()
	t.Logf("%s after %v", what, took)
	if took < lo || took > hi {
		t.Errorf("%s after %v, want between %v and %v", what, took, lo, hi)
	}
}

// WaitClosed reads r (of c) until it ends (EOF or reset) and returns how
// long that took from since; it fails if c stays open for 10s.
func WaitClosed(t testing.TB, c net.Conn, r io.Reader, since time.Time) time.Duration {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, r)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the connection is still open after 10s")
	}
	return time.Since(since)
}

// CheckPerClientLimit asserts a listener's per-client connection bound of
// 2 at addr: a client's third connection is closed at once and counted in
// rejected; another address is served; the slot comes back when one of the
// client's connections ends. served checks that a connection is served.
func CheckPerClientLimit(t *testing.T, addr string, rejected prometheus.Counter, served func(c net.Conn) error) {
	dialFrom := func(ip string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(5 * time.Second))
		return c
	}
	first, second := dialFrom("127.0.0.1"), dialFrom("127.0.0.1")
	for i, c := range []net.Conn{first, second} {
		if err := served(c); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	third := dialFrom("127.0.0.1")
	start := time.Now()
	if n, err := third.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("third connection from one address: got %d bytes, %v; want it closed", n, err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("third connection closed after %v, want at once (within 1s)", took)
	}
	if n := testutil.ToFloat64(rejected); n != 1 {
		t.Errorf("rejected per_client %v, want 1", n)
	}
	if err := served(dialFrom("127.0.0.2")); err != nil {
		t.Errorf("a connection from another address: %v", err)
	}
	first.Close()
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if err = served(dialFrom("127.0.0.1")); err == nil {
			break
		}
	}
	if err != nil {
		t.Errorf("no connection from the address after one of its two closed: %v", err)
	}
}
