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

// h1Pool is one endpoint's HTTP/1.1 keep-alive connections (a Transport of
// its own, so that a drain closes that endpoint's and nothing else), and
// the requests in flight on them, so that a drain knows when they are
// done.
type h1Pool struct {
	t *http.Transport

	mu       sync.Mutex
	inflight int
	idle     chan struct{} // set by drain; closed once inflight is 0
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
	p.t.CloseIdleConnections()
	select {
	case <-idle:
	case <-ctx.Done():
	}
	p.t.CloseIdleConnections()
}

// h1Pool returns addr's pool, making it on first use.
func (l *Listener) h1Pool(addr string) *h1Pool {
	if p, ok := l.h1.Load(addr); ok {
		return p.(*h1Pool)
	}
	t := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := l.cfg.Dial(ctx, network, addr)
			if err != nil {
				return nil, &upstream.DialError{Addr: addr, Err: err}
			}
			return c, nil
		},
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 0,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
	}
	t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // HTTP/1 only
	actual, _ := l.h1.LoadOrStore(addr, &h1Pool{t: t})
	return actual.(*h1Pool)
}
