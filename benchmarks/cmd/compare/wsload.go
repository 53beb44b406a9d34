package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/longhaul-proxy/longhaul/benchmarks/internal/stats"
)

// dialWS opens n WebSocket connections spread over urls, conc handshakes
// at a time, from several 127.0.0.x source addresses. It returns the
// connections that opened and the number that failed, with the first
// failure.
func dialWS(ctx context.Context, urls []string, n, conc int) ([]*websocket.Conn, int, error) {
	return openMany(ctx, n, conc, func(w, i int) (*websocket.Conn, error) {
		nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: sourceIP(w + i)}, Timeout: 10 * time.Second}
		d := websocket.Dialer{NetDialContext: nd.DialContext, HandshakeTimeout: 10 * time.Second,
			ReadBufferSize: 1024, WriteBufferSize: 1024}
		c, resp, err := d.DialContext(ctx, urls[i%len(urls)], nil)
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		return c, err
	})
}

// openMany opens n connections with open (worker w, connection i), conc at
// a time, until ctx ends. It returns those that opened and the number that
// failed, with the first failure.
func openMany[C any](ctx context.Context, n, conc int, open func(w, i int) (C, error)) ([]C, int, error) {
	var (
		next     atomic.Int64
		failed   atomic.Int64
		firstErr error
		mu       sync.Mutex
		conns    = make([]C, 0, n)
		wg       sync.WaitGroup
	)
	for w := range conc {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c, err := open(w, i)
				mu.Lock()
				if err != nil {
					failed.Add(1)
					if firstErr == nil {
						firstErr = err
					}
				} else {
					conns = append(conns, c)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil && firstErr == nil {
		firstErr = err
	}
	return conns, int(failed.Load()), firstErr
}

func closeAll(conns []*websocket.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// wsResult is what the WebSocket echo generator saw.
type wsResult struct {
	lat          *stats.Latencies
	sent, failed int
}

// wsEcho has each connection send perConn messages of size bytes, one
// every interval (starts staggered over one interval), and wait for each
// echo: a fixed total rate of len(conns)/interval messages a second.
func wsEcho(ctx context.Context, conns []*websocket.Conn, interval time.Duration, perConn, size int) wsResult {
	var (
		mu     sync.Mutex
		all    stats.Latencies
		sent   atomic.Int64
		failed atomic.Int64
		wg     sync.WaitGroup
	)
	for i, c := range conns {
		offset := interval * time.Duration(i) / time.Duration(len(conns))
		wg.Go(func() {
			var lat stats.Latencies
			defer func() {
				mu.Lock()
				all.Merge(&lat)
				mu.Unlock()
			}()
			msg := bytes.Repeat([]byte{'m'}, size)
			t := time.NewTimer(offset)
			defer t.Stop()
			next := time.Now().Add(offset)
			for range perConn {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				start := time.Now()
				sent.Add(1)
				if err := echoOnce(c, msg); err != nil {
					failed.Add(1)
					return
				}
				lat.Add(time.Since(start))
				next = next.Add(interval)
				t.Reset(time.Until(next))
			}
		})
	}
	wg.Wait()
	return wsResult{lat: &all, sent: int(sent.Load()), failed: int(failed.Load())}
}

func echoOnce(c *websocket.Conn, msg []byte) error {
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
		return fmt.Errorf("ws write: %w", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, got, err := c.ReadMessage()
	if err != nil {
		return fmt.Errorf("ws read: %w", err)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("ws echo: got %d bytes that differ from the %d sent", len(got), len(msg))
	}
	return nil
}
