package soak

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Probe reads one figure of the process under soak (its goroutines, its
// heap or resident memory).
type Probe struct {
	Name string
	// Unit is how the figure is printed: "" (a count) or "MiB" (Read
	// returns bytes).
	Unit string
	// Bound, if positive, is how far the figure may end above its value
	// after the warm-up; Problems reports more.
	Bound float64
	Read  func() (float64, error)
}

// Kind is one kind of call the clients make, counted on its own.
type Kind struct {
	Name string
	Lane Lane
}

// The kinds of call, in report order.
var (
	GRPCUnary     = Kind{"grpc unary", GRPC}
	GRPCStream    = Kind{"grpc bidi message", GRPC}
	GRPCQuietMsg  = Kind{"grpc-quiet bidi message", GRPCQuiet}
	HTTP2Get      = Kind{"http2 GET", HTTP2}
	HTTP2QuietGet = Kind{"http2-quiet GET", HTTP2Quiet}
	HTTP1Get      = Kind{"http1 GET", HTTP1}
	HTTP1QuietGet = Kind{"http1-quiet GET", HTTP1Quiet}
	WebSocketEcho = Kind{"websocket message", WebSocket}
	TCPEcho       = Kind{"tcp echo", TCP}
	Kinds         = []Kind{GRPCUnary, GRPCStream, GRPCQuietMsg, HTTP2Get, HTTP2QuietGet, HTTP1Get, HTTP1QuietGet, WebSocketEcho, TCPEcho}
)

const (
	// maxErrorsKept is how many errors a Tally keeps.
	maxErrorsKept = 5
	// streamOpenTime bounds opening a gRPC stream (and the connection
	// under it).
	streamOpenTime = 10 * time.Second
)

// Tally counts one kind's calls.
type Tally struct {
	Kind       Kind
	OK, Failed int64
	// Errors are the first few failures.
	Errors []string
}

// LaneConns is what one lane's connections did.
type LaneConns struct {
	Lane Lane
	// Clients is the client connections the plan opens; Dialed is how many
	// the clients opened (longhaul's listener accepted each: nothing else
	// is in between on loopback), and ClientWant what Dialed must be.
	Clients, Dialed, ClientWant int64
	// BackendWarm and BackendEnd are the connections longhaul had opened
	// to the lane's backend at the warm-up and at the end; BackendWant is
	// what BackendEnd must be.
	BackendWarm, BackendEnd, BackendWant int64
}

// Result is what a run did.
type Result struct {
	Plan   Plan
	Took   time.Duration
	Calls  []Tally
	Conns  []LaneConns
	Series []*Series
}

// recorder collects a run's counts from the client goroutines.
type recorder struct {
	mu     sync.Mutex
	tally  map[Kind]*Tally
	dialed map[Lane]*dialCounter
	// quietSent counts the requests of the quiet HTTP lanes (http2-quiet,
	// http1-quiet); written before Drive starts the clients.
	quietSent map[Lane]*atomic.Int64
}

func (r *recorder) ok(k Kind) {
	r.mu.Lock()
	r.tally[k].OK++
	r.mu.Unlock()
}

func (r *recorder) fail(k Kind, err error) {
	r.mu.Lock()
	t := r.tally[k]
	t.Failed++
	if len(t.Errors) < maxErrorsKept {
		t.Errors = append(t.Errors, err.Error())
	}
	r.mu.Unlock()
}

// Drive runs p's clients against targets (longhaul's listeners, one per
// lane) until p.Duration has passed or ctx ends, sampling probes at the
// warm-up and every p.SampleEvery after it while the clients run, and the
// backends' accept counts at the warm-up and at the end, before the
// clients close their connections.
func Drive(ctx context.Context, targets Addrs, be *Backends, p Plan, probes []Probe) (*Result, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("soak plan: %w", err)
	}
	for _, l := range Lanes {
		if targets[l] == "" {
			return nil, fmt.Errorf("soak: no target address for lane %s", l)
		}
	}
	rec := &recorder{tally: map[Kind]*Tally{}, dialed: map[Lane]*dialCounter{},
		quietSent: map[Lane]*atomic.Int64{HTTP2Quiet: {}, HTTP1Quiet: {}}}
	for _, k := range Kinds {
		rec.tally[k] = &Tally{Kind: k}
	}
	for _, l := range Lanes {
		rec.dialed[l] = &dialCounter{}
	}
	start := time.Now()
	cctx, stopClients := context.WithCancel(ctx)
	defer stopClients()
	var wg sync.WaitGroup
	c := &clients{p: p, rec: rec, targets: targets}
	c.start(cctx, &wg)

	series := make([]*Series, len(probes))
	for i, pr := range probes {
		series[i] = &Series{Probe: pr}
	}
	var warm map[Lane]int64
	sample := func() {
		at := time.Since(start)
		for _, s := range series {
			s.read(at)
		}
	}
	end := start.Add(p.Duration)
	next := start.Add(p.WarmUp)
	for ctx.Err() == nil {
		t := time.NewTimer(min(time.Until(next), time.Until(end)))
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		if ctx.Err() != nil || !time.Now().Before(end) {
			break
		}
		if warm == nil {
			warm = map[Lane]int64{}
			for _, l := range Lanes {
				warm[l] = be.Accepted(l)
			}
		}
		sample()
		next = next.Add(p.SampleEvery)
	}
	res := &Result{Plan: p, Series: series}
	stopClients()
	wg.Wait()
	res.Took = time.Since(start)
	// The endpoint connections are counted once the clients stopped, as
	// their requests are: a quiet request sent as the run ends is in both.
	for _, l := range Lanes {
		lc := LaneConns{Lane: l, Clients: int64(p.Clients(l)), BackendEnd: be.Accepted(l), BackendWarm: warm[l]}
		if warm == nil {
			lc.BackendWarm = lc.BackendEnd
		}
		res.Conns = append(res.Conns, lc)
	}
	for i := range res.Conns {
		lc := &res.Conns[i]
		lc.Dialed = rec.dialed[lc.Lane].n.Load()
		var quiet int64
		if q := rec.quietSent[lc.Lane]; q != nil {
			quiet = q.Load()
		}
		lc.BackendWant = backendWant(p, lc, quiet)
		lc.ClientWant = clientWant(p, lc, quiet)
	}
	for _, k := range Kinds {
		res.Calls = append(res.Calls, *rec.tally[k])
	}
	return res, ctx.Err()
}

