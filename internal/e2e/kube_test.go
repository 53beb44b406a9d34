package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/discovery"
	"github.com/longhaul-proxy/longhaul/discovery/kube"
	"github.com/longhaul-proxy/longhaul/internal/app"
	"github.com/longhaul-proxy/longhaul/internal/kubetest"
	"github.com/longhaul-proxy/longhaul/internal/testnet"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// klog starts its flush daemon at init; it lives for the process.
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	)
}

// within bounds how long a change at the API server may take to reach the
// proxy's picker.
const within = 2 * time.Second

const (
	service     = "echo"
	backendPort = 7000
	drainFor    = 2 * time.Second
)

// TestKubernetesEndToEnd runs longhaul (internal/app, as `longhaul run`
// wires it) against a real kube-apiserver, with backends as test hosts in
// network namespaces whose addresses the EndpointSlices carry:
//
//   - /readyz fails until the first list of the Service's slices has synced
//     (longhaul runs as a ServiceAccount that may not list them at first);
//   - longhaul dials exactly the slices' addresses, over the veth pairs;
//   - a backend turning terminating gets no new session once the picker
//     swapped (within the bound), and its sessions go to drain, which
//     closes them at the drain deadline while the others keep relaying;
//   - a second slice adds a backend that new sessions then reach;
//   - the API server restarts: sessions keep being relayed on the last
//     snapshot and /readyz stays 200, then a change made after the restart
//     reaches the picker;
//   - relists and migrations are counted in /metrics.
func TestKubernetesEndToEnd(t *testing.T) {
	hosts := newNetnsHosts(t)
	var bs []*backend
	for i := range 4 {
		bs = append(bs, startBackend(t, fmt.Sprintf("b%d", i), hosts.add(t, i), backendPort))
	}
	t.Logf("backends in network namespaces: %s %s %s %s (run %s)", bs[0].Addr(), bs[1].Addr(), bs[2].Addr(), bs[3].Addr(), hosts.run)

	cl := kubetest.Start(t)
	ctx := context.Background()
	ns := cl.CreateNamespace(t, "e2e-")
	api := cl.Client.DiscoveryV1().EndpointSlices(ns)

	// longhaul runs as the ServiceAccount deploy/ gives it, which at first
	// has no rights: the first list fails until deploy/rbac.yaml's Role and
	// RoleBinding exist.
	saClient := cl.ServiceAccountClient(t, ns, "longhaul")

	slice, err := api.Create(ctx, endpointSlice(service+"-a", bs[0], bs[1], bs[2]), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	r := startApp(t, saClient, ns)
	adminURL := "http://" + r.a.AdminAddr().String()
	time.Sleep(time.Second)
	if code, body := httpGet(t, adminURL+"/readyz"); code == http.StatusOK {
		t.Fatalf("/readyz is 200 before longhaul could list the EndpointSlices: %s", body)
	}
	grantRead(t, cl.Client, ns)
	granted := time.Now()
	waitFor(t, 30*time.Second, "/readyz 200 after the Role was granted", func() bool {
		code, _ := httpGet(t, adminURL+"/readyz")
		return code == http.StatusOK
	})
	t.Logf("/readyz 200 %v after the Role was granted (the reflector's list retry backoff)", time.Since(granted).Round(time.Millisecond))

	lis := r.a.ListenerAddr("echo").String()
	up := r.a.Upstream("echo")
	inSlices := map[string]bool{bs[0].Addr(): true, bs[1].Addr(): true, bs[2].Addr(): true}

	// Sessions spread over the three backends, dialled at the slices'
	// addresses and arriving over the veth pairs.
	type session struct {
		c       net.Conn
		backend string
	}
	var sessions []session
	t.Cleanup(func() {
		for _, s := range sessions {
			s.c.Close()
		}
	})
	dial := func() session {
		t.Helper()
		c, err := net.DialTimeout("tcp", lis, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		name, err := greeting(c)
		if err != nil {
			c.Close()
			t.Fatalf("no greeting through longhaul: %v", err)
		}
		c.SetDeadline(time.Time{})
		return session{c, name}
	}
	perBackend := map[string]int{}
	for range 30 {
		s := dial()
		sessions = append(sessions, s)
		perBackend[s.backend]++
	}
	t.Logf("30 sessions: %v", perBackend)
	for _, b := range bs[:3] {
		if perBackend[b.Name] == 0 {
			t.Errorf("no session reached %s (%s): %v", b.Name, b.Addr(), perBackend)
		}
		_, peers := b.Accepted()
		for ip := range peers {
			if ip != b.Host.HostIP.String() {
				t.Errorf("%s accepted a connection from %s, want only %s (the test's end of its veth)", b.Name, ip, b.Host.HostIP)
			}
		}
	}
	for _, in := range r.a.Sessions().Infos() {
		if !inSlices[in.Endpoint] {
			t.Errorf("session %d dialled %s, which no EndpointSlice carries", in.ID, in.Endpoint)
		}
	}
	if n, _ := bs[3].Accepted(); n != 0 {
		t.Errorf("%s got %d connections before any slice named it", bs[3].Name, n)
	}
	for i, s := range sessions {
		echo(t, s.c, fmt.Sprint(i))
	}

	// b0 turns terminating (still serving): the picker drops it within the
	// bound, and drain takes its sessions.
	onB0 := len(r.a.Sessions().Endpoint(bs[0].Addr()))
	slice.Endpoints[0].Conditions = discoveryv1.EndpointConditions{Ready: new(false), Serving: new(true), Terminating: new(true)}
	changed := time.Now()
	if slice, err = api.Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, within, "the picker without b0", func() bool { return !pickable(up.Picker(), bs[0].Addr()) })
	t.Logf("b0 terminating: picker swapped %v after the update was sent", time.Since(changed).Round(time.Microsecond))
	// Drain starts the migrations over its window (half the timeout),
	// with jitter; each session then keeps its deadline.
	migrating := map[uint64]bool{}
	waitFor(t, drainFor, "every session of b0 handed to drain", func() bool {
		all := true
		for _, s := range r.a.Sessions().Endpoint(bs[0].Addr()) {
			in := s.Info()
			if in.Migrating {
				migrating[in.ID] = true
				if in.Deadline.After(changed.Add(drainFor + within)) {
					t.Errorf("session %d: drain deadline %v, want at most %v after the update", in.ID, in.Deadline.Sub(changed), drainFor)
				}
			} else {
				all = false
			}
		}
		return all
	})
	t.Logf("%d of b0's %d sessions seen migrating (the rest had already ended)", len(migrating), onB0)
	b0Accepted, _ := bs[0].Accepted()
	for range 20 {
		s := dial()
		sessions = append(sessions, s)
		if s.backend == bs[0].Name {
			t.Errorf("a new session went to terminating %s", bs[0].Name)
		}
	}
	if n, _ := bs[0].Accepted(); n != b0Accepted {
		t.Errorf("%s accepted %d connections after it turned terminating", bs[0].Name, n-b0Accepted)
	}

	// At the drain deadline (tcp: deadline) its sessions are closed; the
	// others relay on.
	waitFor(t, drainFor+3*time.Second, "b0's sessions closed by drain", func() bool {
		return len(r.a.Sessions().Endpoint(bs[0].Addr())) == 0
	})
	for i, s := range sessions {
		if s.backend == bs[0].Name {
			s.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := s.c.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("session %d on %s: read %d bytes, %v; want EOF after drain", i, bs[0].Name, n, err)
			}
			continue
		}
		echo(t, s.c, "still "+fmt.Sprint(i))
	}

	// serving=false, then a second slice of the Service adds b3, and b0
	// leaves the first: new sessions reach b3.
	slice.Endpoints[0].Conditions.Serving = new(false)
	if slice, err = api.Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.Create(ctx, endpointSlice(service+"-b", bs[3]), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	slice.Endpoints = slice.Endpoints[1:]
	if _, err = api.Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, within, "the picker with b1, b2, b3", func() bool {
		s := up.Snapshot()
		return s != nil && len(s.Endpoints) == 3 && pickable(up.Picker(), bs[3].Addr())
	})
	got := map[string]int{}
	for range 30 {
		s := dial()
		sessions = append(sessions, s)
		got[s.backend]++
	}
	if got[bs[3].Name] == 0 || got[bs[0].Name] != 0 {
		t.Errorf("30 sessions after the scale-up: %v; want some on b3, none on b0", got)
	}

	// The API server restarts: longhaul keeps routing on its last
	// snapshot (and stays ready) meanwhile, relists, then catches up.
	relistsBefore := metric(t, adminURL, `longhaul_kubernetes_relists_total{listener="echo"}`)
	outage := make(chan struct{})
	type probe struct {
		ok, failed int
		notReady   int
		lastErr    error
	}
	probed := make(chan probe, 1)
	go func() {
		var p probe
		defer func() { probed <- p }()
		for {
			select {
			case <-outage:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if err := dialOnce(lis); err != nil {
				p.failed++
				p.lastErr = err
			} else {
				p.ok++
			}
			if code, err := httpStatus(adminURL + "/readyz"); err != nil || code != http.StatusOK {
				p.notReady++
			}
		}
	}()
	restarted := time.Now()
	cl.Restart(t)
	close(outage)
	p := <-probed
	t.Logf("API server restarted in %v; meanwhile %d sessions relayed, %d failed, /readyz not 200 %d times",
		time.Since(restarted).Round(time.Millisecond), p.ok, p.failed, p.notReady)
	if p.failed > 0 || p.ok == 0 || p.notReady > 0 {
		t.Errorf("during the API server restart: %d sessions relayed, %d failed (last: %v), /readyz failed %d times; want all relayed and ready",
			p.ok, p.failed, p.lastErr, p.notReady)
	}
	// Catching up: b1 turns terminating after the restart.
	waitFor(t, 30*time.Second, "a write after the restart", func() bool {
		got, err := api.Get(ctx, slice.Name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		got.Endpoints[0].Conditions = discoveryv1.EndpointConditions{Ready: new(false), Serving: new(true), Terminating: new(true)}
		_, err = api.Update(ctx, got, metav1.UpdateOptions{})
		return err == nil
	})
	if got, _ := api.Get(ctx, slice.Name, metav1.GetOptions{}); got.Endpoints[0].Addresses[0] != bs[1].Host.Addr.String() {
		t.Fatalf("slice %s starts with %v, want %s", slice.Name, got.Endpoints[0].Addresses, bs[1].Name)
	}
	caught := time.Now()
	waitFor(t, 60*time.Second, "the picker without b1 after the restart", func() bool { return !pickable(up.Picker(), bs[1].Addr()) })
	t.Logf("first change after the restart reached the picker in %v", time.Since(caught).Round(time.Millisecond))
	if after := metric(t, adminURL, `longhaul_kubernetes_relists_total{listener="echo"}`); after <= relistsBefore {
		t.Errorf("relists %v before the restart, %v after: the relist is not counted", relistsBefore, after)
	}

	_, metrics := httpGet(t, adminURL+"/metrics")
	for _, c := range []struct {
		series string
		min    float64
	}{
		{`longhaul_kubernetes_relists_total{listener="echo"}`, 1},
		{`longhaul_kubernetes_watch_errors_total{listener="echo"}`, 1}, // the forbidden lists
		{`longhaul_kubernetes_endpoints{listener="echo"}`, 3},
		{`longhaul_sessions_migrated_total{listener="echo",protocol="tcp",reason="endpoint"}`, float64(onB0)},
	} {
		v, ok := metricValue(metrics, c.series)
		if !ok || v < c.min {
			t.Errorf("/metrics: %s = %v (present %v), want >= %v", c.series, v, ok, c.min)
		}
	}
}

// endpointSlice is a slice of the Service with one ready endpoint per
// backend, on the port named "echo".
func endpointSlice(name string, bs ...*backend) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: service,
				discoveryv1.LabelManagedBy:   "longhaul-e2e",
			},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{{
			Name: new("echo"), Port: new(int32(backendPort)), Protocol: new(corev1.ProtocolTCP),
		}},
	}
	for _, b := range bs {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{b.Host.Addr.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: new(true)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: "echo-" + b.Name},
			NodeName:   new("node-" + b.Name),
		})
	}
	return s
}

