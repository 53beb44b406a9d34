package main

// The rollout workload: a rolling replacement of three backend "pods" under
// WebSocket, gRPC unary and HTTP/1.1 load, through each proxy, with the
// step a Kubernetes ingress would take for that proxy (see rolloutctl.go).
// It is the contrast of internal/rollout (longhaul only, in process): here
// every proxy runs as its own process and the clients only count.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/longhaul-proxy/longhaul/internal/wsload"
)

// Metric names of the rollout workload.
const (
	mGrpcOK      = "grpc ok"
	mGrpcFail    = "grpc failed"
	mHTTPOK      = "http ok"
	mHTTPFail    = "http failed"
	mWSEchoed    = "ws echoed"
	mWSLost      = "ws lost"
	mWSSeqErr    = "ws seq errors"
	mStreamUnav  = "grpc streams unavailable"
	mStreamOther = "grpc streams other"
	mWSGraceful  = "ws graceful"
	mWSDropped   = "ws dropped"
	mWSOther     = "ws other"
	mWSDialFail  = "ws dial failed"
	mReconnPeak  = "reconnect peak/s"
	rolloutSteps = 3 // pods replaced, one at a time: all three
)

// rolloutPod is one backend replica: an HTTP/1.1 + WebSocket echo server
// and a gRPC health server, on its own 127.0.0.x address.
type rolloutPod struct {
	name               string
	httpAddr, grpcAddr string
	lns                []*trackListener
	httpSrv            *http.Server
	grpcSrv            *grpc.Server
	wg                 sync.WaitGroup
	once               sync.Once
	killed             int // connections open when it was killed
}

// trackListener remembers every connection it accepted, so that kill can
// close them all at once, as the kernel does when a process is SIGKILLed.
type trackListener struct {
	net.Listener
	mu     sync.Mutex
	conns  []net.Conn
	closed bool
}

func (l *trackListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	l.conns = append(l.conns, c)
	return c, nil
}

// closeAll closes the listener and every accepted connection; it returns
// how many of those were still open.
func (l *trackListener) closeAll() int {
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()
	l.Listener.Close()
	open := 0
	for _, c := range conns {
		if c.Close() == nil {
			open++
		}
	}
	return open
}

// podIP is the loopback address of the pod of generation gen.
func podIP(gen int) string { return fmt.Sprintf("127.0.0.%d", 100+gen%150) }

func startRolloutPod(gen int) (*rolloutPod, error) {
	p := &rolloutPod{name: fmt.Sprintf("pod-%d", gen)}
	for range 2 {
		ln, err := net.Listen("tcp", podIP(gen)+":0")
		if err != nil {
			p.kill()
			return nil, fmt.Errorf("%s: listen: %w", p.name, err)
		}
		p.lns = append(p.lns, &trackListener{Listener: ln})
	}
	p.httpAddr, p.grpcAddr = p.lns[0].Addr().String(), p.lns[1].Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(httpBody)
	})
	mux.HandleFunc("/ws", serveWebSocketEcho)
	p.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: discardLogger()}
	p.grpcSrv = grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(p.grpcSrv, hs)
	p.wg.Go(func() { _ = p.httpSrv.Serve(p.lns[0]) })
	p.wg.Go(func() { _ = p.grpcSrv.Serve(p.lns[1]) })
	return p, nil
}

// kill stops the pod abruptly: listeners and every connection closed at
// once, no close frame, no GOAWAY (SIGKILL after the grace period).
func (p *rolloutPod) kill() {
	p.once.Do(func() {
		for _, l := range p.lns {
			p.killed += l.closeAll()
		}
		if p.httpSrv != nil {
			_ = p.httpSrv.Close()
		}
		if p.grpcSrv != nil {
			p.grpcSrv.Stop()
		}
		p.wg.Wait()
	})
}

// closeKind classifies how a WebSocket connection ended.
type closeKind int

const (
	closeGraceful closeKind = iota // 1012 service restart or 1001 going away: the client was asked to move
	closeDropped                   // 1006, EOF, reset: the connection was cut
	closeOther                     // another close code, or the client gave up waiting
)

func (k closeKind) String() string {
	return [...]string{"graceful", "dropped", "other"}[k]
}

