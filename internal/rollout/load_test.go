package rollout_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/longhaul-proxy/longhaul/internal/wsload"
)

// stats are the clients' figures. Counters are atomics; samples of errors
// and the times of reconnects are kept under mu.
type stats struct {
	unaryOK, unaryFail       atomic.Int64
	httpOK, httpFail         atomic.Int64
	streamOpened, streamMsgs atomic.Int64
	streamResumed            atomic.Int64 // ended with UNAVAILABLE, opened again
	streamFail               atomic.Int64 // ended with another code

	wsConnected, wsMsgs   atomic.Int64
	wsMoved               atomic.Int64 // closed with 1012/1001 and reconnected
	wsRestart             atomic.Int64 // of wsMoved, those closed with 1012
	wsUnclean             atomic.Int64 // closed any other way
	wsDialFail            atomic.Int64
	wsLost, wsDup         atomic.Int64
	wsMaxConcurrent, wsUp atomic.Int64
	wsMovesOf             []atomic.Int32 // by client, if made: its moves

	tcpConnected, tcpLines atomic.Int64
	tcpReconnect           atomic.Int64
	tcpDialFail            atomic.Int64
	tcpLost, tcpDup        atomic.Int64

	wsload.Tally
}

// targets says where clients connect; a Service-like picker in front of
// two longhauls changes its answer when one of them stops being ready.
type targets interface {
	addr(listener string, client int) string
	grpcConn(client int) *grpc.ClientConn
}

var (
	sleepCtx = wsload.Sleep
	jitter   = wsload.Jitter
)

// Every loop below is bounded twice: by ctx (the test's load phase) and by
// a count.
const maxIterations = 200000

func unaryLoad(ctx context.Context, tg targets, id int, st *stats) {
	for i := 0; i < maxIterations && ctx.Err() == nil; i++ {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		resp, err := healthpb.NewHealthClient(tg.grpcConn(id)).Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		switch {
		case err != nil:
			st.unaryFail.Add(1)
			st.Sample("unary", "%v", err)
		case resp.GetStatus() != healthpb.HealthCheckResponse_SERVING:
			st.unaryFail.Add(1)
			st.Sample("unary", "status %v", resp.GetStatus())
		default:
			st.unaryOK.Add(1)
		}
		if !sleepCtx(ctx, jitter(5*time.Millisecond)) {
			return
		}
	}
}

// streamObserver hears of each stream streamLoad opens: open is called
// with the open stream's context, and the function it returns with the
// error the stream ended with (unless the load ended it).
type streamObserver interface {
	open(ctx context.Context) (end func(error))
}

// streamLoad keeps a health Watch stream open, resuming it when it ends
// with UNAVAILABLE (how longhaul ends streams still open at a drain
// deadline). obs, if not nil, hears of every stream.
func streamLoad(ctx context.Context, tg targets, id int, st *stats, obs streamObserver) {
	for i := 0; i < maxIterations && ctx.Err() == nil; i++ {
		s, err := healthpb.NewHealthClient(tg.grpcConn(id)).Watch(ctx, &healthpb.HealthCheckRequest{})
		if err == nil {
			st.streamOpened.Add(1)
			var end func(error)
			if obs != nil {
				end = obs.open(s.Context())
			}
			for {
				var m *healthpb.HealthCheckResponse
				if m, err = s.Recv(); err != nil {
					break
				}
				if m.GetStatus() == healthpb.HealthCheckResponse_SERVING {
					st.streamMsgs.Add(1)
				}
			}
			if end != nil && ctx.Err() == nil {
				end(err)
			}
		}
		if ctx.Err() != nil {
			return
		}
		if status.Code(err) == codes.Unavailable {
			st.streamResumed.Add(1)
			st.Reconnected(time.Now())
		} else {
			st.streamFail.Add(1)
			st.Sample("stream", "%v", err)
			sleepCtx(ctx, 20*time.Millisecond)
		}
	}
}

