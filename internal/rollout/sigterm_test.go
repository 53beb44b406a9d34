package rollout_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/longhaul-proxy/longhaul/internal/app"
)

// service stands for a Kubernetes Service in front of several longhauls:
// it polls each one's /readyz and sends clients only to ready ones.
type service struct {
	ins   []*instance
	conns [][]*grpc.ClientConn // per instance
	ready []atomic.Bool
	// lastReady is when each instance was last seen ready (by the poller).
	mu        sync.Mutex
	lastReady []time.Time
}

func (s *service) pick(client int) int {
	var ready []int
	for i := range s.ins {
		if s.ready[i].Load() {
			ready = append(ready, i)
		}
	}
	if len(ready) == 0 {
		return client % len(s.ins)
	}
	return ready[client%len(ready)]
}

func (s *service) addr(listener string, client int) string {
	return s.ins[s.pick(client)].a.ListenerAddr(listener).String()
}

func (s *service) grpcConn(client int) *grpc.ClientConn {
	c := s.conns[s.pick(client)]
	return c[client%len(c)]
}

// poll refreshes readiness every 20ms until ctx ends.
func (s *service) poll(ctx context.Context) {
	cli := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	urls := make([]string, len(s.ins))
	for i, in := range s.ins {
		urls[i] = "http://" + in.a.AdminAddr().String() + "/readyz"
	}
	for range maxIterations {
		for i, u := range urls {
			ok := false
			if resp, err := cli.Get(u); err == nil {
				ok = resp.StatusCode == http.StatusOK
				resp.Body.Close()
			}
			s.ready[i].Store(ok)
			if ok {
				s.mu.Lock()
				s.lastReady[i] = time.Now()
				s.mu.Unlock()
			}
		}
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return
		}
	}
}

func TestSIGTERMOneOfTwo(t *testing.T) {
	began := time.Now()
	spec := loadSpec{unary: 4, streams: 8, http: 4, ws: 300, tcp: 20,
		wsInterval: time.Second, tcpInterval: 200 * time.Millisecond}
	const shutdownDelay = 500 * time.Millisecond

	var pods []*pod
	for i := range 3 {
		pods = append(pods, startPod(t, fmt.Sprintf("pod-%d", i)))
	}
	config := func() string { return staticConfig(t, pods, drainTimeout, "tcp", "web", "grpc") }
	svc := &service{ready: make([]atomic.Bool, 2), lastReady: make([]time.Time, 2)}
	for range 2 {
		in := startApp(t, config(), app.Options{ShutdownDelay: shutdownDelay})
		svc.ins = append(svc.ins, in)
		svc.conns = append(svc.conns, []*grpc.ClientConn{
			grpcDial(t, in.a.ListenerAddr("grpc").String()), grpcDial(t, in.a.ListenerAddr("grpc").String())})
	}
	pollCtx, stopPoll := context.WithCancel(context.Background())
	var pollWG sync.WaitGroup
	pollWG.Go(func() { svc.poll(pollCtx) })
	t.Cleanup(func() { stopPoll(); pollWG.Wait() })
	for deadline := time.Now().Add(5 * time.Second); !svc.ready[0].Load() || !svc.ready[1].Load(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the longhauls were never both ready")
		}
	}

	st := new(stats)
	stopLoad := runLoad(context.Background(), t, svc, spec, st)
	t.Cleanup(stopLoad)
	for deadline := time.Now().Add(30 * time.Second); st.wsUp.Load() < int64(spec.ws); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d WebSocket clients connected: %s", st.wsUp.Load(), spec.ws, st.Errors())
		}
	}
	time.Sleep(time.Second)
	first, second := svc.ins[0], svc.ins[1]
	before := first.a.Sessions().Len()
	t.Logf("SIGTERM to the first longhaul, which has %d of %d sessions", before, before+second.a.Sessions().Len())
	if before == 0 {
		t.Error("the first longhaul had no session to move")
	}
	if err := first.stop(drainTimeout + shutdownDelay + 10*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("the first longhaul's Run returned %v after SIGTERM (shutdown delay %v, drain timeout %v)",
		first.took.Round(time.Millisecond), shutdownDelay, drainTimeout)
	if n := first.a.Sessions().Len(); n != 0 {
		t.Errorf("%d sessions left on the stopped longhaul: %v", n, first.a.Sessions().Infos())
	}
	if first.took > shutdownDelay+drainTimeout+time.Second {
		t.Errorf("the stopped longhaul took %v to exit, more than its shutdown delay and drain timeout", first.took)
	}
	time.Sleep(time.Second)
	// Every WebSocket and TCP client is on the second longhaul now.
	ws, tcp := 0, 0
	for _, s := range second.a.Sessions().Infos() {
		switch s.Protocol {
		case "websocket":
			ws++
		case "tcp":
			tcp++
		}
	}
	t.Logf("the second longhaul has %d WebSocket and %d TCP sessions", ws, tcp)
	if ws != spec.ws || tcp != spec.tcp {
		t.Errorf("the second longhaul has %d WebSocket and %d TCP sessions, want %d and %d", ws, tcp, spec.ws, spec.tcp)
	}
	stopLoad()
	reportAndCheck(t, st, first.mig, time.Since(began))
	if got := first.mig.outcome("websocket", "forced"); got > 0 {
		t.Errorf("%d WebSocket sessions were closed at the drain deadline instead of moving before it", got)
	}
	if st.wsMoved.Load() == 0 {
		t.Error("no WebSocket session moved")
	}
}