// classifyClose says how the error that ended a WebSocket session counts.
func classifyClose(err error) closeKind {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		switch ce.Code {
		case websocket.CloseServiceRestart, websocket.CloseGoingAway:
			return closeGraceful
		case websocket.CloseAbnormalClosure:
			return closeDropped
		}
		return closeOther
	}
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		isConnReset(err):
		return closeDropped
	case errors.As(err, &ne) && ne.Timeout():
		return closeOther
	}
	return closeOther
}

func isConnReset(err error) bool {
	s := err.Error()
	return strings.Contains(s, "connection reset") || strings.Contains(s, "broken pipe")
}

// rolloutStats are the clients' figures.
type rolloutStats struct {
	grpcOK, grpcFail, httpOK, httpFail atomic.Int64
	streamUnav, streamOther            atomic.Int64 // server streams ended by an error, by code
	wsUp, wsEchoed, wsLost, wsSeqErr   atomic.Int64
	wsCloses                           [3]atomic.Int64 // by closeKind
	wsDialFail                         atomic.Int64
	// wsOpened counts the connections that opened (first ones and
	// reconnects); wsSent the messages written (echoed, lost, or in
	// flight when the load ended); wsUpPeak the most open at once.
	wsOpened, wsSent, wsUpPeak atomic.Int64

	wsload.Tally
}

func (s *rolloutStats) metrics() metrics {
	peak := s.ReconnectPeak(time.Second)
	return metrics{
		mGrpcOK: float64(s.grpcOK.Load()), mGrpcFail: float64(s.grpcFail.Load()),
		mStreamUnav: float64(s.streamUnav.Load()), mStreamOther: float64(s.streamOther.Load()),
		mHTTPOK: float64(s.httpOK.Load()), mHTTPFail: float64(s.httpFail.Load()),
		mWSEchoed: float64(s.wsEchoed.Load()), mWSLost: float64(s.wsLost.Load()), mWSSeqErr: float64(s.wsSeqErr.Load()),
		mWSGraceful: float64(s.wsCloses[closeGraceful].Load()), mWSDropped: float64(s.wsCloses[closeDropped].Load()),
		mWSOther: float64(s.wsCloses[closeOther].Load()), mWSDialFail: float64(s.wsDialFail.Load()),
		mReconnPeak: float64(peak),
	}
}

var (
	sleepCtx = wsload.Sleep
	jitter   = wsload.Jitter
)

// maxRolloutIterations bounds every client loop besides its context.
const maxRolloutIterations = 200000

func grpcUnaryLoad(ctx context.Context, cc *grpc.ClientConn, st *rolloutStats) {
	cli := healthpb.NewHealthClient(cc)
	for i := 0; i < maxRolloutIterations && ctx.Err() == nil; i++ {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		resp, err := cli.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		switch {
		case err != nil:
			st.grpcFail.Add(1)
			st.Sample("grpc", "%s %v", time.Now().Format("15:04:05.000"), err)
		case resp.GetStatus() != healthpb.HealthCheckResponse_SERVING:
			st.grpcFail.Add(1)
			st.Sample("grpc", "status %v", resp.GetStatus())
		default:
			st.grpcOK.Add(1)
		}
		if !sleepCtx(ctx, jitter(5*time.Millisecond)) {
			return
		}
	}
}

// grpcStreamLoad keeps a health Watch server stream open (a long-lived
// call) and opens it again when it ends; it counts the ends by code:
// UNAVAILABLE is what a client retries elsewhere, anything else is a
// failed call.
func grpcStreamLoad(ctx context.Context, cc *grpc.ClientConn, st *rolloutStats) {
	cli := healthpb.NewHealthClient(cc)
	for i := 0; i < maxRolloutIterations && ctx.Err() == nil; i++ {
		s, err := cli.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err == nil {
			for err == nil {
				_, err = s.Recv()
			}
		}
		if ctx.Err() != nil {
			return
		}
		if status.Code(err) == codes.Unavailable {
			st.streamUnav.Add(1)
		} else {
			st.streamOther.Add(1)
			st.Sample("grpc stream", "%s %v", time.Now().Format("15:04:05.000"), err)
		}
		sleepCtx(ctx, jitter(20*time.Millisecond))
	}
}