func httpLoad(ctx context.Context, tg targets, id int, cli *http.Client, st *stats) {
	for i := 0; i < maxIterations && ctx.Err() == nil; i++ {
		n := strconv.Itoa(i)
		req, _ := http.NewRequestWithContext(context.WithoutCancel(ctx), "GET", "http://"+tg.addr("web", id)+"/get?n="+n, nil)
		resp, err := cli.Do(req)
		if err != nil {
			st.httpFail.Add(1)
			st.Sample("http", "%v", err)
		} else {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case rerr != nil:
				st.httpFail.Add(1)
				st.Sample("http", "body: %v", rerr)
			case resp.StatusCode != 200 || !strings.HasSuffix(string(body), " "+n):
				st.httpFail.Add(1)
				st.Sample("http", "%d %q", resp.StatusCode, body)
			default:
				st.httpOK.Add(1)
			}
		}
		if !sleepCtx(ctx, jitter(5*time.Millisecond)) {
			return
		}
	}
}

// sourceIP spreads clients over several loopback source addresses, so that
// a thousand of them with their reconnects never run short of ports.
func sourceIP(id int) *net.TCPAddr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+id%8))}
}

// seqChecker checks that the echoes a client receives are exactly 1..N.
type seqChecker struct {
	acked int // last sequence number received in order
}

// got records echo n; it returns an error on a gap or a duplicate.
func (c *seqChecker) got(n int) error {
	switch {
	case n == c.acked+1:
		c.acked = n
		return nil
	case n <= c.acked:
		return fmt.Errorf("duplicate %d after %d", n, c.acked)
	default:
		err := fmt.Errorf("gap: got %d after %d", n, c.acked)
		c.acked = n
		return err
	}
}

const window = 2 // messages in flight per client

// wsClient exchanges sequence-numbered messages with an echo backend through
// longhaul, reading all the time as a real client does (so that a close
// frame is answered at once). Every interval it sends the next window of
// messages once the previous one is echoed. On a close 1012 (or 1001) it
// reconnects and resends what was not echoed yet; it checks that the echoes
// it receives are exactly 1..N. It dials from local.
func wsClient(ctx context.Context, tg targets, id int, local *net.TCPAddr, interval time.Duration, st *stats) {
	d := websocket.Dialer{
		NetDialContext:   (&net.Dialer{LocalAddr: local}).DialContext,
		HandshakeTimeout: 10 * time.Second,
	}
	var seq wsload.Seq
	everConnected := false
	for i := 0; i < maxIterations && ctx.Err() == nil; i++ {
		c, resp, err := d.DialContext(ctx, "ws://"+tg.addr("web", id)+"/ws", nil)
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			st.wsDialFail.Add(1)
			st.Sample("ws dial", "%v", err)
			sleepCtx(ctx, 50*time.Millisecond)
			continue
		}
		st.wsConnected.Add(1)
		if n := st.wsUp.Add(1); n > st.wsMaxConcurrent.Load() {
			st.wsMaxConcurrent.Store(n) // a peak, roughly
		}
		if everConnected {
			st.Reconnected(time.Now())
		}
		everConnected = true
		err = seq.Run(ctx, c, interval, 15*time.Second, wsload.Counter{Msgs: &st.wsMsgs, Lost: &st.wsLost, Dup: &st.wsDup, Sample: st.Sample})
		st.wsUp.Add(-1)
		if err == nil { // the load ended
			c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			c.Close()
			return
		}
		c.Close()
		if websocket.IsCloseError(err, websocket.CloseServiceRestart, websocket.CloseGoingAway) {
			st.wsMoved.Add(1)
			if id < len(st.wsMovesOf) {
				st.wsMovesOf[id].Add(1)
			}
			if websocket.IsCloseError(err, websocket.CloseServiceRestart) {
				st.wsRestart.Add(1)
			}
		} else {
			st.wsUnclean.Add(1)
			st.Sample("ws close", "%s %s: %v", time.Now().Format("15:04:05.000"), c.LocalAddr(), err)
		}
	}
}