// clientWant is the connections a lane's clients must have opened: one
// each, but on the quiet HTTP lanes, when their gap outlasts KeepAliveIdle
// (longhaul closes an HTTP/2 client connection with no stream for that
// long, with GOAWAY, and an HTTP/1.1 one waiting that long for a request),
// one per request.
func clientWant(p Plan, lc *LaneConns, quietSent int64) int64 {
	if (lc.Lane == HTTP2Quiet || lc.Lane == HTTP1Quiet) && p.QuietGap > KeepAliveIdle {
		return max(quietSent, 1)
	}
	return lc.Clients
}

// backendWant is the endpoint connections a lane must end with. Raw TCP
// and WebSocket: one per client. HTTP and gRPC lanes: one when the lane
// has one client, else as many as at the warm-up (the relay and the
// endpoint client pool them); but on the http2-quiet (http1-quiet) lane,
// when its gap outlasts UpstreamIdle (H1UpstreamIdle), one per request
// (each finds the previous endpoint connection closed for idleness).
func backendWant(p Plan, lc *LaneConns, quietSent int64) int64 {
	switch {
	case lc.Lane == WebSocket || lc.Lane == TCP:
		return lc.Clients
	case lc.Lane == HTTP2Quiet && p.QuietGap > UpstreamIdle,
		lc.Lane == HTTP1Quiet && p.QuietGap > H1UpstreamIdle:
		return max(quietSent, 1)
	case lc.Clients == 1:
		return 1
	default:
		return max(lc.BackendWarm, 1)
	}
}

// clients starts and runs every lane's clients.
type clients struct {
	p       Plan
	rec     *recorder
	targets Addrs
}

func (c *clients) start(ctx context.Context, wg *sync.WaitGroup) {
	for range c.p.GRPCConns {
		wg.Go(func() { c.grpcConn(ctx, GRPC, true, c.p.StreamsPerConn, GRPCStream, c.p.Interval) })
	}
	wg.Go(func() { c.grpcConn(ctx, GRPCQuiet, false, 1, GRPCQuietMsg, c.p.QuietGap) })
	for range c.p.HTTP2Conns {
		wg.Go(func() { c.httpConn(ctx, HTTP2, HTTP2Get, c.p.Interval) })
	}
	wg.Go(func() { c.httpConn(ctx, HTTP2Quiet, HTTP2QuietGet, c.p.QuietGap) })
	for range c.p.HTTP1Conns {
		wg.Go(func() { c.httpConn(ctx, HTTP1, HTTP1Get, c.p.Interval) })
	}
	wg.Go(func() { c.httpConn(ctx, HTTP1Quiet, HTTP1QuietGet, c.p.QuietGap) })
	for range c.p.WSConns {
		wg.Go(func() { c.wsConn(ctx) })
	}
	for range c.p.TCPConns {
		wg.Go(func() { c.tcpConn(ctx) })
	}
}

