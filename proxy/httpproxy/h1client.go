package httpproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// h1Client sends bodyless HTTP/1.1 requests to one endpoint over keep-alive
// connections, on the caller's goroutine: it writes the request, reads the
// response's head and hands back its body, which returns the connection to
// the idle list once read to its end. http.Transport, which the pool keeps
// for requests with a body (their upload may overlap the response), runs
// two goroutines per connection and hands each request and response
// between them; for the many small GETs of a keep-alive load that handing
// over is a large part of the proxy's CPU per request.
//
// Invariants: a connection is either in idle (its timer armed to close it
// after idleTimeout) or owned by one request, from get to the end of its
// response body. idle is guarded by mu; a connection's timer is stopped by
// whoever takes it from idle, and a timer that fired first owns the close.
type h1Client struct {
	dial        func(ctx context.Context) (net.Conn, error)
	maxIdle     int
	idleTimeout time.Duration

	mu     sync.Mutex
	idle   []*h1Conn // most recently used last
	closed bool      // closeIdle was called with forGood: nothing goes idle any more
}

// h1MaxResponseHead bounds the bytes read from an endpoint for one
// response's head (status line, headers, informational answers before
// it): an endpoint that sends more ends its request with errHeadTooLarge,
// not the proxy's memory.
const h1MaxResponseHead = 1 << 20

var errHeadTooLarge = fmt.Errorf("httpproxy: response head larger than %d bytes", h1MaxResponseHead)

// headLimit is the reader under an h1Conn's bufio.Reader: while left is
// not negative it lets at most left more bytes through (the head's read),
// then fails with errHeadTooLarge.
type headLimit struct {
	r    io.Reader
	left int64 // -1: no limit (a body's read)
}

func (l *headLimit) Read(p []byte) (int, error) {
	if l.left < 0 {
		return l.r.Read(p)
	}
	if l.left == 0 {
		return 0, errHeadTooLarge
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

// h1Conn is one keep-alive connection of an h1Client.
type h1Conn struct {
	cl    *h1Client
	c     net.Conn
	lim   headLimit
	br    *bufio.Reader
	bw    *bufio.Writer
	timer *time.Timer // closes the connection after idleTimeout in idle
}

// errStaleConn marks a failure on a reused connection before any byte of
// a response came: the endpoint had closed it while it was idle.
var errStaleConn = errors.New("httpproxy: idle connection closed by the endpoint")

// roundTrip sends req (which has no body) and returns the response, whose
// body the caller must close. A request that fails on a reused connection
// before any byte of its response (the endpoint closed it while idle) is
// sent once more on a new connection. Cancelling req's context ends the
// request: the connection is closed, and the error is the context's cause.
func (cl *h1Client) roundTrip(req *http.Request) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		pc, reused, err := cl.get(req.Context())
		if err != nil {
			return nil, err
		}
		resp, err := pc.roundTrip(req)
		if err == nil {
			return resp, nil
		}
		pc.close()
		if !reused || attempt > 0 || !errors.Is(err, errStaleConn) || req.Context().Err() != nil {
			return nil, err
		}
	}
}

// get returns an idle connection (reused) or dials a new one.
func (cl *h1Client) get(ctx context.Context) (pc *h1Conn, reused bool, err error) {
	cl.mu.Lock()
	for n := len(cl.idle); n > 0; n = len(cl.idle) {
		pc = cl.idle[n-1]
		cl.idle[n-1] = nil
		cl.idle = cl.idle[:n-1]
		if pc.timer.Stop() {
			cl.mu.Unlock()
			return pc, true, nil
		}
		// Its idle timer fired: the timer's function closes it.
	}
	cl.mu.Unlock()
	c, err := cl.dial(ctx)
	if err != nil {
		return nil, false, err
	}
	pc = &h1Conn{cl: cl, c: c, lim: headLimit{r: c, left: -1}, bw: bufio.NewWriterSize(c, 4<<10)}
	pc.br = bufio.NewReaderSize(&pc.lim, 4<<10)
	pc.timer = time.AfterFunc(time.Hour, pc.expire)
	pc.timer.Stop()
	return pc, false, nil
}

