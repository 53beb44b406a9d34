package kube

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/discovery"
	"github.com/longhaul-proxy/longhaul/internal/kubetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// klog starts its flush daemon at init; it lives for the process.
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	)
}

// offlineClient is a clientset pointing nowhere, for tests that never call
// the API server.
func offlineClient(t testing.TB) kubernetes.Interface {
	t.Helper()
	c, err := kubernetes.NewForConfig(&rest.Config{Host: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// within bounds how long a change at the API server may take to appear in a
// published Snapshot.
const within = 2 * time.Second

// counters are the source's metric hooks, counted.
type counters struct {
	relists, errors, published atomic.Int64
	podKillTimes, podForbidden atomic.Int64
	podGets                    atomic.Int64 // every outcome
}

func (c *counters) hooks() Hooks {
	return Hooks{
		Relist:    func() { c.relists.Add(1) },
		Error:     func(error) { c.errors.Add(1) },
		Published: func(int, time.Duration) { c.published.Add(1) },
		PodLookup: func(outcome string) {
			c.podGets.Add(1)
			switch outcome {
			case PodLookupKillTime:
				c.podKillTimes.Add(1)
			case PodLookupForbidden:
				c.podForbidden.Add(1)
			}
		},
	}
}

// runSource runs a Source for ns/cart until the test ends and waits for its
// first Snapshot.
// Options (such as rec.install) apply to the recorder before the source
// runs.
func runSource(t *testing.T, client kubernetes.Interface, ns, port string, opts ...func(*recorder)) (*Source, *recorder, *counters) {
	t.Helper()
	return runSourceConfig(t, Config{Client: client, Namespace: ns, Service: "cart", Port: port}, opts...)
}

// runSourceConfig is runSource with the Config given; its Logger and
// Metrics are set here.
func runSourceConfig(t *testing.T, cfg Config, opts ...func(*recorder)) (*Source, *recorder, *counters) {
	t.Helper()
	cnt := &counters{}
	cfg.Logger, cfg.Metrics = zaptest.NewLogger(t), cnt.hooks()
	src, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	for _, o := range opts {
		o(rec)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, rec.publish) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return 10 s after its context ended")
		}
	})
	rec.waitFor(t, 30*time.Second, "the first list", func(*discovery.Snapshot) bool { return true })
	if !src.Synced() {
		t.Fatal("first snapshot published but not Synced")
	}
	return src, rec, cnt
}

// sliceAPI is a small EndpointSlice client for one namespace.
type sliceAPI struct {
	t  *testing.T
	c  kubernetes.Interface
	ns string
}

func (a sliceAPI) create(s *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
	a.t.Helper()
	s = s.DeepCopy()
	s.Namespace = a.ns
	out, err := a.c.DiscoveryV1().EndpointSlices(a.ns).Create(context.Background(), s, metav1.CreateOptions{})
	if err != nil {
		a.t.Fatalf("create endpointslice %s/%s: %v", a.ns, s.Name, err)
	}
	return out
}

func (a sliceAPI) update(s *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
	a.t.Helper()
	out, err := a.c.DiscoveryV1().EndpointSlices(a.ns).Update(context.Background(), s, metav1.UpdateOptions{})
	if err != nil {
		a.t.Fatalf("update endpointslice %s/%s: %v", a.ns, s.Name, err)
	}
	return out
}

func (a sliceAPI) delete(name string) {
	a.t.Helper()
	if err := a.c.DiscoveryV1().EndpointSlices(a.ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		a.t.Fatalf("delete endpointslice %s/%s: %v", a.ns, name, err)
	}
}

func hasAddrs(want ...string) func(*discovery.Snapshot) bool {
	return func(s *discovery.Snapshot) bool { return slices.Equal(addrs(s), want) }
}