// grantRead creates, in ns, the Role and RoleBinding of deploy/rbac.yaml,
// so that the test proves those rights are enough for longhaul to sync.
func grantRead(t *testing.T, c kubernetes.Interface, ns string) {
	t.Helper()
	if roles, bindings := kubetest.ApplyRBAC(t, c, ns, "../../deploy/rbac.yaml"); roles != 1 || bindings != 1 {
		t.Fatalf("deploy/rbac.yaml: %d Roles and %d RoleBindings, want one of each", roles, bindings)
	}
}

type running struct {
	a *app.App
}

// startApp runs longhaul with one tcp listener whose endpoints are the
// EndpointSlices of ns/echo, port "echo", until the test ends.
func startApp(t *testing.T, client kubernetes.Interface, ns string) *running {
	t.Helper()
	yaml := fmt.Sprintf(`
admin: {address: %q}
listeners:
  - name: echo
    address: %q
    protocol: tcp
    endpoints: {kubernetes: {namespace: %s, service: %s, port: echo}}
    balance: {policy: maglev, key: client-ip-port}
    timeouts: {connect: 2s, idle: 1m}
    drain: {timeout: %s, tcp: deadline}
`, testnet.FreeAddr(t), testnet.FreeAddr(t), ns, service, drainFor)
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	metrics := kube.NewMetrics()
	log := zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
	a, err := app.New(cfg, app.Options{
		Logger: log,
		Kubernetes: func(l config.Listener, log *zap.Logger) (discovery.Source, error) {
			k := l.Endpoints.Kubernetes
			src, err := kube.New(kube.Config{Client: client, Namespace: k.Namespace, Service: k.Service, Port: k.Port,
				Logger: log, Metrics: metrics.Hooks(l.Name)})
			if err != nil {
				return nil, err
			}
			return sourceWithMetrics{src, metrics}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return 30 s after its context ended")
		}
	})
	return &running{a: a}
}

