package h2relay

import (
	"errors"
	"syscall"
)

// batch is the set of connections a reader goroutine queued output for
// while it processed what one read returned. Before it reads again, it
// writes each one's output itself (flush), with a non-blocking write, so
// that a request or response crossing the relay costs no goroutine wake-up
// on the way out; what the socket does not take goes to the writer
// goroutine. A batch belongs to its reader goroutine.
type batch struct {
	conns []*frameConn
}

// add records c. Called with c.mu held.
func (b *batch) add(c *frameConn) {
	for _, x := range b.conns {
		if x == c {
			return
		}
	}
	b.conns = append(b.conns, c)
}

// flush writes the output of every connection in the batch.
func (b *batch) flush() {
	for i, c := range b.conns {
		c.flushInline()
		b.conns[i] = nil
	}
	b.conns = b.conns[:0]
}

// flushInline writes c's output with one non-blocking write when no other
// goroutine is writing, and leaves the rest (or everything, if the writer
// is busy) to the writer goroutine.
func (c *frameConn) flushInline() {
	c.mu.Lock()
	if len(c.out) == 0 || c.closed {
		c.mu.Unlock()
		return
	}
	if c.writing || c.raw == nil || c.closeAfter {
		if c.waiting {
			c.cond.Signal()
		}
		c.mu.Unlock()
		return
	}
	buf := c.out
	c.out = c.spare[:0]
	c.spare = nil
	c.recount()
	c.writing = true
	c.mu.Unlock()
	n, err := c.rw.write(c.raw, buf)
	c.mu.Lock()
	c.writing = false
	if err != nil {
		c.closed = true
		c.cond.Signal()
		c.mu.Unlock()
		c.nc.Close()
		return
	}
	if n == len(buf) {
		c.queuedControl = 0 // the peer is reading
	}
	if n < len(buf) {
		// Put the rest back in front of what came meanwhile.
		rest := append(buf[:0], buf[n:]...)
		c.out = append(rest, c.out...)
		c.recount()
	} else if cap(buf) <= keepSpare && c.spare == nil {
		c.spare = buf[:0]
	}
	if len(c.out) > 0 && c.waiting {
		c.cond.Signal()
	}
	var waiting []blockedPipe
	if len(c.blocked) > 0 && c.sendWindow > 0 && c.dataRoom() > 0 {
		waiting = c.blocked
		c.blocked = nil
	}
	c.mu.Unlock()
	runBlocked(waiting)
}

// rawWriter writes to a socket without waiting. Its callback is made once
// (a closure per write would allocate); the goroutine that set
// frameConn.writing owns it.
type rawWriter struct {
	buf []byte
	n   int
	err error
	fn  func(fd uintptr) bool
}

// write writes what the socket takes of b now.
func (w *rawWriter) write(rc syscall.RawConn, b []byte) (int, error) {
	if w.fn == nil {
		w.fn = w.attempt
	}
	w.buf, w.n, w.err = b, 0, nil
	err := rc.Write(w.fn)
	n, werr := w.n, w.err
	w.buf = nil
	if err != nil {
		return n, err
	}
	return n, werr
}

// attempt is the RawConn callback: it never asks to wait.
func (w *rawWriter) attempt(fd uintptr) bool {
	for w.n < len(w.buf) {
		m, e := syscall.Write(int(fd), w.buf[w.n:])
		if e == syscall.EINTR {
			continue
		}
		if e != nil {
			if !errors.Is(e, syscall.EAGAIN) {
				w.err = e
			}
			break
		}
		w.n += m
	}
	return true
}

// nextFrameBuffered reports whether the whole next frame is already read,
// so that ReadFrame will not wait for the network: until then, the reader
// goroutine goes on filling its batch. Reader goroutine only.
func (c *frameConn) nextFrameBuffered() bool {
	n := c.br.Buffered()
	if n < frameHeaderLen {
		return false
	}
	h, err := c.br.Peek(frameHeaderLen)
	if err != nil {
		return false
	}
	return n >= frameHeaderLen+(int(h[0])<<16|int(h[1])<<8|int(h[2]))
}
