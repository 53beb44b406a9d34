package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/longhaul-proxy/longhaul/internal/wsload"
)

// httpBackends is how many HTTP/WebSocket backends run: several, so that
// tens of thousands of idle connections from a proxy (one source address)
// do not run out of ephemeral ports toward one backend.
const httpBackends = 4

// httpBody is the response body of the HTTP backends.
var httpBody = []byte("longhaul benchmark backend: a fixed response body of about one hundred bytes.........\n")

// backends runs every backend server in this process, on loopback.
type backends struct {
	addrs   backendSet
	lns     []net.Listener
	httpSrv []*http.Server
	grpcSrv *grpc.Server
	wg      sync.WaitGroup
}

func startBackends() (*backends, error) {
	b := &backends{}
	listen := func() (net.Listener, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("backend listener: %w", err)
		}
		b.lns = append(b.lns, ln)
		return ln, nil
	}
	sink, err := listen()
	if err != nil {
		return nil, err
	}
	b.addrs.TCPSink = sink.Addr().String()
	b.serveTCP(sink, serveSink)
	echo, err := listen()
	if err != nil {
		b.close()
		return nil, err
	}
	b.addrs.TCPEcho = echo.Addr().String()
	b.serveTCP(echo, serveEcho)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(httpBody)
	})
	mux.HandleFunc("/ws", serveWebSocketEcho)
	for range httpBackends {
		ln, err := listen()
		if err != nil {
			b.close()
			return nil, err
		}
		b.addrs.HTTP = append(b.addrs.HTTP, ln.Addr().String())
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Hour,
			ErrorLog: discardLogger()}
		b.httpSrv = append(b.httpSrv, srv)
		b.wg.Go(func() { _ = srv.Serve(ln) })
	}
	g, err := listen()
	if err != nil {
		b.close()
		return nil, err
	}
	b.addrs.GRPC = g.Addr().String()
	b.grpcSrv = grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(b.grpcSrv, hs)
	reflection.Register(b.grpcSrv)
	b.wg.Go(func() { _ = b.grpcSrv.Serve(g) })
	return b, nil
}

func (b *backends) serveTCP(ln net.Listener, handle func(*net.TCPConn)) {
	b.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c.(*net.TCPConn))
			}()
		}
	})
}

func (b *backends) close() {
	for _, s := range b.httpSrv {
		_ = s.Close()
	}
	if b.grpcSrv != nil {
		b.grpcSrv.Stop()
	}
	for _, ln := range b.lns {
		ln.Close()
	}
	b.wg.Wait()
}

// serveSink reads until EOF, then answers with the byte count (8 bytes,
// big endian), so the client knows every byte arrived.
func serveSink(c *net.TCPConn) {
	buf := make([]byte, 256<<10)
	var n uint64
	for {
		m, err := c.Read(buf)
		n += uint64(m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return
		}
	}
	_, _ = c.Write(binary.BigEndian.AppendUint64(nil, n))
}

// closeByte asks the echo server to close the connection after echoing
// it. The connection-rate workload ends each connection this way, so the
// backend closes first and TIME_WAIT stays on the backend's side: the
// proxy's own connections toward the backend (every proxy dials from
// 127.0.0.1 to the same address) then do not run short of ephemeral ports.
const closeByte = '.'

// serveEcho writes back what it reads until EOF, or until a read ends with
// closeByte.
func serveEcho(c *net.TCPConn) {
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
			if buf[n-1] == closeByte {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

var upgrader = websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024,
	CheckOrigin: func(*http.Request) bool { return true }}

// serveWebSocketEcho echoes every message back until the client closes.
func serveWebSocketEcho(w http.ResponseWriter, r *http.Request) {
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	wsload.Echo(c, nil)
}