// sourceWithMetrics is what cmd/longhaul's factory returns: a source that
// carries the collectors it counts into, which the app registers.
type sourceWithMetrics struct {
	*kube.Source
	*kube.Metrics
}

// pickable reports whether new sessions may go to addr under p.
func pickable(p balancer.Picker, addr string) bool {
	if p == nil {
		return false
	}
	return slices.ContainsFunc(p.Targets(), func(t *balancer.Target) bool { return t.Endpoint.Address == addr })
}

func waitFor(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, within)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// echo sends msg and expects it back.
func echo(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo of %q: got %q, %v", msg, buf, err)
	}
}

// metric reads one series from the admin server's /metrics.
func metric(t *testing.T, adminURL, series string) float64 {
	t.Helper()
	_, text := httpGet(t, adminURL+"/metrics")
	v, ok := metricValue(text, series)
	if !ok {
		t.Fatalf("/metrics has no %s", series)
	}
	return v
}

func httpStatus(url string) (int, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// dialOnce opens a session through longhaul, reads the backend's greeting,
// checks an echo and closes.
func dialOnce(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := greeting(c); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		return fmt.Errorf("echo: %q, %v", buf, err)
	}
	return nil
}

// metricValue finds a series (name and labels exactly as exposed) in a
// Prometheus text exposition.
func metricValue(text, series string) (float64, bool) {
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}