// pace calls f(seq) now and then every gap until ctx ends or the plan's cap
// of calls for that gap is reached.
func (c *clients) pace(ctx context.Context, gap time.Duration, f func(seq int64)) {
	t := time.NewTicker(gap)
	defer t.Stop()
	for seq, n := int64(1), c.p.maxCalls(gap); seq <= n && ctx.Err() == nil; seq++ {
		f(seq)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

// callCtx bounds one call; the run's end does not cut a call in flight.
func (c *clients) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), c.p.CallTimeout)
}

// grpcConn runs one ClientConn: a unary caller if unary, and streams
// streams sending a message every gap.
func (c *clients) grpcConn(ctx context.Context, lane Lane, unary bool, streams int, kind Kind, gap time.Duration) {
	dc := c.rec.dialed[lane]
	cc, err := grpc.NewClient("passthrough:///"+c.targets[lane],
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return dc.DialContext(ctx, "tcp", addr) }))
	if err != nil {
		c.rec.fail(kind, fmt.Errorf("grpc client: %w", err))
		return
	}
	defer cc.Close()
	var wg sync.WaitGroup
	if unary {
		hc := healthpb.NewHealthClient(cc)
		wg.Go(func() {
			c.pace(ctx, c.p.Interval, func(int64) {
				cctx, cancel := c.callCtx(ctx)
				defer cancel()
				resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
				switch {
				case err != nil:
					c.rec.fail(GRPCUnary, err)
				case resp.GetStatus() != healthpb.HealthCheckResponse_SERVING:
					c.rec.fail(GRPCUnary, fmt.Errorf("health: %v", resp.GetStatus()))
				default:
					c.rec.ok(GRPCUnary)
				}
			})
		})
	}
	for range streams {
		wg.Go(func() { c.grpcStream(ctx, cc, kind, gap) })
	}
	wg.Wait()
}

// grpcStream holds one bidi stream, sending a message every gap and
// waiting for its echo; a stream that fails is counted and opened again.
func (c *clients) grpcStream(ctx context.Context, cc *grpc.ClientConn, kind Kind, gap time.Duration) {
	var st grpc.ClientStream
	var cancel context.CancelFunc
	var watchdog *time.Timer
	closeStream := func() {
		if st != nil {
			watchdog.Stop()
			cancel()
			st, cancel = nil, nil
		}
	}
	defer func() {
		if st == nil {
			return
		}
		// End cleanly: half-close and read the server's end of stream.
		watchdog.Reset(c.p.CallTimeout)
		if err := st.CloseSend(); err == nil {
			if err := st.RecvMsg(new(wrapperspb.BytesValue)); err != io.EOF {
				c.rec.fail(kind, fmt.Errorf("stream end: %v", err))
			}
		}
		closeStream()
	}()
	c.pace(ctx, gap, func(seq int64) {
		if st == nil {
			var sctx context.Context
			sctx, cancel = context.WithCancel(context.WithoutCancel(ctx))
			// A message whose echo does not come within CallTimeout
			// cancels the stream (the watchdog runs only during a call).
			watchdog = time.AfterFunc(streamOpenTime, cancel)
			var err error
			if st, err = cc.NewStream(sctx, &echoStreamDesc, echoMethod); err != nil {
				watchdog.Stop()
				cancel()
				st = nil
				c.rec.fail(kind, fmt.Errorf("open stream: %w", err))
				return
			}
		}
		watchdog.Reset(c.p.CallTimeout)
		want := []byte(strconv.FormatInt(seq, 10))
		got := new(wrapperspb.BytesValue)
		err := st.SendMsg(wrapperspb.Bytes(want))
		if err == nil {
			err = st.RecvMsg(got)
		}
		watchdog.Stop()
		switch {
		case err != nil:
			c.rec.fail(kind, err)
			closeStream()
		case !bytes.Equal(got.GetValue(), want):
			c.rec.fail(kind, fmt.Errorf("echo %q, want %q", got.GetValue(), want))
		default:
			c.rec.ok(kind)
		}
	})
}