func httpGetLoad(ctx context.Context, cli *http.Client, url string, st *rolloutStats) {
	for i := 0; i < maxRolloutIterations && ctx.Err() == nil; i++ {
		req, _ := http.NewRequestWithContext(context.WithoutCancel(ctx), "GET", url, nil)
		resp, err := cli.Do(req)
		if err != nil {
			st.httpFail.Add(1)
			st.Sample("http", "%s %v", time.Now().Format("15:04:05.000"), err)
		} else {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr != nil || resp.StatusCode != 200 || len(body) != len(httpBody) {
				st.httpFail.Add(1)
				st.Sample("http", "%s status %d, %d bytes, %v", time.Now().Format("15:04:05.000"), resp.StatusCode, len(body), rerr)
			} else {
				st.httpOK.Add(1)
			}
		}
		if !sleepCtx(ctx, jitter(5*time.Millisecond)) {
			return
		}
	}
}

// wsSeqClient exchanges sequence-numbered messages with an echo backend,
// reading all the time (so a close frame is answered at once), and
// reconnects on any close, resending what was not echoed yet. Messages
// written on a connection that ended before their echo came back are
// counted lost (the application had to resend them); echoes out of
// sequence are counted as sequence errors.
//
// firstDone, if not nil, is called once, when the first dial has ended
// (opened or failed): the scale workload paces its ramp-up with it.
func wsSeqClient(ctx context.Context, url string, id int, interval time.Duration, st *rolloutStats, firstDone func()) {
	d := websocket.Dialer{
		NetDialContext:   (&net.Dialer{LocalAddr: &net.TCPAddr{IP: sourceIP(id)}, Timeout: 5 * time.Second}).DialContext,
		HandshakeTimeout: 5 * time.Second, ReadBufferSize: 1024, WriteBufferSize: 1024,
	}
	var seq wsload.Seq
	everConnected := false
	for i := 0; i < maxRolloutIterations && ctx.Err() == nil; i++ {
		c, resp, err := d.DialContext(ctx, url, nil)
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		if firstDone != nil {
			firstDone()
			firstDone = nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			st.wsDialFail.Add(1)
			st.Sample("ws dial", "%s %v", time.Now().Format("15:04:05.000"), err)
			sleepCtx(ctx, jitter(100*time.Millisecond))
			continue
		}
		if everConnected {
			st.Reconnected(time.Now())
		}
		everConnected = true
		st.wsOpened.Add(1)
		st.notePeak(st.wsUp.Add(1))
		from := seq.Acked
		err = seq.Run(ctx, c, interval, 10*time.Second, wsSeqReport{st})
		st.wsSent.Add(int64(seq.Acked - from + seq.Unacked()))
		if err != nil {
			st.wsLost.Add(int64(seq.Unacked())) // sent, never echoed: resent on the next connection
		}
		st.wsUp.Add(-1)
		if err == nil { // the load ended
			_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			c.Close()
			return
		}
		c.Close()
		k := classifyClose(err)
		st.wsCloses[k].Add(1)
		if k != closeGraceful {
			st.Sample("ws close "+k.String(), "%s %v", time.Now().Format("15:04:05.000"), err)
		}
	}
}

// notePeak raises wsUpPeak to up if it is higher.
func (s *rolloutStats) notePeak(up int64) {
	for {
		p := s.wsUpPeak.Load()
		if up <= p || s.wsUpPeak.CompareAndSwap(p, up) {
			return
		}
	}
}

// wsSeqReport counts a WebSocket client's echoes into st.
type wsSeqReport struct{ st *rolloutStats }

func (r wsSeqReport) Echoed() { r.st.wsEchoed.Add(1) }

func (r wsSeqReport) OutOfOrder(n, acked int) {
	r.st.wsSeqErr.Add(1)
	r.st.Sample("ws sequence", "got %d after %d", n, acked)
}

// rolloutSpec is the load and the pace of the rollout.
type rolloutSpec struct {
	wsClients  int
	wsInterval time.Duration
	grpcConc   int
	streams    int
	httpConc   int
	drain      time.Duration // from terminating to the kill: the grace period
}

