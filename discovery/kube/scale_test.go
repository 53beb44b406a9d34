package kube

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/discovery"
	"github.com/longhaul-proxy/longhaul/internal/kubetest"
)

// testScale measures a Source following a Service of n endpoints in slices
// of 100 (as the EndpointSlice controller writes them) on a real API
// server: the heap it holds once synced (client-go's informer store, the
// per-slice cache, the snapshot and a Maglev picker), the first build, and
// what one endpoint's change costs (the snapshot rebuild, which converts
// the changed slice and merges all, and the picker build).
func testScale(t *testing.T, cl *kubetest.Cluster, n int) {
	ns := cl.CreateNamespace(t, fmt.Sprintf("scale-%d-", n))
	api := sliceAPI{t, cl.Client, ns}
	in := benchSlices(n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, s := range in {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			s = s.DeepCopy()
			s.Namespace = ns
			if _, err := cl.Client.DiscoveryV1().EndpointSlices(ns).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
				t.Errorf("create %s: %v", s.Name, err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	var builds struct {
		sync.Mutex
		snapshot []time.Duration // from the Published hook
		picker   []time.Duration
	}
	var picker balancer.Picker // touched only by the sync loop's publisher, then after it stopped
	loads := balancer.NewLoads()
	install := func(s *discovery.Snapshot) {
		start := time.Now()
		p, err := balancer.Build(s, balancer.Policy{Kind: balancer.Maglev, BoundedLoad: 1.25}, loads)
		took := time.Since(start)
		if err != nil {
			t.Errorf("build picker: %v", err)
			return
		}
		builds.Lock()
		picker = p
		builds.picker = append(builds.picker, took)
		builds.Unlock()
	}

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	src, err := New(Config{Client: cl.Client, Namespace: ns, Service: "cart", Port: "grpc",
		Metrics: Hooks{Published: func(_ int, took time.Duration) {
			builds.Lock()
			builds.snapshot = append(builds.snapshot, took)
			builds.Unlock()
		}}})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	rec.install = install
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- src.Run(ctx, rec.publish) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	rec.waitFor(t, 60*time.Second, fmt.Sprint(n, " endpoints"), func(s *discovery.Snapshot) bool { return len(s.Endpoints) == n })
	synced := time.Since(start)
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)

	// One endpoint at a time turns terminating, in a different slice each
	// time.
	const changes = 21
	for i := range changes {
		time.Sleep(DefaultCoalesce + 10*time.Millisecond)
		s := in[i%len(in)].DeepCopy()
		got, err := cl.Client.DiscoveryV1().EndpointSlices(ns).Get(context.Background(), s.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got.Endpoints[i%len(got.Endpoints)].Conditions = discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(true), Terminating: ptr(true)}
		api.update(got)
		rec.waitFor(t, within, "the change", func(snap *discovery.Snapshot) bool {
			terminating := 0
			for _, e := range snap.Endpoints {
				if e.Terminating {
					terminating++
				}
			}
			return terminating == i+1
		})
	}
	// The Published hook runs just after the publisher returns.
	deadline := time.Now().Add(within)
	for {
		builds.Lock()
		got := len(builds.snapshot)
		builds.Unlock()
		if got >= changes+1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	builds.Lock()
	first, firstPicker := builds.snapshot[0], builds.picker[0]
	snap, pick := slices.Clone(builds.snapshot[1:]), slices.Clone(builds.picker[1:])
	targets := len(picker.Targets())
	builds.Unlock()
	slices.Sort(snap)
	slices.Sort(pick)
	med := func(d []time.Duration) time.Duration { return d[len(d)/2] }
	t.Logf("%d endpoints in %d slices (race detector: %v): synced in %v; heap held +%.1f MiB (informer store, slice cache, snapshot, picker of %d targets); "+
		"first snapshot %v + picker %v; one endpoint changing: snapshot rebuild p50 %v max %v, picker build p50 %v max %v (over %d changes)",
		n, len(in), raceEnabled, synced.Round(time.Millisecond), float64(heap)/(1<<20), targets,
		first.Round(time.Microsecond), firstPicker.Round(time.Microsecond),
		med(snap).Round(time.Microsecond), snap[len(snap)-1].Round(time.Microsecond),
		med(pick).Round(time.Microsecond), pick[len(pick)-1].Round(time.Microsecond), len(snap))
	if len(snap) < changes {
		t.Errorf("%d rebuilds for %d isolated changes", len(snap), changes)
	}
}
