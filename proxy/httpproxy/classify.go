package httpproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/http2"

	"github.com/longhaul-proxy/longhaul/internal/guard"
	"github.com/longhaul-proxy/longhaul/proxy/h2relay"
	"github.com/longhaul-proxy/longhaul/proxy/listen"
)

// Splitting client connections between the HTTP/2 relay and net/http's
// server: connections that speak HTTP/2 (the h2c preface, or ALPN h2 over
// TLS) go to the relay, every other one (HTTP/1.1, WebSocket upgrades) to
// the server through a connListener.

// sniffTimeout bounds the TLS handshake and the first bytes (slowloris).
const sniffTimeout = 10 * time.Second

// h2Prefix is how much of the preface decides that a client speaks HTTP/2:
// no HTTP/1 request starts with "PRI * HTTP/2.0", so the relay answers the
// rest of an invalid preface as HTTP/2 does.
const h2Prefix = len("PRI * HTTP/2.0\r\n")

// serveSplit accepts on ln and hands each connection to the relay or to
// the net/http server, until ln is closed (Shutdown or Close close it
// through the server's listener).
func (l *Listener) serveSplit(ctx context.Context, ln net.Listener) error {
	cl := &connListener{ln: ln, conns: make(chan net.Conn), done: make(chan struct{})}
	srvErr := make(chan error, 1)
	go func() { srvErr <- l.srv.Serve(framingListener{cl}) }()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			select {
			case <-cl.done:
			default:
				if !errors.Is(err, net.ErrClosed) {
					// Out of descriptors and the like: back off, as net/http does.
					delay = min(max(2*delay, 5*time.Millisecond), time.Second)
					l.log.Warn("accept failed; retrying", zap.Error(err), zap.Duration("in", delay))
					time.Sleep(delay)
					continue
				}
			}
			cl.Close()
			l.splitWG.Wait()
			return <-srvErr
		}
		delay = 0
		l.splitWG.Add(1)
		go func() {
			defer l.splitWG.Done()
			defer guard.Recover("http", func() { c.Close() })
			l.dispatchConn(ctx, c, cl)
		}()
	}
}

// dispatchConn decides where c goes.
func (l *Listener) dispatchConn(ctx context.Context, c net.Conn, cl *connListener) {
	if testHookConn != nil {
		testHookConn(c)
	}
	if l.cfg.TLS != nil {
		tc := tls.Server(c, l.cfg.TLS)
		hctx, cancel := context.WithTimeout(ctx, sniffTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			c.Close()
			return
		}
		if tc.ConnectionState().NegotiatedProtocol == http2.NextProtoTLS {
			l.relay.ServeConn(ctx, tc)
			return
		}
		cl.push(tc)
		return
	}
	c.SetReadDeadline(time.Now().Add(sniffTimeout))
	buf := make([]byte, h2Prefix)
	n, isH2 := 0, true
	for n < h2Prefix {
		m, err := c.Read(buf[n:])
		for i := n; i < n+m; i++ {
			if buf[i] != http2.ClientPreface[i] {
				isH2 = false
			}
		}
		n += m
		if !isH2 || err != nil {
			break
		}
	}
	if n == 0 || isH2 && n < h2Prefix {
		c.Close() // silent, gone, or a cut preface
		return
	}
	c.SetReadDeadline(time.Time{})
	pc := &peekedConn{Conn: c, peeked: buf[:n]}
	if isH2 {
		l.relay.ServeConn(ctx, pc)
		return
	}
	cl.push(pc)
}

// peekedConn replays the bytes read to sniff the protocol, then reads on.
type peekedConn struct {
	net.Conn
	peeked []byte
}

// socket returns the connection under c once the peeked bytes are read,
// else c itself (see socketOf).
func (c *peekedConn) Socket() net.Conn {
	if len(c.peeked) > 0 {
		return c
	}
	return c.Conn
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if len(c.peeked) > 0 {
		n := copy(p, c.peeked)
		c.peeked = c.peeked[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// SyscallConn exposes the socket, so that the relay writes to it without
// a goroutine hand-off; reads must go through Read (the peeked bytes).
func (c *peekedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.New("not a socket")
}

// PlainTCP tells the relay that bytes written to the socket are what the
// client reads.
func (c *peekedConn) PlainTCP() bool { return h2relay.IsPlainTCP(c.Conn) }

// CloseWrite half-closes the connection, for relays that pass on an EOF.
func (c *peekedConn) CloseWrite() error { listen.CloseWrite(c.Conn); return nil }

// connListener feeds net/http's server the connections the split hands it.
// Closing it closes the real listener, so that the server's Shutdown and
// Close stop the accept loop too.
type connListener struct {
	ln    net.Listener
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func (l *connListener) push(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.ln.Close()
	})
	return nil
}

func (l *connListener) Addr() net.Addr { return l.ln.Addr() }