// rolloutLoad starts every client of spec against the web and grpc
// addresses (one proxy's, or each replica's: the loops are spread over
// them in turn); stop ends them and waits.
func rolloutLoad(webAddrs, grpcAddrs []string, spec rolloutSpec, st *rolloutStats) (stop func(), err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // a hard bound, whatever happens
	var conns []*grpc.ClientConn
	for i := range max(2, len(grpcAddrs)) {
		cc, err := grpc.NewClient("passthrough:///"+grpcAddrs[i%len(grpcAddrs)], grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			cancel()
			for _, cc := range conns {
				cc.Close()
			}
			return nil, fmt.Errorf("grpc client: %w", err)
		}
		conns = append(conns, cc)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second, DisableCompression: true,
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: sourceIP(0)}, Timeout: 5 * time.Second}).DialContext}
	cli := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	for i := range spec.grpcConc {
		wg.Go(func() { grpcUnaryLoad(ctx, conns[i%len(conns)], st) })
	}
	for i := range spec.streams {
		wg.Go(func() { grpcStreamLoad(ctx, conns[i%len(conns)], st) })
	}
	for i := range spec.httpConc {
		wg.Go(func() { httpGetLoad(ctx, cli, "http://"+webAddrs[i%len(webAddrs)]+"/", st) })
	}
	for i := range spec.wsClients {
		wg.Go(func() {
			// Spread over a second, as real clients would arrive.
			if sleepCtx(ctx, time.Duration(i)*time.Second/time.Duration(spec.wsClients)) {
				wsSeqClient(ctx, "ws://"+webAddrs[i%len(webAddrs)]+"/ws", i, spec.wsInterval, st, nil)
			}
		})
	}
	return func() {
		cancel()
		wg.Wait()
		tr.CloseIdleConnections()
		for _, cc := range conns {
			cc.Close()
		}
	}, nil
}

// rolloutControl is how an ingress controller tells one proxy about pods.
type rolloutControl interface {
	// start runs the proxy in front of pods.
	start(ctx context.Context, pods []*rolloutPod) error
	podEvents
	webAddr() string
	grpcAddr() string
	proc() *target
	stop()
}

// runRollout is the workload: the whole rollout through one proxy.
func runRollout(ctx context.Context, e *env, t *target) (metrics, error) {
	ctl, err := newRolloutControl(t.name, e.tools, e.workDir, e.opts.rolloutDrain)
	if err != nil {
		return nil, err
	}
	spec := rolloutSpec{wsClients: e.opts.rolloutWS, wsInterval: 500 * time.Millisecond, grpcConc: 4, streams: 16, httpConc: 4,
		drain: e.opts.rolloutDrain}
	return rollout(ctx, ctl, spec, log.Printf)
}

// rollout runs the scenario through ctl and returns the clients' figures.
func rollout(ctx context.Context, ctl rolloutControl, spec rolloutSpec, logf func(string, ...any)) (metrics, error) {
	pods := new(podSet)
	defer pods.killAll()
	if err := pods.start(3); err != nil {
		return nil, err
	}
	if err := ctl.start(ctx, pods.live); err != nil {
		return nil, err
	}
	defer ctl.stop()
	st := new(rolloutStats)
	stop, err := rolloutLoad([]string{ctl.webAddr()}, []string{ctl.grpcAddr()}, spec, st)
	if err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	for deadline := time.Now().Add(20 * time.Second); st.wsUp.Load() < int64(spec.wsClients); {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("only %d of %d WebSocket clients connected:%s", st.wsUp.Load(), spec.wsClients, st.Errors())
		}
		time.Sleep(20 * time.Millisecond)
	}
	sleepCtx(ctx, 2*time.Second)
	if _, err := replacePods(ctx, ctl, ctl.proc().name, ctl.proc().Alive, pods, spec.drain, logf); err != nil {
		return nil, err
	}
	sleepCtx(ctx, 2*time.Second)
	stop()
	stopped = true
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m := st.metrics()
	if s := st.Errors(); s != "" {
		logf("rollout %s: first errors by kind:%s", ctl.proc().name, s)
	}
	return m, nil
}

// podSet is the live pods, oldest first, and the generation of the next.
type podSet struct {
	live []*rolloutPod
	gen  int
}

// start adds n new pods.
func (s *podSet) start(n int) error {
	for range n {
		p, err := startRolloutPod(s.gen)
		if err != nil {
			return err
		}
		s.gen++
		s.live = append(s.live, p)
	}
	return nil
}

func (s *podSet) killAll() {
	for _, p := range s.live {
		p.kill()
	}
}

