package h2relay

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

var errPoolClosed = errors.New("h2relay: server closed")

// maxGetRounds bounds the dials one stream waits for when others take the
// new connections' slots first.
const maxGetRounds = 64

// pool holds the upstream connections of each endpoint. Its mu comes
// before an upstream connection's.
type pool struct {
	srv    *Server
	mu     sync.Mutex
	eps    map[string]*endpoint
	closed bool
}

type endpoint struct {
	conns []*upConn
	dial  *dialCall // the dial in progress, if any
}

type dialCall struct {
	done chan struct{}
	err  error
}

func newPool(srv *Server) *pool {
	return &pool{srv: srv, eps: make(map[string]*endpoint)}
}

// reserve returns a connection to addr with a stream slot reserved, or nil
// when none has room (without dialling).
func (p *pool) reserve(addr string) *upConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ep := p.eps[addr]; ep != nil {
		for _, up := range ep.conns {
			if up.reserve() {
				return up
			}
		}
	}
	return nil
}

// get returns a connection to addr with a stream slot reserved, dialling
// one when every connection is full; concurrent callers share a dial, and
// those it had no room for dial the next one.
func (p *pool) get(ctx context.Context, addr string) (*upConn, error) {
	for range maxGetRounds {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, errPoolClosed
		}
		ep := p.eps[addr]
		if ep == nil {
			ep = &endpoint{}
			p.eps[addr] = ep
		}
		for _, up := range ep.conns {
			if up.reserve() {
				p.mu.Unlock()
				return up, nil
			}
		}
		dc := ep.dial
		if dc == nil {
			dc = &dialCall{done: make(chan struct{})}
			ep.dial = dc
			p.mu.Unlock()
			up, err := p.dial(ctx, addr)
			p.mu.Lock()
			ep.dial = nil
			if err == nil {
				if p.closed {
					err = errPoolClosed
					up.abort()
				} else {
					ep.conns = append(ep.conns, up)
					p.eps[addr] = ep
				}
			}
			dc.err = err
			close(dc.done)
			p.mu.Unlock()
			if err != nil {
				return nil, err
			}
			continue
		}
		p.mu.Unlock()
		select {
		case <-dc.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if dc.err != nil {
			return nil, dc.err
		}
	}
	return nil, fmt.Errorf("no stream slot on connections to %s", addr)
}

// dial connects to addr and waits for its first SETTINGS, within the
// connect timeout.
func (p *pool) dial(ctx context.Context, addr string) (*upConn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.srv.cfg.ConnectTimeout)
	defer cancel()
	nc, err := p.srv.cfg.Dial(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	up := newUpConn(p.srv, addr, nc)
	up.start()
	select {
	case <-up.settingsCh:
		up.mu.Lock()
		refuses := up.peerMaxStreams == 0
		up.mu.Unlock()
		if refuses {
			up.abort()
			return nil, fmt.Errorf("%s accepts no stream (SETTINGS_MAX_CONCURRENT_STREAMS 0)", addr)
		}
		return up, nil
	case <-up.readerDone:
		return nil, fmt.Errorf("http2 handshake with %s: connection closed", addr)
	case <-ctx.Done():
		up.abort()
		return nil, fmt.Errorf("http2 handshake with %s: %w", addr, ctx.Err())
	}
}

// remove forgets a connection that is over.
func (p *pool) remove(up *upConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ep := p.eps[up.addr]
	if ep == nil {
		return
	}
	for i, c := range ep.conns {
		if c == up {
			ep.conns = append(ep.conns[:i:i], ep.conns[i+1:]...)
			break
		}
	}
	if len(ep.conns) == 0 && ep.dial == nil {
		delete(p.eps, up.addr)
	}
}

// drain sends GOAWAY on addr's connections, waits for their streams until
// ctx ends, then fails what is left and closes them.
func (p *pool) drain(ctx context.Context, addr string) {
	p.mu.Lock()
	ep := p.eps[addr]
	delete(p.eps, addr)
	var conns []*upConn
	if ep != nil {
		conns = append(conns, ep.conns...)
	}
	p.mu.Unlock()
	for _, up := range conns {
		up.drain()
	}
	for _, up := range conns {
		select {
		case <-up.readerDone:
			continue
		case <-ctx.Done():
		}
		up.failAll(false, "endpoint drained")
		up.abort()
		<-up.readerDone
	}
}

// closeAll closes every connection; no new one is dialled.
func (p *pool) closeAll() {
	p.mu.Lock()
	p.closed = true
	var conns []*upConn
	for _, ep := range p.eps {
		conns = append(conns, ep.conns...)
	}
	p.eps = make(map[string]*endpoint)
	p.mu.Unlock()
	for _, up := range conns {
		up.abort()
	}
	for _, up := range conns {
		<-up.readerDone
	}
}
