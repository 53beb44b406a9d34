package httpproxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"

	"github.com/longhaul-proxy/longhaul/internal/guard"
	"github.com/longhaul-proxy/longhaul/proxy/upstream"
)

// h2Pool is an http2.ClientConnPool that keeps the HTTP/2 (h2c) connections
// of each endpoint apart, so that drain can send GOAWAY to one endpoint's
// connections and nothing else. The http2.Transport that uses it retries a
// request that a GOAWAY or REFUSED_STREAM turned away, on a new connection.
type h2Pool struct {
	t       *http2.Transport
	dial    upstream.DialFunc
	timeout time.Duration

	mu    sync.Mutex
	conns map[string][]*http2.ClientConn // by endpoint address
}

func newH2Pool(dial upstream.DialFunc, connectTimeout time.Duration) *h2Pool {
	p := &h2Pool{dial: dial, timeout: connectTimeout, conns: make(map[string][]*http2.ClientConn)}
	p.t = &http2.Transport{
		AllowHTTP:                  true,
		ConnPool:                   p,
		ReadIdleTimeout:            30 * time.Second, // PING a silent connection
		PingTimeout:                10 * time.Second,
		StrictMaxConcurrentStreams: false,
	}
	return p
}

// GetClientConn returns a connection to addr with a stream reserved, dialing
// one when every existing connection is full or going away.
func (p *h2Pool) GetClientConn(req *http.Request, addr string) (*http2.ClientConn, error) {
	p.mu.Lock()
	for _, cc := range p.conns[addr] {
		if cc.ReserveNewRequest() {
			p.mu.Unlock()
			return cc, nil
		}
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(req.Context(), p.timeout)
	defer cancel()
	c, err := p.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, &upstream.DialError{Addr: addr, Err: err}
	}
	cc, err := p.t.NewClientConn(c)
	if err != nil {
		c.Close()
		return nil, &upstream.DialError{Addr: addr, Err: fmt.Errorf("http2 handshake: %w", err)}
	}
	if !cc.ReserveNewRequest() {
		cc.Close()
		return nil, &upstream.DialError{Addr: addr, Err: errors.New("new connection refused a stream")}
	}
	p.mu.Lock()
	p.conns[addr] = append(p.conns[addr], cc)
	p.mu.Unlock()
	return cc, nil
}

// MarkDead forgets a connection that failed or went away.
func (p *h2Pool) MarkDead(cc *http2.ClientConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, list := range p.conns {
		for i, c := range list {
			if c == cc {
				list = append(list[:i:i], list[i+1:]...)
				if len(list) == 0 {
					delete(p.conns, addr)
				} else {
					p.conns[addr] = list
				}
				return
			}
		}
	}
}

// Drain sends GOAWAY on every connection to addr, lets their streams finish
// until ctx ends, then closes them: streams still open are interrupted (the
// proxy ends them toward the client with an error its protocol retries).
func (p *h2Pool) Drain(ctx context.Context, addr string) {
	p.mu.Lock()
	list := p.conns[addr]
	delete(p.conns, addr)
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, cc := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer guard.Recover("drain", func() { cc.Close() })
			if err := cc.Shutdown(ctx); err != nil {
				cc.Close()
			}
		}()
	}
	wg.Wait()
}

// CloseAll closes every connection at once.
func (p *h2Pool) CloseAll() {
	p.mu.Lock()
	all := p.conns
	p.conns = make(map[string][]*http2.ClientConn)
	p.mu.Unlock()
	for _, list := range all {
		for _, cc := range list {
			cc.Close()
		}
	}
}
