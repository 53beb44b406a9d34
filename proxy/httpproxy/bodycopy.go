package httpproxy

import (
	"io"
	"sync"

	"github.com/longhaul-proxy/longhaul/internal/guard"
)

// bufPairPool holds the two read buffers of streamBody. 16 KiB is one
// HTTP/2 DATA frame at the default maximum frame size.
var bufPairPool = sync.Pool{New: func() any { return &[2][]byte{make([]byte, 16<<10), make([]byte, 16<<10)} }}

type chunk struct {
	i, n int
	err  error
}

// streamBody copies body to w and calls flush only when the next read of
// body would block. The parts of a response that arrive together (a unary
// gRPC call's headers, message and trailers) so leave in one write, while a
// stream's messages still leave as soon as they come. Headers written before
// the call count as unflushed.
//
// A reader goroutine reads one buffer ahead; buffers pass between it and the
// writer through channels, so neither touches a buffer the other owns. On a
// write error body is closed (ending a blocked read) before streamBody
// returns; the goroutine never outlives the call.
func streamBody(w io.Writer, flush func(), body io.ReadCloser) (readErr, writeErr error) {
	bufs := bufPairPool.Get().(*[2][]byte)
	ready := make(chan chunk, 1)
	free := make(chan int, 2)
	free <- 0
	free <- 1
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer guard.Recover("http", func() {
			select {
			case ready <- chunk{err: guard.ErrPanicked}:
			case <-done:
			}
		})
		for {
			var i int
			select {
			case i = <-free:
			case <-done:
				return
			}
			n, err := body.Read(bufs[i])
			select {
			case ready <- chunk{i, n, err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		close(done)
		wg.Wait()
		bufPairPool.Put(bufs)
	}()
	pending := true
	for {
		var c chunk
		select {
		case c = <-ready:
		default:
			if pending {
				flush()
				pending = false
			}
			c = <-ready
		}
		if c.n > 0 {
			if _, err := w.Write(bufs[c.i][:c.n]); err != nil {
				body.Close()
				return nil, err
			}
			pending = true
		}
		if c.err == io.EOF {
			return nil, nil
		}
		if c.err != nil {
			return c.err, nil
		}
		free <- c.i
	}
}