// tcpClient is wsClient over raw TCP: lines "n\n" echoed back. Raw TCP has
// no way to ask a client to move, so any close means reconnect and resend.
func tcpClient(ctx context.Context, tg targets, id int, interval time.Duration, st *stats) {
	d := net.Dialer{LocalAddr: sourceIP(id), Timeout: 5 * time.Second}
	var chk seqChecker
	var c net.Conn
	var br *bufio.Reader
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	everConnected := false
	for i := 0; i < maxIterations && ctx.Err() == nil; i++ {
		if c == nil {
			var err error
			c, err = d.DialContext(ctx, "tcp", tg.addr("tcp", id))
			if err != nil {
				c = nil
				if ctx.Err() != nil {
					return
				}
				st.tcpDialFail.Add(1)
				st.Sample("tcp dial", "%v", err)
				sleepCtx(ctx, 50*time.Millisecond)
				continue
			}
			br = bufio.NewReader(c)
			st.tcpConnected.Add(1)
			if everConnected {
				st.Reconnected(time.Now())
			}
			everConnected = true
		}
		if err := tcpRound(c, br, &chk, st); err != nil {
			c.Close()
			c = nil
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !isReset(err) {
				st.Sample("tcp close", "%v", err)
			}
			st.tcpReconnect.Add(1)
			continue
		}
		if !sleepCtx(ctx, jitter(interval)) {
			return
		}
	}
}

func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe")
}

func tcpRound(c net.Conn, br *bufio.Reader, chk *seqChecker, st *stats) error {
	next := chk.acked + 1
	var b []byte
	for k := 0; k < window; k++ {
		b = strconv.AppendInt(b, int64(next+k), 10)
		b = append(b, '\n')
	}
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := c.Write(b); err != nil {
		return err
	}
	last := next + window - 1
	for chk.acked < last {
		line, err := br.ReadString('\n')
		if err != nil {
			return err // a partial line is dropped: it is sent again
		}
		n, err := strconv.Atoi(strings.TrimSuffix(line, "\n"))
		if err != nil {
			return fmt.Errorf("bad echo %q", line)
		}
		before := chk.acked
		if err := chk.got(n); err != nil {
			if n <= before {
				st.tcpDup.Add(1)
			} else {
				st.tcpLost.Add(int64(n - before - 1))
			}
			st.Sample("tcp sequence", "%v", err)
			continue
		}
		st.tcpLines.Add(1)
	}
	return nil
}

// loadSpec says how much of each kind of load to run.
type loadSpec struct {
	unary, streams, http, ws, tcp int
	wsInterval, tcpInterval       time.Duration
	streamWatch                   streamObserver // nil for none
	// wsSource is the address WebSocket client id dials from; nil means
	// sourceIP.
	wsSource func(id int) *net.TCPAddr
	// limit bounds the whole load in time; 0 means 2 minutes.
	limit time.Duration
}

// runLoad starts every client; the returned function stops them and waits.
func runLoad(ctx context.Context, t *testing.T, tg targets, spec loadSpec, st *stats) (stop func()) {
	// A hard bound on the whole load, whatever the test does.
	if spec.limit <= 0 {
		spec.limit = 2 * time.Minute
	}
	if spec.wsSource == nil {
		spec.wsSource = sourceIP
	}
	ctx, cancel := context.WithTimeout(ctx, spec.limit)
	var wg sync.WaitGroup
	tr := &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second, DisableCompression: true,
		DialContext: (&net.Dialer{LocalAddr: sourceIP(0), Timeout: 5 * time.Second}).DialContext}
	cli := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	goN := func(n int, f func(id int)) {
		for i := range n {
			wg.Add(1)
			go func() { defer wg.Done(); f(i) }()
		}
	}
	goN(spec.unary, func(id int) { unaryLoad(ctx, tg, id, st) })
	goN(spec.streams, func(id int) { streamLoad(ctx, tg, id, st, spec.streamWatch) })
	goN(spec.http, func(id int) { httpLoad(ctx, tg, id, cli, st) })
	goN(spec.tcp, func(id int) { tcpClient(ctx, tg, id, spec.tcpInterval, st) })
	// WebSocket clients start spread over a second, as real ones would.
	goN(spec.ws, func(id int) {
		if sleepCtx(ctx, time.Duration(id)*time.Second/time.Duration(max(spec.ws, 1))) {
			wsClient(ctx, tg, id, spec.wsSource(id), spec.wsInterval, st)
		}
	})
	return func() {
		cancel()
		wg.Wait()
		tr.CloseIdleConnections()
	}
}
