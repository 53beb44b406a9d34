package httpproxy

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/longhaul-proxy/longhaul/proxy/upstream"
)

// h1Pool is one endpoint's HTTP/1.1 keep-alive connections (a Transport and
// an h1Client of its own, so that a drain closes that endpoint's and
// nothing else), and the requests in flight on them, so that a drain knows
// when they are done.
type h1Pool struct {
	t *http.Transport // requests with a body (or Expect: 100-continue)
	c *h1Client       // the others, on the caller's goroutine

	mu       sync.Mutex
	inflight int
	idle     chan struct{} // set by drain; closed once inflight is 0
}

// roundTrip sends out over one of the pool's connections: a request with
// a body, whose upload may overlap the response, through the Transport,
// the others through the client that needs no goroutine of its own.
func (p *h1Pool) roundTrip(out *http.Request) (*http.Response, error) {
	if out.Body != nil && out.Body != http.NoBody || out.Header.Get("Expect") != "" {
		return p.t.RoundTrip(out)
	}
	return p.c.roundTrip(out)
}

// closeIdle closes the pool's idle connections; with forGood, those busy
// now are closed when their requests end.
func (p *h1Pool) closeIdle(forGood bool) {
	p.t.CloseIdleConnections()
	p.c.closeIdle(forGood)
}

func (p *h1Pool) begin() {
	p.mu.Lock()
	p.inflight++
	p.mu.Unlock()
}

func (p *h1Pool) end() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inflight--; p.inflight == 0 && p.idle != nil {
		close(p.idle)
		p.idle = nil
	}
}

// drain closes the idle connections now and the others once their
// requests are done, or at ctx's end, whichever comes first. The pool is no
// longer handed out (h1Pool dropped it), so nothing new starts on it but a
// request that had it already.
func (p *h1Pool) drain(ctx context.Context) {
	p.mu.Lock()
	idle := make(chan struct{})
	if p.inflight == 0 {
		close(idle)
	} else {
		p.idle = idle
	}
	p.mu.Unlock()
	p.closeIdle(true)
	select {
	case <-idle:
	case <-ctx.Done():
	}
	p.closeIdle(true)
}

// The idle connections kept per endpoint, and how long each is kept idle.
const (
	h1MaxIdle     = 256
	h1IdleTimeout = 90 * time.Second
)

// h1Pool returns addr's pool, making it on first use.
func (l *Listener) h1Pool(addr string) *h1Pool {
	if p, ok := l.h1.Load(addr); ok {
		return p.(*h1Pool)
	}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := l.cfg.Dial(ctx, network, addr)
		if err != nil {
			return nil, &upstream.DialError{Addr: addr, Err: err}
		}
		return c, nil
	}
	t := &http.Transport{
		DialContext:           dial,
		MaxIdleConnsPerHost:   h1MaxIdle,
		IdleConnTimeout:       h1IdleTimeout,
		ResponseHeaderTimeout: 0,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
	}
	t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // HTTP/1 only
	c := &h1Client{
		dial:    func(ctx context.Context) (net.Conn, error) { return dial(ctx, "tcp", addr) },
		maxIdle: h1MaxIdle, idleTimeout: h1IdleTimeout,
	}
	actual, _ := l.h1.LoadOrStore(addr, &h1Pool{t: t, c: c})
	return actual.(*h1Pool)
}
