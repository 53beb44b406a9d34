package soak

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/longhaul-proxy/longhaul/internal/wsload"
)

// Backends are the lanes' servers, on loopback in this process, each
// counting the connections it accepted.
type Backends struct {
	// Addrs is where each lane's backend listens.
	Addrs    Addrs
	accepted map[Lane]*atomic.Int64
	lns      []net.Listener
	grpcSrv  []*grpc.Server
	httpSrv  []*http.Server
	wg       sync.WaitGroup

	mu       sync.Mutex
	tcpConns map[net.Conn]bool
	closed   bool
}

// StartBackends starts a backend per lane: grpc-go servers with the health
// service and a bidi echo service (grpc, grpc-quiet), HTTP/2 servers with
// prior knowledge (http2, http2-quiet), HTTP/1.1 servers (http1,
// http1-quiet; keep-alive without an idle timeout), a gorilla/websocket echo server
// and a TCP echo server.
func StartBackends() (*Backends, error) {
	b := &Backends{Addrs: Addrs{}, accepted: map[Lane]*atomic.Int64{}, tcpConns: map[net.Conn]bool{}}
	for _, l := range Lanes {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("soak backend %s: %w", l, err)
		}
		b.accepted[l] = new(atomic.Int64)
		cl := &countingListener{Listener: ln, n: b.accepted[l]}
		b.lns = append(b.lns, ln)
		b.Addrs[l] = ln.Addr().String()
		switch l {
		case GRPC, GRPCQuiet:
			srv := grpc.NewServer()
			hs := health.NewServer()
			hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			healthpb.RegisterHealthServer(srv, hs)
			srv.RegisterService(&echoServiceDesc, nil)
			b.grpcSrv = append(b.grpcSrv, srv)
			b.wg.Go(func() { _ = srv.Serve(cl) })
		case HTTP2, HTTP2Quiet:
			protos := new(http.Protocols)
			protos.SetUnencryptedHTTP2(true)
			b.serveHTTP(cl, &http.Server{Handler: http.HandlerFunc(serveEchoQuery), Protocols: protos})
		case HTTP1, HTTP1Quiet:
			b.serveHTTP(cl, &http.Server{Handler: http.HandlerFunc(serveEchoQuery), ReadHeaderTimeout: 10 * time.Second})
		case WebSocket:
			b.serveHTTP(cl, &http.Server{Handler: http.HandlerFunc(serveWebSocketEcho), ReadHeaderTimeout: 10 * time.Second})
		case TCP:
			b.wg.Go(func() { b.serveTCPEcho(cl) })
		}
	}
	return b, nil
}

func (b *Backends) serveHTTP(ln net.Listener, srv *http.Server) {
	b.httpSrv = append(b.httpSrv, srv)
	b.wg.Go(func() { _ = srv.Serve(ln) })
}

// Accepted is the number of connections l's backend accepted so far.
func (b *Backends) Accepted(l Lane) int64 { return b.accepted[l].Load() }

// Close stops every backend and waits for their goroutines.
func (b *Backends) Close() {
	for _, s := range b.grpcSrv {
		s.Stop()
	}
	for _, s := range b.httpSrv {
		_ = s.Close()
	}
	for _, ln := range b.lns {
		ln.Close()
	}
	b.mu.Lock()
	b.closed = true
	for c := range b.tcpConns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *Backends) serveTCPEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			c.Close()
			return
		}
		b.tcpConns[c] = true
		b.mu.Unlock()
		b.wg.Go(func() {
			_, _ = io.Copy(c, c)
			c.Close()
			b.mu.Lock()
			delete(b.tcpConns, c)
			b.mu.Unlock()
		})
	}
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// serveEchoQuery answers a GET with its query string, so that the client
// knows the response is its own.
func serveEchoQuery(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, r.URL.RawQuery)
}

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

func serveWebSocketEcho(w http.ResponseWriter, r *http.Request) {
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	wsload.Echo(c, nil)
}

// echoMethod is the full name of the bidi echo stream.
const echoMethod = "/longhaul.soak.Echo/Chat"

// echoServiceDesc is a bidi stream that sends back each message it gets,
// until the client half-closes.
var echoServiceDesc = grpc.ServiceDesc{
	ServiceName: "longhaul.soak.Echo",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName:    "Chat",
		ServerStreams: true,
		ClientStreams: true,
		Handler: func(_ any, ss grpc.ServerStream) error {
			for {
				m := new(wrapperspb.BytesValue)
				if err := ss.RecvMsg(m); errors.Is(err, io.EOF) {
					return nil
				} else if err != nil {
					return err
				}
				if err := ss.SendMsg(m); err != nil {
					return err
				}
			}
		},
	}},
}

// echoStreamDesc is the client's view of the echo stream.
var echoStreamDesc = grpc.StreamDesc{StreamName: "Chat", ServerStreams: true, ClientStreams: true}

// dialCounter dials loopback TCP and counts the connections it opened.
type dialCounter struct {
	n atomic.Int64
	d net.Dialer
}

func (c *dialCounter) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := c.d.DialContext(ctx, network, addr)
	if err == nil {
		c.n.Add(1)
	}
	return conn, err
}
