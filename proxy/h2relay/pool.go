package h2relay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/longhaul-proxy/longhaul/internal/guard"
)

var errPoolClosed = errors.New("h2relay: server closed")

// maxGetRounds bounds the dials one stream waits for when others take the
// new connections' slots first.
const maxGetRounds = 64

// pool holds the upstream connections of each endpoint. Its mu comes
// before an upstream connection's.
//
// Draining: while DrainEndpoint(addr) runs, addr's endpoint entry stays in
// eps with drains > 0; it takes no new stream and no dial starts for it. A
// dial already under way when a drain starts is doomed (dialCall.drained):
// its connection, whenever it comes, joins no pool; it gets GOAWAY and
// closes (the drain waits for it), and those waiting for it get a
// retryable error. No connection to addr made before DrainEndpoint returns
// escapes its GOAWAY.
type pool struct {
	srv    *Server
	mu     sync.Mutex
	eps    map[string]*endpoint
	closed bool

	// drainMarked, if set (by tests), is called once a drain has marked
	// its endpoint, before it sends GOAWAY.
	drainMarked func(addr string)
}

type endpoint struct {
	conns  []*upConn
	dial   *dialCall // the dial in progress, if any
	drains int       // DrainEndpoint calls under way for this endpoint
}

// dialCall is one dial, shared by whoever waits for a connection to its
// endpoint. Its fields are written under pool.mu before done is closed,
// read after.
type dialCall struct {
	done chan struct{}
	err  error
	// drained: a drain started while the dial was under way; late is its
	// connection, which then got GOAWAY instead of joining the pool.
	drained bool
	late    *upConn
}

func newPool(srv *Server) *pool {
	return &pool{srv: srv, eps: make(map[string]*endpoint)}
}

// reserve returns a connection to addr with a stream slot reserved, or nil
// when none has room (without dialling).
func (p *pool) reserve(addr string) *upConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ep := p.eps[addr]; ep != nil && ep.drains == 0 {
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
// those it had no room for dial the next one. ctx bounds the wait only:
// the dial runs on its own goroutine, within the server's lifetime and
// Config.ConnectTimeout, so that a caller giving up fails no one else.
// Errors: *DialError, an UpstreamError with NotProcessed (addr is being
// drained), ctx's error, or errPoolClosed.
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
		if ep.drains > 0 {
			p.mu.Unlock()
			return nil, notProcessed(addr, "endpoint draining")
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
			p.srv.wg.Add(1)
			go p.dialFor(ep, addr, dc)
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
	return nil, notProcessed(addr, "no stream slot on its connections")
}

// dialFor runs dial dc for endpoint ep and pools its connection, unless
// the server closed or a drain of addr started meanwhile.
func (p *pool) dialFor(ep *endpoint, addr string, dc *dialCall) {
	defer p.srv.wg.Done()
	var up *upConn
	var err error
	if guard.Do("h2relay", func() { up, err = p.dial(p.srv.ctx, addr) }) {
		err = &DialError{Addr: addr, Err: fmt.Errorf("dial %s: panic (recovered)", addr)}
	}
	p.mu.Lock()
	ep.dial = nil
	var late *upConn
	if err == nil {
		switch {
		case p.closed:
			err = errPoolClosed
			up.abort()
		case dc.drained || ep.drains > 0 || p.eps[addr] != ep:
			err = notProcessed(addr, "endpoint drained while connecting")
			late, dc.late = up, up
		default:
			ep.conns = append(ep.conns, up)
		}
	}
	if len(ep.conns) == 0 && ep.drains == 0 && p.eps[addr] == ep {
		delete(p.eps, addr)
	}
	dc.err = err
	close(dc.done)
	p.mu.Unlock()
	if late != nil {
		late.drain() // no stream: GOAWAY, then the close
	}
}

// dial connects to addr and waits for its first SETTINGS, within the
// connect timeout. Its errors are *DialError.
func (p *pool) dial(ctx context.Context, addr string) (*upConn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.srv.cfg.ConnectTimeout)
	defer cancel()
	nc, err := p.srv.cfg.Dial(ctx, "tcp", addr)
	if err != nil {
		return nil, &DialError{Addr: addr, Err: fmt.Errorf("dial %s: %w", addr, err)}
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
			return nil, &DialError{Addr: addr, Err: fmt.Errorf("%s accepts no stream (SETTINGS_MAX_CONCURRENT_STREAMS 0)", addr)}
		}
		return up, nil
	case <-up.readerDone:
		return nil, &DialError{Addr: addr, Err: fmt.Errorf("http2 handshake with %s: connection closed", addr)}
	case <-ctx.Done():
		up.abort()
		return nil, &DialError{Addr: addr, Err: fmt.Errorf("http2 handshake with %s: %w", addr, ctx.Err())}
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
	if len(ep.conns) == 0 && ep.dial == nil && ep.drains == 0 {
		delete(p.eps, up.addr)
	}
}

// drain sends GOAWAY on addr's connections (and on the connection of a
// dial under way, when it comes), ends their streams at plan's pace (see
// endPaced) if plan is not nil, waits for the rest until ctx ends, then
// fails what is left and closes them. While it runs, addr takes no new
// stream.
func (p *pool) drain(ctx context.Context, addr string, plan StreamPlan) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	ep := p.eps[addr]
	if ep == nil {
		ep = &endpoint{}
		p.eps[addr] = ep
	}
	ep.drains++
	conns := slices.Clone(ep.conns)
	dc := ep.dial
	if dc != nil {
		dc.drained = true
	}
	p.mu.Unlock()
	if p.drainMarked != nil {
		p.drainMarked(addr)
	}
	for _, up := range conns {
		up.drain()
	}
	if dc != nil {
		select {
		case <-dc.done:
			if dc.late != nil {
				conns = append(conns, dc.late)
			}
		case <-ctx.Done():
			// The dial's connection, if it comes, closes by itself (it
			// has no stream).
		}
	}
	if plan != nil {
		endPaced(ctx, conns, plan)
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
	p.mu.Lock()
	ep.drains--
	if ep.drains == 0 && len(ep.conns) == 0 && ep.dial == nil && p.eps[addr] == ep {
		delete(p.eps, addr)
	}
	p.mu.Unlock()
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