// put returns pc to the idle list, or closes it if the list is full or the
// client closed.
func (cl *h1Client) put(pc *h1Conn) {
	cl.mu.Lock()
	if cl.closed || len(cl.idle) >= cl.maxIdle {
		cl.mu.Unlock()
		pc.close()
		return
	}
	cl.idle = append(cl.idle, pc)
	pc.timer.Reset(cl.idleTimeout)
	cl.mu.Unlock()
}

// expire is pc's idle timer: it takes pc from the idle list (where it is,
// unless get took it meanwhile and found the timer fired) and closes it.
func (pc *h1Conn) expire() {
	cl := pc.cl
	cl.mu.Lock()
	for i, q := range cl.idle {
		if q == pc {
			cl.idle = append(cl.idle[:i], cl.idle[i+1:]...)
			break
		}
	}
	cl.mu.Unlock()
	pc.close()
}

// closeIdle closes the idle connections; with forGood, connections that
// finish their requests later are closed too.
func (cl *h1Client) closeIdle(forGood bool) {
	cl.mu.Lock()
	idle := cl.idle
	cl.idle = nil
	cl.closed = cl.closed || forGood
	cl.mu.Unlock()
	for _, pc := range idle {
		if pc.timer.Stop() {
			pc.close()
		}
	}
}

func (pc *h1Conn) close() { pc.c.Close() }

// roundTrip writes req on pc and reads the response's head. The returned
// body gives pc back (or closes it) when it ends.
func (pc *h1Conn) roundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	// Cancelling the request unblocks its reads and writes; the
	// connection is then not reused (the body's end sees stop fail).
	stop := context.AfterFunc(ctx, func() { pc.c.SetDeadline(time.Unix(1, 0)) })
	fail := func(what string, err error) (*http.Response, error) {
		stop()
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		if isStale(err) {
			err = fmt.Errorf("%w: %w", errStaleConn, err)
		}
		return nil, fmt.Errorf("httpproxy: %s: %w", what, err)
	}
	if err := req.Write(pc.bw); err != nil {
		return fail("writing the request", err)
	}
	if err := pc.bw.Flush(); err != nil {
		return fail("writing the request", err)
	}
	// Whether any byte of the answer came tells a connection the
	// endpoint had closed (nothing, then EOF or a reset: stale) from
	// one that broke inside an answer.
	if _, err := pc.br.Peek(1); err != nil {
		return fail("reading the response", err)
	}
	pc.lim.left = h1MaxResponseHead
	for {
		resp, err := http.ReadResponse(pc.br, req)
		if err != nil {
			pc.lim.left = -1
			return fail("reading the response", err)
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			resp.Body.Close()
			stop()
			return nil, errors.New("httpproxy: endpoint switched protocols on a request without Upgrade")
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 {
			continue // informational (100 Continue, 103 Early Hints): the final answer follows
		}
		pc.lim.left = -1 // the body is read without the head's bound
		reuse := !resp.Close && !req.Close
		if resp.Body == http.NoBody {
			// No body to read (HEAD, 204, 304, Content-Length 0): the
			// connection is free now.
			pc.done(stop, reuse)
			return resp, nil
		}
		resp.Body = &h1Body{pc: pc, body: resp.Body, stop: stop, reuse: reuse}
		return resp, nil
	}
}

// done ends pc's request: pc goes back to idle when it may be reused and
// the request was not cancelled (stop reports that its cancellation did
// not run), else it is closed.
func (pc *h1Conn) done(stop func() bool, reuse bool) {
	if stop() && reuse {
		pc.cl.put(pc)
		return
	}
	pc.close()
}

// isStale reports whether err is how a connection the endpoint closed
// while idle fails before a response begins: EOF on the first read, or a
// reset or broken pipe.
func isStale(err error) bool {
	return err == io.EOF || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// h1Body is a response body read from an h1Conn: read to its end, it gives
// the connection back; closed before, or failing, it closes it.
type h1Body struct {
	pc    *h1Conn
	body  io.ReadCloser
	stop  func() bool
	reuse bool
	ended bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.ended {
		return 0, io.EOF
	}
	n, err := b.body.Read(p)
	if err != nil {
		b.ended = true
		b.pc.done(b.stop, b.reuse && err == io.EOF)
	}
	return n, err
}

func (b *h1Body) Close() error {
	if !b.ended {
		b.ended = true
		b.pc.done(b.stop, false) // the rest is not read: the connection cannot carry another response
	}
	return nil
}
