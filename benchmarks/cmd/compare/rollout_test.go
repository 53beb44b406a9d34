package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/discovery"
)

func TestClassifyClose(t *testing.T) {
	for _, c := range []struct {
		err  error
		want closeKind
	}{
		{&websocket.CloseError{Code: websocket.CloseServiceRestart}, closeGraceful},
		{&websocket.CloseError{Code: websocket.CloseGoingAway}, closeGraceful},
		{fmt.Errorf("read: %w", &websocket.CloseError{Code: websocket.CloseServiceRestart}), closeGraceful},
		{&websocket.CloseError{Code: websocket.CloseAbnormalClosure, Text: "unexpected EOF"}, closeDropped},
		{io.EOF, closeDropped},
		{io.ErrUnexpectedEOF, closeDropped},
		{&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, closeDropped},
		{errors.New("write tcp 127.0.0.2:1->127.0.0.1:2: write: broken pipe"), closeDropped},
		{&websocket.CloseError{Code: websocket.CloseNormalClosure}, closeOther},
		{&websocket.CloseError{Code: websocket.CloseInternalServerErr}, closeOther},
		{errors.New("no echo for 10s"), closeOther},
	} {
		if got := classifyClose(c.err); got != c.want {
			t.Errorf("classifyClose(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestLonghaulDrainTimeout(t *testing.T) {
	for grace, want := range map[time.Duration]time.Duration{3 * time.Second: 2500 * time.Millisecond,
		30 * time.Second: 29 * time.Second, 600 * time.Millisecond: 500 * time.Millisecond} {
		if got := longhaulDrainTimeout(grace); got != want {
			t.Errorf("longhaulDrainTimeout(%v) = %v, want %v", grace, got, want)
		}
	}
}

func fakePods(n int) []*rolloutPod {
	var pods []*rolloutPod
	for i := range n {
		pods = append(pods, &rolloutPod{name: fmt.Sprintf("pod-%d", i),
			httpAddr: fmt.Sprintf("%s:%d", podIP(i), 8000+i), grpcAddr: fmt.Sprintf("%s:%d", podIP(i), 9000+i)})
	}
	return pods
}

func TestEndpointsFile(t *testing.T) {
	pods := fakePods(3)
	b := endpointsFile(pods, pods[0], func(p *rolloutPod) string { return p.httpAddr })
	s, err := discovery.ParseEndpointsFile("web", b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	e, ok := s.Find(pods[0].httpAddr)
	if !ok || e.Ready || !e.Terminating || !e.Serving {
		t.Errorf("terminating pod: found %v, %+v\n%s", ok, e, b)
	}
	e, ok = s.Find(pods[2].httpAddr)
	if !ok || !e.Ready || e.Terminating {
		t.Errorf("live pod: found %v, %+v", ok, e)
	}
}

func testRolloutLayout(dir string) rolloutLayout {
	return rolloutLayout{Dir: dir, Web: "127.0.0.1:21001", GRPC: "127.0.0.1:21002", Admin: "127.0.0.1:21003",
		WebFile: filepath.Join(dir, "web.yaml"), GRPCFile: filepath.Join(dir, "grpc.yaml"), DrainTimeout: "2.5s"}
}

func TestRolloutLonghaulConfig(t *testing.T) {
	b, err := renderRollout("longhaul", rolloutLonghaulTmpl, testRolloutLayout(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(b)
	if err != nil {
		t.Fatalf("config.Parse: %v\n%s", err, b)
	}
	if len(cfg.Listeners) != 2 {
		t.Fatalf("%d listeners", len(cfg.Listeners))
	}
	for _, l := range cfg.Listeners {
		if l.Endpoints.File == "" || l.Drain.Timeout != 2500*time.Millisecond || l.Balance.Policy != "least-connections" {
			t.Errorf("listener %s: file %q, drain %v, policy %s", l.Name, l.Endpoints.File, l.Drain.Timeout, l.Balance.Policy)
		}
	}
	if cfg.Listeners[0].HTTP.WebSocket.CloseCode != 1012 {
		t.Errorf("close code %d", cfg.Listeners[0].HTTP.WebSocket.CloseCode)
	}
}

func TestRolloutHAProxyConfigAndCommands(t *testing.T) {
	pods := fakePods(3)
	l := testRolloutLayout(t.TempDir())
	l.Pods = haproxySlots(pods, rolloutSteps)
	b, err := renderRollout("haproxy", rolloutHAProxyTmpl, l)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{
		"stats socket " + l.Dir + "/admin.sock mode 600 level admin",
		"server slot0 " + pods[0].httpAddr + "\n",
		"server slot2 " + pods[2].grpcAddr + " proto h2\n",
		"server slot5 127.0.0.1:1 disabled\n",
		"server slot5 127.0.0.1:1 disabled proto h2\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("haproxy config lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "slot6") {
		t.Errorf("more slots than 3 pods + %d spares:\n%s", rolloutSteps, s)
	}
	got := haproxyCommands("ready", "slot3", pods[1])
	want := []string{
		"set server web/slot3 addr 127.0.0.101 port 8001", "set server web/slot3 state ready",
		"set server grpc/slot3 addr 127.0.0.101 port 9001", "set server grpc/slot3 state ready",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("ready commands:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := haproxyCommands("drain", "slot0", pods[0]); len(got) != 2 || got[1] != "set server grpc/slot0 state drain" {
		t.Errorf("drain commands: %q", got)
	}
	if haproxyRuntimeError("IP changed from '127.0.0.1' to '127.0.0.101', port changed from '1' to '8001' by 'stats socket command'") ||
		haproxyRuntimeError("") || !haproxyRuntimeError("No such server.") {
		t.Error("haproxyRuntimeError misreads an answer")
	}
	if path, err := exec.LookPath("haproxy"); err == nil {
		cfg := filepath.Join(l.Dir, "h.conf")
		if err := writeAtomic(cfg, b); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(path, "-c", "-f", cfg).CombinedOutput(); err != nil {
			t.Errorf("haproxy -c: %v\n%s", err, out)
		}
	}
}

func TestRolloutNginxConfig(t *testing.T) {
	pods := fakePods(2)
	l := testRolloutLayout(t.TempDir())
	l.Pods = podSlots(pods)
	b, err := renderRollout("nginx", rolloutNginxTmpl, l)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, p := range pods {
		if !strings.Contains(s, "server "+p.httpAddr+";") || !strings.Contains(s, "server "+p.grpcAddr+";") {
			t.Errorf("nginx config lacks %s:\n%s", p.name, s)
		}
	}
	if strings.Count(s, "least_conn;") != 2 || !strings.Contains(s, "proxy_set_header Upgrade $http_upgrade;") {
		t.Errorf("nginx config:\n%s", s)
	}
	if path, err := exec.LookPath("nginx"); err == nil {
		cfg := filepath.Join(l.Dir, "n.conf")
		if err := writeAtomic(cfg, b); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(path, "-t", "-c", cfg).CombinedOutput(); err != nil && !strings.Contains(string(out), "Permission denied") {
			t.Errorf("nginx -t: %v\n%s", err, out)
		}
	}
}

// TestWSSeqClientAgainstPod runs the WebSocket client against one pod, with
// no proxy, then kills the pod: the connection counts as dropped, what was
// in flight as lost, and the echoes before as in sequence.
func TestWSSeqClientAgainstPod(t *testing.T) {
	p, err := startRolloutPod(0)
	if err != nil {
		t.Skipf("no 127.0.0.x pod address here: %v", err)
	}
	defer p.kill()
	st := new(rolloutStats)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		wsSeqClient(ctx, "ws://"+p.httpAddr+"/ws", 0, 10*time.Millisecond, st, nil)
	}()
	for st.wsEchoed.Load() < 20 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	p.kill()
	for st.wsCloses[closeDropped].Load() == 0 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	m := st.metrics()
	if m[mWSDropped] < 1 || m[mWSGraceful] != 0 || m[mWSSeqErr] != 0 || m[mWSEchoed] < 20 {
		t.Errorf("metrics %v; errors:%s", m, st.Errors())
	}
	if p.killed < 1 {
		t.Errorf("the pod had %d connections open when killed", p.killed)
	}
}
