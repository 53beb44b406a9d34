package h2relay

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2cEndpoint is an x/net HTTP/2 server (net/http's, h2c with prior
// knowledge) counting the TCP connections it accepted.
type h2cEndpoint struct {
	addr  string
	conns atomic.Int64
}

func startH2CEndpoint(t testing.TB, h http.Handler) *h2cEndpoint {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &h2cEndpoint{addr: ln.Addr().String()}
	protos := new(http.Protocols)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: protos, ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			e.conns.Add(1)
		}
	}}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return e
}

// newRoundTripper returns a Server for round trips only, closed when the
// test ends.
func newRoundTripper(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.Router == nil {
		cfg.Router = &testRouter{}
	}
	srv := New(cfg)
	t.Cleanup(func() { srv.Close() })
	return srv
}

// upActive returns the streams open or reserved on the pooled connections
// to addr.
func upActive(s *Server, addr string) int {
	s.pool.mu.Lock()
	defer s.pool.mu.Unlock()
	n := 0
	if ep := s.pool.eps[addr]; ep != nil {
		for _, up := range ep.conns {
			up.mu.Lock()
			n += up.active
			up.mu.Unlock()
		}
	}
	return n
}

// rawEndpoint is an HTTP/2 endpoint written with a Framer, for what a
// real server does not do on demand. It reports what it sees on events:
// "conn" per connection, then each frame's type ("HEADERS", "GOAWAY", ...),
// "eof" when the relay closed it.
type rawEndpoint struct {
	addr   string
	events chan string
	// onHeaders answers a request header (one goroutine per connection).
	onHeaders func(fr *http2.Framer, f *http2.MetaHeadersFrame)
}

func startRawEndpoint(t testing.TB, onHeaders func(fr *http2.Framer, f *http2.MetaHeadersFrame)) *rawEndpoint {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &rawEndpoint{addr: ln.Addr().String(), events: make(chan string, 256), onHeaders: onHeaders}
	tl := &trackingListener{Listener: ln}
	var wg sync.WaitGroup
	acceptLoop(tl, &wg, e.serve)
	t.Cleanup(func() {
		tl.Close()
		tl.cut()
		wg.Wait()
	})
	return e
}

func (e *rawEndpoint) event(s string) {
	select {
	case e.events <- s:
	default:
	}
}

func (e *rawEndpoint) serve(c net.Conn) {
	defer c.Close()
	e.event("conn")
	pre := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c, pre); err != nil {
		e.event("eof")
		return
	}
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.WriteSettings()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			e.event("eof")
			return
		}
		e.event(f.Header().Type.String())
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			if e.onHeaders != nil {
				e.onHeaders(fr, f)
			}
		}
	}
}

// expectEvents reads e's events until want were all seen in order (others
// may come between), failing on one of forbid or after 5s.
func (e *rawEndpoint) expectEvents(t *testing.T, forbid []string, want ...string) {
	t.Helper()
	timeout := time.After(15 * time.Second) // a guard against a hang, generous for a loaded machine under -race
	for len(want) > 0 {
		select {
		case ev := <-e.events:
			for _, f := range forbid {
				if ev == f {
					t.Fatalf("endpoint saw %s (still waiting for %v)", ev, want)
				}
			}
			if ev == want[0] {
				want = want[1:]
			}
		case <-timeout:
			t.Fatalf("endpoint events: timed out waiting for %v", want)
		}
	}
}

// recv returns what ch gives, failing the test after 10s.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// fetched is the outcome of a request made by fetch.
type fetched struct {
	status int
	body   string
	err    error
}

// fetch runs do on a goroutine of its own, reads the response's body and
// closes it, and reports on the channel returned.
func fetch(do func() (*http.Response, error)) <-chan fetched {
	ch := make(chan fetched, 1)
	go func() {
		resp, err := do()
		if err != nil {
			ch <- fetched{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		ch <- fetched{resp.StatusCode, string(b), err}
	}()
	return ch
}

// newRequest makes a request for path on the endpoint addr, for RoundTrip.
func newRequest(t testing.TB, ctx context.Context, method, addr, path string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