// httpConn runs one HTTP client connection, HTTP/2 (prior knowledge, no
// TLS) on the http2 lanes and HTTP/1.1 keep-alive on the http1 lanes, with
// a GET every gap.
func (c *clients) httpConn(ctx context.Context, lane Lane, kind Kind, gap time.Duration) {
	protos, major := new(http.Protocols), 1
	if lane == HTTP2 || lane == HTTP2Quiet {
		protos.SetUnencryptedHTTP2(true)
		major = 2
	} else {
		protos.SetHTTP1(true)
	}
	tr := &http.Transport{Protocols: protos, DialContext: c.rec.dialed[lane].DialContext, DisableCompression: true}
	defer tr.CloseIdleConnections()
	cli := &http.Client{Transport: tr}
	base := "http://" + c.targets[lane] + "/soak?"
	c.pace(ctx, gap, func(seq int64) {
		if q := c.rec.quietSent[lane]; q != nil {
			q.Add(1)
		}
		cctx, cancel := c.callCtx(ctx)
		defer cancel()
		q := "n=" + strconv.FormatInt(seq, 10)
		req, err := http.NewRequestWithContext(cctx, http.MethodGet, base+q, nil)
		if err != nil {
			c.rec.fail(kind, err)
			return
		}
		resp, err := cli.Do(req)
		if err != nil {
			c.rec.fail(kind, err)
			return
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		resp.Body.Close()
		switch {
		case err != nil:
			c.rec.fail(kind, fmt.Errorf("body: %w", err))
		case resp.StatusCode != http.StatusOK || resp.ProtoMajor != major || string(body) != q:
			c.rec.fail(kind, fmt.Errorf("%s %d %q, want HTTP/%d 200 %q", resp.Proto, resp.StatusCode, body, major, q))
		default:
			c.rec.ok(kind)
		}
	})
}

// wsConn holds one WebSocket, echoing a message every Interval; a
// connection that fails is counted and dialled again.
func (c *clients) wsConn(ctx context.Context) {
	d := websocket.Dialer{NetDialContext: c.rec.dialed[WebSocket].DialContext, HandshakeTimeout: c.p.CallTimeout}
	url := "ws://" + c.targets[WebSocket] + "/ws"
	var conn *websocket.Conn
	defer func() {
		if conn != nil {
			_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			conn.Close()
		}
	}()
	c.pace(ctx, c.p.Interval, func(seq int64) {
		if conn == nil {
			cctx, cancel := c.callCtx(ctx)
			defer cancel()
			var err error
			if conn, _, err = d.DialContext(cctx, url, nil); err != nil {
				conn = nil
				c.rec.fail(WebSocketEcho, fmt.Errorf("dial: %w", err))
				return
			}
		}
		want := []byte(strconv.FormatInt(seq, 10))
		deadline := time.Now().Add(c.p.CallTimeout)
		_ = conn.SetWriteDeadline(deadline)
		_ = conn.SetReadDeadline(deadline)
		err := conn.WriteMessage(websocket.TextMessage, want)
		var got []byte
		if err == nil {
			_, got, err = conn.ReadMessage()
		}
		if !c.rec.echoed(WebSocketEcho, err, got, want) {
			conn.Close()
			conn = nil
		}
	})
}

// echoed counts one echo of kind: an error (false: the connection is to
// be dropped and dialled again), a wrong echo, or a good one.
func (r *recorder) echoed(k Kind, err error, got, want []byte) bool {
	switch {
	case err != nil:
		r.fail(k, err)
		return false
	case !bytes.Equal(got, want):
		r.fail(k, fmt.Errorf("echo %q, want %q", got, want))
	default:
		r.ok(k)
	}
	return true
}

// tcpConn holds one TCP connection, echoing a line every Interval; a
// connection that fails is counted and dialled again.
func (c *clients) tcpConn(ctx context.Context) {
	var conn net.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	c.pace(ctx, c.p.Interval, func(seq int64) {
		if conn == nil {
			cctx, cancel := c.callCtx(ctx)
			defer cancel()
			var err error
			if conn, err = c.rec.dialed[TCP].DialContext(cctx, "tcp", c.targets[TCP]); err != nil {
				conn = nil
				c.rec.fail(TCPEcho, fmt.Errorf("dial: %w", err))
				return
			}
		}
		want := []byte(strconv.FormatInt(seq, 10) + "\n")
		_ = conn.SetDeadline(time.Now().Add(c.p.CallTimeout))
		got := make([]byte, len(want))
		_, err := conn.Write(want)
		if err == nil {
			_, err = io.ReadFull(conn, got)
		}
		if !c.rec.echoed(TCPEcho, err, got, want) {
			conn.Close()
			conn = nil
		}
	})
}
