package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Limits bound what a client can hold of an admin server.
type Limits struct {
	// MaxConnections caps the accepted connections, at least 2. The last
	// slot is kept free for a newcomer: when a connection takes it, the
	// connection that has waited longest without a request in progress
	// (none sent yet, or idle between keep-alive requests) is closed; a
	// connection that turns idle while every slot is taken is closed
	// itself. So idle connections never lock a probe out; only connections
	// inside a handler make newcomers wait in the listen backlog.
	MaxConnections int
	// ReadHeaderTimeout bounds reading a request's headers, counted from
	// the accept for the first request (a connection that sends nothing is
	// closed after it) and from the first byte for the next ones.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a response, counted from the end of the
	// request's headers.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection idle for this long.
	IdleTimeout time.Duration
}

// maxHeaderBytes bounds a request's headers on an admin server: probes,
// scrapes and debug requests carry a few hundred bytes.
const maxHeaderBytes = 16 << 10

// Server is an HTTP server that holds at most Limits.MaxConnections
// connections and bounds each with the Limits' timeouts.
type Server struct {
	srv *http.Server
	ln  *limitListener
}

// NewServer returns a server of h on ln with the limits lim. Call Serve,
// then Shutdown.
func NewServer(ln net.Listener, h http.Handler, lim Limits) *Server {
	l := newLimitListener(ln, lim.MaxConnections)
	return &Server{
		ln: l,
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: lim.ReadHeaderTimeout,
			ReadTimeout:       lim.ReadTimeout,
			WriteTimeout:      lim.WriteTimeout,
			IdleTimeout:       lim.IdleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			ConnState:         l.connState,
		},
	}
}

// Serve serves until Shutdown; it returns nil after Shutdown, or the
// listener's error.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin server on %s: %w", s.ln.Addr(), err)
	}
	return nil
}

// Shutdown stops accepting, lets requests in progress finish until ctx
// ends, then closes every connection left.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	return err
}

// limitListener admits at most max connections; see Limits.MaxConnections.
//
// Invariants: len(open) <= max, counting every connection from Accept until
// its socket is closed (sockets are closed under mu, so that a slot is never
// reused before its socket is gone). When len(open) == max, no connection
// is idle but the newest one: taking the last slot evicts the connection
// idle the longest, and a connection turning idle with every slot taken is
// closed.
// Connections are never evicted before they are needed: a newcomer cannot
// be seen before it is accepted, so the last slot is kept free for it.
type limitListener struct {
	net.Listener
	max int

	mu     sync.Mutex
	freed  *sync.Cond // a connection closed or turned idle
	open   map[*limitedConn]struct{}
	seq    uint64 // orders connections by when they last turned idle
	closed bool
}

func newLimitListener(ln net.Listener, max int) *limitListener {
	l := &limitListener{Listener: ln, max: max, open: make(map[*limitedConn]struct{})}
	l.freed = sync.NewCond(&l.mu)
	return l
}

// limitedConn is an accepted connection; busy and idleSeq are guarded by
// the listener's mu.
type limitedConn struct {
	net.Conn
	l       *limitListener
	busy    bool   // a request is being served
	idleSeq uint64 // when it last turned idle (or was accepted)
}

// Accept waits for a free slot, accepts, and keeps the last slot free for
// the next newcomer by evicting an idle connection if there is one.
func (l *limitListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	// At the cap every connection is busy (see evictLocked's callers):
	// wait for one to close or turn idle.
	for len(l.open) >= l.max && !l.closed {
		l.freed.Wait()
	}
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	lc := &limitedConn{Conn: c, l: l}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	lc.idleSeq = l.seq
	l.open[lc] = struct{}{}
	if len(l.open) >= l.max {
		l.evictLocked(lc)
	}
	return lc, nil
}

// Close stops accepting and wakes an Accept waiting for a slot.
func (l *limitListener) Close() error {
	l.mu.Lock()
	l.closed = true
	l.freed.Broadcast()
	l.mu.Unlock()
	return l.Listener.Close()
}

// evictLocked closes the connection idle the longest, other than keep.
func (l *limitListener) evictLocked(keep *limitedConn) {
	var victim *limitedConn
	for c := range l.open {
		if c != keep && !c.busy && (victim == nil || c.idleSeq < victim.idleSeq) {
			victim = c
		}
	}
	if victim != nil {
		victim.closeLocked()
	}
}

// connState follows the server's view of each connection: a connection is
// evictable from its accept until a request's headers are read (so also
// while a slow client sends them), and again once it is idle.
func (l *limitListener) connState(c net.Conn, st http.ConnState) {
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch st {
	case http.StateActive:
		lc.busy = true
	case http.StateIdle:
		lc.busy = false
		l.seq++
		lc.idleSeq = l.seq
		if len(l.open) >= l.max {
			// Free the reserved slot again with this connection, not an
			// older idle one: that may be a newcomer whose request is on
			// its way.
			lc.closeLocked()
		}
	}
}

// Close closes the socket and frees the connection's slot.
func (c *limitedConn) Close() error {
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	return c.closeLocked()
}

func (c *limitedConn) closeLocked() error {
	if _, ok := c.l.open[c]; ok {
		delete(c.l.open, c)
		c.l.freed.Signal()
	}
	return c.Conn.Close()
}
