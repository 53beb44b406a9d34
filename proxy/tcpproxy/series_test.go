package tcpproxy

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/internal/proxytest"
	"github.com/longhaul-proxy/longhaul/proxy/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/discovery"
	"github.com/longhaul-proxy/longhaul/proxy/upstream"
)

// endpointSeries returns the metric families that hold a series labelled
// with endpoint addr.
func endpointSeries(t *testing.T, g prometheus.Gatherer, addr string) []string {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "endpoint" && lp.GetValue() == addr && !slices.Contains(out, mf.GetName()) {
					out = append(out, mf.GetName())
				}
			}
		}
	}
	return out
}

// TestEndpointSeriesDeletedWhenGoneAndIdle: an endpoint that left the
// snapshot loses its per-endpoint series (sessions active and total, dial
// errors) once its last session ended, not before; the endpoints still
// listed keep theirs.
func TestEndpointSeriesDeletedWhenGoneAndIdle(t *testing.T) {
	b1, b2, b3 := proxytest.StartServer(t, proxytest.Echo), proxytest.StartServer(t, proxytest.Echo), proxytest.StartServer(t, proxytest.Echo)
	dead := proxytest.StartServer(t, proxytest.Echo)
	deadAddr := dead.Addr()
	dead.Close() // a listed endpoint that refuses: dial errors only

	preg := prometheus.NewRegistry()
	m := metrics.New(preg)
	reg := upstream.NewRegistry()
	series := upstream.NewEndpointSeries(m, reg)
	up := upstream.NewUpstream("t", balancer.Policy{Kind: balancer.Maglev}, reg, m)
	idle := make(chan string, 100)
	forget := reg.OnEndpointIdle
	reg.OnEndpointIdle = func(addr string) { forget(addr); idle <- addr }
	set := func(addrs ...string) {
		t.Helper()
		eps := make([]discovery.Endpoint, len(addrs))
		for i, a := range addrs {
			eps[i] = discovery.Endpoint{Address: a, Ready: true, Serving: true}
		}
		snap, err := discovery.NewSnapshot("t", eps)
		if err != nil {
			t.Fatal(err)
		}
		if err := up.Update(snap); err != nil {
			t.Fatal(err)
		}
		series.Snapshot("t", snap)
	}
	set(b1.Addr(), b2.Addr(), b3.Addr(), deadAddr)
	l := New(Config{Name: "t", Key: KeyClientIPPort, MaxAttempts: 4}, up)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Serve(context.Background(), ln) }()
	t.Cleanup(func() { // after the clients' cleanups, which close them
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		l.Shutdown(ctx)
		<-done
	})

	// Sessions until each live endpoint has some (the one to leave at
	// least 3) and the dead one has failed dials (bounded: 200
	// connections).
	byEP := map[string][]net.Conn{}
	for i := 0; i < 200 && (len(byEP[b1.Addr()]) == 0 || len(byEP[b2.Addr()]) == 0 || len(byEP[b3.Addr()]) < 3 ||
		testutil.ToFloat64(m.DialErrors.WithLabelValues("t", deadAddr)) == 0); i++ {
		c := proxytest.Dial(t, ln.Addr().String())
		if err := proxytest.EchoRound(c, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
		infos := reg.Infos()
		for _, in := range infos {
			if in.Client == c.LocalAddr().String() {
				byEP[in.Endpoint] = append(byEP[in.Endpoint], c)
			}
		}
	}
	for _, a := range []string{b1.Addr(), b2.Addr(), b3.Addr()} {
		if len(byEP[a]) == 0 || a == b3.Addr() && len(byEP[a]) < 3 {
			t.Fatalf("%d sessions on %s in 200 connections", len(byEP[a]), a)
		}
	}
	if got := endpointSeries(t, preg, deadAddr); !slices.Equal(got, []string{"longhaul_dial_errors_total"}) {
		t.Fatalf("series of the refusing endpoint: %v", got)
	}
	want3 := []string{"longhaul_sessions_active", "longhaul_sessions_total"}
	if got := endpointSeries(t, preg, b3.Addr()); !slices.Equal(got, want3) {
		t.Fatalf("series of %s before: %v, want %v", b3.Addr(), got, want3)
	}

	// b3 and the dead endpoint leave. The dead one has no session: its
	// series go at once. b3's stay while its sessions last.
	set(b1.Addr(), b2.Addr())
	if got := endpointSeries(t, preg, deadAddr); len(got) != 0 {
		t.Errorf("series of a gone endpoint without sessions kept: %v", got)
	}
	n3 := len(byEP[b3.Addr()])
	for i, c := range byEP[b3.Addr()] {
		if got := endpointSeries(t, preg, b3.Addr()); !slices.Equal(got, want3) {
			t.Fatalf("with %d sessions left on the gone %s, its series are %v; want %v", n3-i, b3.Addr(), got, want3)
		}
		if got := testutil.ToFloat64(m.SessionsActive.WithLabelValues("t", b3.Addr())); got != float64(n3-i) {
			t.Fatalf("sessions_active of the gone endpoint %v, want %d", got, n3-i)
		}
		addr := c.LocalAddr().String()
		c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := reg.Wait(ctx, func(in upstream.SessionInfo) bool { return in.Client == addr })
		cancel()
		if err != nil {
			t.Fatalf("session %d of the gone endpoint did not end: %v", i, err)
		}
	}
	select {
	case addr := <-idle:
		for addr != b3.Addr() {
			addr = <-idle
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the last session of the gone endpoint did not end within 5s")
	}
	if got := endpointSeries(t, preg, b3.Addr()); len(got) != 0 {
		t.Errorf("series of %s after its last session ended: %v, want none", b3.Addr(), got)
	}
	for _, a := range []string{b1.Addr(), b2.Addr()} {
		if got := testutil.ToFloat64(m.SessionsActive.WithLabelValues("t", a)); got != float64(len(byEP[a])) {
			t.Errorf("sessions_active of the listed %s: %v, want %d", a, got, len(byEP[a]))
		}
		if got := endpointSeries(t, preg, a); !slices.Equal(got, want3) {
			t.Errorf("series of the listed %s: %v, want %v", a, got, want3)
		}
	}
	t.Logf("%d sessions on the gone endpoint; its 2 series deleted after the last, the refusing one's at once; %d and %d sessions on the others, series kept",
		n3, len(byEP[b1.Addr()]), len(byEP[b2.Addr()]))
}