// podEvents is how an ingress controller tells the proxies about pods.
type podEvents interface {
	// terminating: p got its deletion timestamp; live still includes it.
	terminating(p *rolloutPod, live []*rolloutPod) error
	// removed: p is gone (killed); live no longer includes it.
	removed(p *rolloutPod, live []*rolloutPod) error
	// added: p joined, ready; live includes it.
	added(p *rolloutPod, live []*rolloutPod) error
}

// killWatcher is a podEvents that also wants to look just before a kill
// (what the proxies still hold on the pod).
type killWatcher interface {
	killing(p *rolloutPod)
}

// replacePods replaces the pods one at a time, rolloutSteps times, oldest
// first: terminating, drain (the grace period), kill, removed, a new pod
// added, 1 s, then alive must report the proxies still running. It
// returns the connections the pods still had open when they were killed.
func replacePods(ctx context.Context, ev podEvents, name string, alive func() error, pods *podSet, drain time.Duration, logf func(string, ...any)) (killed int, err error) {
	for step := range rolloutSteps {
		old := pods.live[0]
		logf("rollout %s step %d: %s terminating", name, step+1, old.name)
		since := time.Now()
		if err := ev.terminating(old, pods.live); err != nil {
			return killed, fmt.Errorf("step %d: terminating %s: %w", step+1, old.name, err)
		}
		if !sleepCtx(ctx, drain) {
			return killed, ctx.Err()
		}
		if kw, ok := ev.(killWatcher); ok {
			kw.killing(old)
		}
		late := time.Since(since) - drain
		old.kill()
		killed += old.killed
		pods.live = pods.live[1:]
		if err := ev.removed(old, pods.live); err != nil {
			return killed, fmt.Errorf("step %d: removing %s: %w", step+1, old.name, err)
		}
		if err := pods.start(1); err != nil {
			return killed, err
		}
		np := pods.live[len(pods.live)-1]
		if err := ev.added(np, pods.live); err != nil {
			return killed, fmt.Errorf("step %d: adding %s: %w", step+1, np.name, err)
		}
		note := ""
		if late > 100*time.Millisecond {
			note = fmt.Sprintf(" (the kill came %v after the grace period: this process was slow)", late.Round(time.Millisecond))
		}
		logf("rollout %s step %d: %s killed with %d connections open%s; %s added", name, step+1, old.name, old.killed, note, np.name)
		if !sleepCtx(ctx, time.Second) {
			return killed, ctx.Err()
		}
		if err := alive(); err != nil {
			return killed, err
		}
	}
	return killed, nil
}

func rolloutAbout(o options) string {
	return fmt.Sprintf("Three pods (each an HTTP/1.1 + WebSocket echo server and a gRPC health server on its own 127.0.0.x address) behind the proxy, "+
		"under load: %d WebSocket clients each keeping 2 sequence-numbered messages in flight every 0.5 s and reconnecting on any close (resending what was not echoed), "+
		"4 gRPC unary loops (grpc-go, 2 connections, health Check, 5 s timeout, no retry policy), 16 long-lived gRPC server streams (health Watch, opened again whenever they end) and 4 HTTP/1.1 keep-alive GET loops (Go's client, which retries a GET once on a reused connection that fails before any response). "+
		"Each pod in turn is marked terminating, left %v (its grace period), then killed (listeners and connections closed at once), removed, and a new pod is added; 1 s between steps. "+
		"How each proxy hears of it, as its ingress controller would tell it: longhaul, watched endpoints files with the EndpointSlice conditions (ready: false, serving: true, terminating: true), drain timeout %v (the grace period less a margin), WebSocket close code 1012; "+
		"HAProxy, its runtime API (`set server be/srv state drain`, then `state maint` after the kill; new pods in pre-declared spare slots with `set server addr` and `state ready`); "+
		"NGINX, a configuration without the terminating pod and a reload (SIGHUP, as `nginx -s reload`), another reload to add the new pod. "+
		"Lost WebSocket messages were written on a connection that ended before their echo (the client resent them); out of sequence counts echoes that were not the next number. "+
		"gRPC streams cut: server streams that ended with an error, by code (UNAVAILABLE is the code a client retries elsewhere; longhaul ends the streams still open at its drain deadline with it). Reconnect peak: most WebSocket reconnects in one wall-clock second. Counts, not rates: one run per repetition, on 2 shared cores.",
		o.rolloutWS, o.rolloutDrain, longhaulDrainTimeout(o.rolloutDrain))
}