// TestAPIServer runs the source against a real kube-apiserver. Subtests
// share the cluster, each in its own namespace; the restart comes last.
func TestAPIServer(t *testing.T) {
	cl := kubetest.Start(t)

	t.Run("Lifecycle", func(t *testing.T) {
		ns := cl.CreateNamespace(t, "lifecycle-")
		api := sliceAPI{t, cl.Client, ns}
		// Each snapshot is built into a picker as the proxy does; each step
		// checks the snapshot and what the swapped picker offers.
		var picker atomic.Pointer[balancer.Picker]
		src, rec, _ := runSource(t, cl.Client, ns, "grpc", func(r *recorder) {
			r.install = func(s *discovery.Snapshot) {
				p, err := balancer.Build(s, balancer.Policy{Kind: balancer.Maglev}, nil)
				if err != nil {
					t.Errorf("build picker: %v", err)
					return
				}
				picker.Store(&p)
			}
		})
		if s, _, _ := rec.last(); len(s.Endpoints) != 0 || s.Service != ns+"/cart" {
			t.Fatalf("first snapshot %+v, want empty %s/cart", s, ns)
		}
		offered := func() []string {
			var out []string
			for _, tg := range (*picker.Load()).Targets() {
				out = append(out, tg.Endpoint.Address)
			}
			return out
		}
		var sent time.Time
		step := func(what string, want []discovery.Endpoint, targets ...string) {
			t.Helper()
			_, at := rec.waitFor(t, within, what, func(s *discovery.Snapshot) bool {
				return slices.Equal(s.Endpoints, want)
			})
			if got := offered(); !slices.Equal(got, targets) {
				t.Errorf("%s: picker offers %v, want %v", what, got, targets)
			}
			t.Logf("%s: picker swapped %v after the API call", what, at.Sub(sent).Round(time.Microsecond))
		}

		sent = time.Now()
		slice := api.create(mkSlice("cart-abc", discoveryv1.AddressTypeIPv4, map[string]int32{"grpc": 8080},
			epSpec{addr: "198.18.0.1", ready: ptr(true), zone: "zone-a", node: "node-1", pod: "cart-0"}))
		base := discovery.Endpoint{Address: "198.18.0.1:8080", Weight: 1, Zone: "zone-a", Node: "node-1", Pod: "cart-0"}
		ready := base
		ready.Ready, ready.Serving = true, true
		step("created ready", []discovery.Endpoint{ready}, "198.18.0.1:8080")

		// Terminating but serving: with no ready endpoint left it is still
		// offered (a single-replica rollout must not black-hole traffic)...
		slice.Endpoints[0].Conditions = discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(true), Terminating: ptr(true)}
		sent = time.Now()
		slice = api.update(slice)
		draining := base
		draining.Serving, draining.Terminating = true, true
		step("terminating and serving, alone", []discovery.Endpoint{draining}, "198.18.0.1:8080")

		// ...but not once a ready endpoint exists.
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{"198.18.0.2"}})
		sent = time.Now()
		slice = api.update(slice)
		other := discovery.Endpoint{Address: "198.18.0.2:8080", Ready: true, Serving: true, Weight: 1}
		step("terminating and serving, another ready", []discovery.Endpoint{draining, other}, "198.18.0.2:8080")

		slice.Endpoints[0].Conditions.Serving = ptr(false)
		slice.Endpoints = slice.Endpoints[:1]
		sent = time.Now()
		slice = api.update(slice)
		gone := base
		gone.Terminating = true
		step("terminating, not serving", []discovery.Endpoint{gone})

		sent = time.Now()
		api.delete(slice.Name)
		step("deleted", []discovery.Endpoint{})
		if !src.Synced() {
			t.Error("not Synced")
		}
	})

	t.Run("SlicesPortsFamiliesDuplicates", func(t *testing.T) {
		ns := cl.CreateNamespace(t, "merge-")
		api := sliceAPI{t, cl.Client, ns}
		_, rec, _ := runSource(t, cl.Client, ns, "grpc")
		_, recNum, _ := runSource(t, cl.Client, ns, "9090")

		api.create(mkSlice("cart-a", discoveryv1.AddressTypeIPv4, map[string]int32{"grpc": 8080, "metrics": 9100},
			epSpec{addr: "198.18.0.1"}, epSpec{addr: "198.18.0.2", ready: ptr(false)}))
		// The same port name with another number, in another slice.
		api.create(mkSlice("cart-b", discoveryv1.AddressTypeIPv4, map[string]int32{"grpc": 9090},
			epSpec{addr: "198.18.0.3"}))
		// 198.18.0.2 again, ready here: counted once, as ready.
		api.create(mkSlice("cart-c", discoveryv1.AddressTypeIPv4, map[string]int32{"grpc": 8080},
			epSpec{addr: "198.18.0.2"}, epSpec{addr: "198.18.0.1"}))
		api.create(mkSlice("cart-v6", discoveryv1.AddressTypeIPv6, map[string]int32{"grpc": 8080},
			epSpec{addr: "2001:db8::1"}))
		api.create(mkSlice("cart-fqdn", discoveryv1.AddressTypeFQDN, map[string]int32{"grpc": 8080},
			epSpec{addr: "cart.example.com"}))
		other := mkSlice("shipping-a", discoveryv1.AddressTypeIPv4, map[string]int32{"grpc": 8080}, epSpec{addr: "198.18.0.50"})
		other.Labels[discoveryv1.LabelServiceName] = "shipping"
		api.create(other)

		snap, _ := rec.waitFor(t, within, "four endpoints", hasAddrs("198.18.0.1:8080", "198.18.0.2:8080", "198.18.0.3:9090", "[2001:db8::1]:8080"))
		if e, _ := snap.Find("198.18.0.2:8080"); !e.Ready {
			t.Errorf("duplicate endpoint kept as %+v, want the ready copy", e)
		}
		recNum.waitFor(t, within, "port 9090 by number", hasAddrs("198.18.0.3:9090"))

		api.delete("cart-c")
		rec.waitFor(t, within, "cart-c removed: the not-ready copy remains", func(s *discovery.Snapshot) bool {
			e, _ := s.Find("198.18.0.2:8080")
			return len(s.Endpoints) == 4 && !e.Ready
		})
	})

	t.Run("BurstCoalesces", func(t *testing.T) {
		ns := cl.CreateNamespace(t, "burst-")
		_, rec, _ := runSource(t, cl.Client, ns, "grpc")
		// After a quiet period the first create is published at once; the
		// rest must fold into few snapshots.
		time.Sleep(2 * DefaultCoalesce)
		before := rec.count()
		in := benchSlices(1000)
		start := time.Now()
		var wg sync.WaitGroup
		for _, s := range in {
			wg.Go(func() {
				s = s.DeepCopy()
				s.Namespace = ns
				if _, err := cl.Client.DiscoveryV1().EndpointSlices(ns).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
					t.Errorf("create %s: %v", s.Name, err)
				}
			})
		}
		wg.Wait()
		created := time.Since(start)
		_, at := rec.waitFor(t, within, "1000 endpoints", func(s *discovery.Snapshot) bool { return len(s.Endpoints) == 1000 })
		time.Sleep(3 * DefaultCoalesce) // anything still to come
		n := rec.count() - before
		t.Logf("10 slices, 1000 endpoints created in %v: %d snapshots, complete %v after the first create", created, n, at.Sub(start))
		if n > 10 {
			t.Errorf("%d snapshots for a burst of 10 slices, want <= 10", n)
		}
		if s, _, _ := rec.last(); len(s.Endpoints) != 1000 {
			t.Errorf("final snapshot has %d endpoints", len(s.Endpoints))
		}
	})

	t.Run("PropagationLatency", func(t *testing.T) {
		ns := cl.CreateNamespace(t, "latency-")
		api := sliceAPI{t, cl.Client, ns}
		// Each snapshot becomes a Maglev picker (the default table of
		// 65537 entries) swapped in through an atomic pointer, as
		// proxy.Upstream does; a change counts as arrived once the
		// swapped picker offers the new endpoint.
		var picker atomic.Pointer[balancer.Picker]
		loads := balancer.NewLoads()
		_, rec, _ := runSource(t, cl.Client, ns, "grpc", func(r *recorder) {
			r.install = func(s *discovery.Snapshot) {
				p, err := balancer.Build(s, balancer.Policy{Kind: balancer.Maglev, BoundedLoad: 1.25}, loads)
				if err != nil {
					t.Errorf("build picker: %v", err)
					return
				}
				picker.Store(&p)
			}
		})
		// Ten other endpoints, so the picker is not trivial.
		in := mkSlice("cart-a", discoveryv1.AddressTypeIPv4, map[string]int32{"grpc": 8080}, epSpec{addr: "198.18.1.1"})
		for i := range 10 {
			in.Endpoints = append(in.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("198.18.1.%d", 100+i)}})
		}
		slice := api.create(in)
		rec.waitFor(t, within, "the slice", func(s *discovery.Snapshot) bool { return len(s.Endpoints) == 11 })
		offers := func(addr string) bool {
			p := picker.Load()
			if p == nil {
				return false
			}
			for _, tg := range (*p).Targets() {
				if tg.Endpoint.Address == addr {
					return true
				}
			}
			return false
		}

		const updates = 150
		lat := make([]time.Duration, 0, updates)
		for i := range updates {
			// Leave the source quiet for a coalescing period, so each
			// update is an isolated change (the common case: one pod).
			time.Sleep(DefaultCoalesce + 10*time.Millisecond)
			addr := fmt.Sprintf("198.18.%d.%d", 2+i/250, i%250+1)
			slice.Endpoints[0].Addresses = []string{addr}
			start := time.Now()
			slice = api.update(slice)
			_, at := rec.waitFor(t, within, addr, func(*discovery.Snapshot) bool { return offers(addr + ":8080") })
			lat = append(lat, at.Sub(start))
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		pct := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
		t.Logf("EndpointSlice update sent -> Maglev picker swapped, over %d updates (race detector: %v): p50 %v, p90 %v, p99 %v, max %v",
			len(lat), raceEnabled, pct(0.50), pct(0.90), pct(0.99), lat[len(lat)-1])
		if p99 := pct(0.99); p99 > DefaultCoalesce+within/2 {
			t.Errorf("p99 %v: a single change must reach the picker well within the bound", p99)
		}
	})

	for _, n := range []int{1000, 10000} {
		t.Run(fmt.Sprintf("Scale%d", n), func(t *testing.T) { testScale(t, cl, n) })
	}

	t.Run("PodKillTime", func(t *testing.T) { testPodKillTime(t, cl) })
	t.Run("PodRevision", func(t *testing.T) { testPodRevision(t, cl) })
	t.Run("LabelIdentity", func(t *testing.T) { testLabelIdentity(t, cl) })
	t.Run("StatefulSetIdentity", func(t *testing.T) { testStatefulSetIdentity(t, cl) })

	// Last: it restarts the API server under every running source.
	t.Run("APIServerRestart", func(t *testing.T) {
		ns := cl.CreateNamespace(t, "restart-")
		api := sliceAPI{t, cl.Client, ns}
		src, rec, cnt := runSource(t, cl.Client, ns, "grpc")
		slice := api.create(mkSlice("cart-a", discoveryv1.AddressTypeIPv4, map[string]int32{"grpc": 8080}, epSpec{addr: "198.18.0.1"}))
		rec.waitFor(t, within, "the slice", hasAddrs("198.18.0.1:8080"))
		n := rec.count()

		start := time.Now()
		cl.Restart(t)
		t.Logf("kube-apiserver restarted in %v", time.Since(start))
		if rec.count() != n || !src.Synced() {
			t.Fatalf("during the restart: %d snapshots published (want none), synced %v", rec.count()-n, src.Synced())
		}

		// client-go reconnects with backoff (capped at 30 s).
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{"198.18.0.2"}})
		var err error
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for {
			// The first requests after a restart can meet a server still
			// settling; retry them.
			if _, err = cl.Client.DiscoveryV1().EndpointSlices(ns).Update(ctx, slice, metav1.UpdateOptions{}); err == nil || ctx.Err() != nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("update after restart: %v", err)
		}
		changed := time.Now()
		_, at := rec.waitFor(t, 60*time.Second, "the change after the restart", hasAddrs("198.18.0.1:8080", "198.18.0.2:8080"))
		t.Logf("change after restart published in %v; relists %d, watch errors %d, snapshots %d",
			at.Sub(changed), cnt.relists.Load(), cnt.errors.Load(), cnt.published.Load())
		if got := rec.count() - n; got != 1 {
			t.Errorf("%d snapshots since the restart, want 1", got)
		}
	})
}
