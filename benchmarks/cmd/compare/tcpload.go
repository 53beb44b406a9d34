package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longhaul-proxy/longhaul/benchmarks/internal/stats"
)

// bulk sends size bytes on one connection to a sink and waits for its byte
// count; it returns the time from connect to the count.
func bulk(ctx context.Context, addr string, size int64) (time.Duration, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, fmt.Errorf("bulk: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	start := time.Now()
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		n := int64(len(buf))
		if left < n {
			n = left
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return 0, fmt.Errorf("bulk: write: %w", err)
		}
		left -= n
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, fmt.Errorf("bulk: close write: %w", err)
	}
	var ack [8]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil {
		return 0, fmt.Errorf("bulk: reading the sink's count: %w", err)
	}
	took := time.Since(start)
	if got := binary.BigEndian.Uint64(ack[:]); got != uint64(size) {
		return 0, fmt.Errorf("bulk: sink received %d bytes, sent %d", got, size)
	}
	return took, nil
}

// connRate opens n connections, conc at a time, each sending one byte and
// reading it back; the server closes first (see closeByte), then the
// client. Latency is from dial to the echoed byte.
// Workers bind distinct 127.0.0.x source addresses.
func connRate(ctx context.Context, addr string, n, conc int) (*stats.Latencies, int, error) {
	var (
		next   atomic.Int64
		failed atomic.Int64
		mu     sync.Mutex
		all    stats.Latencies
		wg     sync.WaitGroup
	)
	for w := range conc {
		wg.Go(func() {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: sourceIP(w)}, Timeout: 5 * time.Second}
			var lat stats.Latencies
			b := []byte{closeByte}
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				start := time.Now()
				if err := oneShot(ctx, &d, addr, b); err != nil {
					failed.Add(1)
					continue
				}
				lat.Add(time.Since(start))
			}
			mu.Lock()
			all.Merge(&lat)
			mu.Unlock()
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return &all, int(failed.Load()), fmt.Errorf("connection rate: stopped after %d connections: %w", all.Len(), err)
	}
	return &all, int(failed.Load()), nil
}

func oneShot(ctx context.Context, d *net.Dialer, addr string, b []byte) error {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(b); err != nil {
		return err
	}
	var r [2]byte
	if _, err := io.ReadFull(c, r[:1]); err != nil {
		return err
	}
	// The server closes after the echo: wait for its FIN, so that this
	// side is not the first to close.
	if n, err := c.Read(r[:]); n > 0 || !errors.Is(err, io.EOF) {
		return fmt.Errorf("after the echo: %d more bytes, %v", n, err)
	}
	return nil
}

// pingPong sends one byte and reads it back n times on one connection.
func pingPong(ctx context.Context, addr string, n int) (*stats.Latencies, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ping-pong: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	var lat stats.Latencies
	b := []byte{'x'}
	var r [1]byte
	for range n {
		start := time.Now()
		if _, err := c.Write(b); err != nil {
			return nil, fmt.Errorf("ping-pong: write: %w", err)
		}
		if _, err := io.ReadFull(c, r[:]); err != nil {
			return nil, fmt.Errorf("ping-pong: read: %w", err)
		}
		lat.Add(time.Since(start))
	}
	return &lat, nil
}

// sourceIP spreads clients over 127.0.0.2 to 127.0.0.33, every one of
// them local on Linux's loopback.
func sourceIP(i int) net.IP { return net.IPv4(127, 0, 0, byte(2+i%32)) }

// dialTCPEcho opens n connections to the echo server at addr, conc at a
// time from the harness's source addresses, and echoes one byte on each;
// it returns those that echoed, how many failed and the first error.
func dialTCPEcho(ctx context.Context, addr string, n, conc int) ([]net.Conn, int, error) {
	return openMany(ctx, n, conc, func(w, i int) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: sourceIP(w + i)}, Timeout: 10 * time.Second}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		if err := tcpEchoByte(c); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	})
}

// tcpEchoByte writes one byte to c and reads it back, within 10 s.
func tcpEchoByte(c net.Conn) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte{'x'}); err != nil {
		return err
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return err
	}
	if b[0] != 'x' {
		return fmt.Errorf("echo %q, want %q", b[0], 'x')
	}
	return nil
}
