package kube

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/longhaul-proxy/longhaul/discovery"
)

// Unit tests of the merge and the sync loop, with slices made in memory: no
// API server.

func ptr[T any](v T) *T { return &v }

type epSpec struct {
	addr                      string
	ready, serving, terminate *bool
	zone, node, pod           string
}

func mkSlice(name string, at discoveryv1.AddressType, ports map[string]int32, eps ...epSpec) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: "cart"}},
		AddressType: at,
	}
	names := make([]string, 0, len(ports))
	for n := range ports {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr(n), Port: ptr(ports[n]), Protocol: ptr(corev1.ProtocolTCP)})
	}
	for _, e := range eps {
		ep := discoveryv1.Endpoint{
			Addresses:  []string{e.addr},
			Conditions: discoveryv1.EndpointConditions{Ready: e.ready, Serving: e.serving, Terminating: e.terminate},
		}
		if e.zone != "" {
			ep.Zone = ptr(e.zone)
		}
		if e.node != "" {
			ep.NodeName = ptr(e.node)
		}
		if e.pod != "" {
			ep.TargetRef = &corev1.ObjectReference{Kind: "Pod", Name: e.pod, Namespace: "shop"}
		}
		s.Endpoints = append(s.Endpoints, ep)
	}
	return s
}

func addrs(s *discovery.Snapshot) []string {
	out := make([]string, len(s.Endpoints))
	for i, e := range s.Endpoints {
		out[i] = e.Address
	}
	return out
}

func mustPort(t testing.TB, s string) portSelector {
	t.Helper()
	p, err := parsePort(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMergeConditionsAndAttributes(t *testing.T) {
	c := newSliceCache("shop/cart", mustPort(t, "grpc"), discovery.IdentityAddress)
	c.update(mkSlice("a", discoveryv1.AddressTypeIPv4, map[string]int32{"grpc": 8080, "http": 80},
		epSpec{addr: "198.18.0.1", zone: "z1", node: "n1", pod: "cart-1"},                        // all absent: ready
		epSpec{addr: "198.18.0.2", ready: ptr(false), serving: ptr(true), terminate: ptr(true)},  // draining
		epSpec{addr: "198.18.0.3", ready: ptr(false)},                                            // serving defaults to ready
		epSpec{addr: "198.18.0.4", ready: ptr(false), serving: ptr(false), terminate: ptr(true)}, // gone soon
	))
	snap, _, _, err := c.snapshot(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []discovery.Endpoint{
		{Address: "198.18.0.1:8080", Ready: true, Serving: true, Weight: 1, Zone: "z1", Node: "n1", Pod: "cart-1"},
		{Address: "198.18.0.2:8080", Serving: true, Terminating: true, Weight: 1},
		{Address: "198.18.0.3:8080", Weight: 1},
		{Address: "198.18.0.4:8080", Terminating: true, Weight: 1},
	}
	if snap.Service != "shop/cart" || !slices.Equal(snap.Endpoints, want) {
		t.Fatalf("snapshot\n got %+v\nwant %+v", snap, want)
	}
}

func TestMergeSlicesFamiliesPortsAndDuplicates(t *testing.T) {
	c := newSliceCache("shop/cart", mustPort(t, "grpc"), discovery.IdentityAddress)
	c.update(mkSlice("v4-a", discoveryv1.AddressTypeIPv4, map[string]int32{"grpc": 8080},
		epSpec{addr: "198.18.0.1"}, epSpec{addr: "198.18.0.2", ready: ptr(false)}))
	// Same port name, another number: pods of a rollout that changed it.
	c.update(mkSlice("v4-b", discoveryv1.AddressTypeIPv4, map[string]int32{"grpc": 9090},
		epSpec{addr: "198.18.0.3"}))
	// 198.18.0.2:8080 again, ready here: the ready copy wins, kept once.
	c.update(mkSlice("v4-c", discoveryv1.AddressTypeIPv4, map[string]int32{"grpc": 8080},
		epSpec{addr: "198.18.0.2"}))
	c.update(mkSlice("v6", discoveryv1.AddressTypeIPv6, map[string]int32{"grpc": 8080},
		epSpec{addr: "2001:db8::1"}, epSpec{addr: "198.18.0.9"} /* wrong family: skipped */))
	c.update(mkSlice("fqdn", discoveryv1.AddressTypeFQDN, map[string]int32{"grpc": 8080},
		epSpec{addr: "cart.example"}))
	c.update(mkSlice("other-port", discoveryv1.AddressTypeIPv4, map[string]int32{"http": 80},
		epSpec{addr: "198.18.0.7"}))
	snap, _, _, err := c.snapshot(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"198.18.0.1:8080", "198.18.0.2:8080", "198.18.0.3:9090", "[2001:db8::1]:8080"}
	if got := addrs(snap); !slices.Equal(got, want) {
		t.Fatalf("addresses %v, want %v", got, want)
	}
	if e, _ := snap.Find("198.18.0.2:8080"); !e.Ready {
		t.Errorf("duplicate endpoint: got %+v, want the ready copy", e)
	}
	if c.skipped["v6"] != 1 {
		t.Errorf("skipped %v, want 1 in v6", c.skipped)
	}

	c.delete("v4-c")
	snap, _, _, _ = c.snapshot(nil)
	if e, _ := snap.Find("198.18.0.2:8080"); e.Ready {
		t.Errorf("after deleting the ready copy: %+v", e)
	}
	c.delete("v4-a")
	c.delete("v4-b")
	c.delete("v6")
	c.delete("no-such-slice")
	snap, _, _, _ = c.snapshot(nil)
	if len(snap.Endpoints) != 0 || c.total != 0 {
		t.Fatalf("after deleting all: %v (total %d)", addrs(snap), c.total)
	}
}

func TestPortSelection(t *testing.T) {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	ports := []discoveryv1.EndpointPort{
		{Name: ptr("dns"), Port: ptr[int32](53), Protocol: &udp},
		{Name: ptr("dns-tcp"), Port: ptr[int32](53), Protocol: &tcp},
		{Name: ptr("grpc"), Port: ptr[int32](8080)},
		{Name: ptr("nil-port")},
	}
	for _, tc := range []struct {
		sel   string
		ports []discoveryv1.EndpointPort
		want  uint16
		ok    bool
	}{
		{"grpc", ports, 8080, true},
		{"dns", ports, 53, true},
		{"53", ports, 53, true}, // the TCP one
		{"8080", ports, 8080, true},
		{"http", ports, 0, false},
		{"nil-port", ports, 0, false},
		{"", ports, 0, false}, // several ports: no single one
		{"", ports[2:3], 8080, true},
		{"", []discoveryv1.EndpointPort{{Port: ptr[int32](80)}}, 80, true},
		{"", nil, 0, false},
	} {
		got, ok := mustPort(t, tc.sel).resolve(tc.ports)
		if got != tc.want || ok != tc.ok {
			t.Errorf("port %q: got %d %v, want %d %v", tc.sel, got, ok, tc.want, tc.ok)
		}
	}
	for _, bad := range []string{"0", "65536", "-1"} {
		if _, err := parsePort(bad); err == nil {
			t.Errorf("parsePort(%q): no error", bad)
		}
	}
}

func TestNewValidates(t *testing.T) {
	client := offlineClient(t)
	for _, cfg := range []Config{
		{Namespace: "shop", Service: "cart"},
		{Client: client, Namespace: "Shop", Service: "cart"},
		{Client: client, Namespace: "shop", Service: "1cart"},
		{Client: client, Namespace: "shop", Service: "cart", Port: "70000"},
		{Client: client, Namespace: "shop", Service: "cart", Coalesce: -time.Second},
		{Client: client, Namespace: "shop", Service: "cart", Identity: discovery.IdentityLabel("bad key")},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v): no error", cfg)
		}
	}
	s, err := New(Config{Client: client, Namespace: "shop", Service: "cart", Port: "grpc"})
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.Coalesce != DefaultCoalesce || s.Synced() {
		t.Errorf("coalesce %v, synced %v", s.cfg.Coalesce, s.Synced())
	}
}

// recorder is a Publisher that keeps every Snapshot with its arrival time.
type recorder struct {
	// install, if set before the source runs, is called with each
	// Snapshot before it is recorded (to build and swap a picker, as the
	// proxy does); the arrival time is taken after it returns.
	install func(*discovery.Snapshot)

	mu    sync.Mutex
	snaps []*discovery.Snapshot
	at    []time.Time
	wake  chan struct{}
}

func newRecorder() *recorder { return &recorder{wake: make(chan struct{}, 1)} }

func (r *recorder) publish(s *discovery.Snapshot) {
	if r.install != nil {
		r.install(s)
	}
	r.mu.Lock()
	r.snaps = append(r.snaps, s)
	r.at = append(r.at, time.Now())
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.snaps)
}

func (r *recorder) last() (*discovery.Snapshot, time.Time, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.snaps) == 0 {
		return nil, time.Time{}, 0
	}
	return r.snaps[len(r.snaps)-1], r.at[len(r.at)-1], len(r.snaps)
}

// waitFor waits until the latest Snapshot satisfies ok, and returns it with
// its arrival time.
func (r *recorder) waitFor(t testing.TB, within time.Duration, what string, ok func(*discovery.Snapshot) bool) (*discovery.Snapshot, time.Time) {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		if s, at, _ := r.last(); s != nil && ok(s) {
			return s, at
		}
		select {
		case <-r.wake:
		case <-deadline.C:
			s, _, n := r.last()
			t.Fatalf("no snapshot with %s within %v; last of %d: %+v", what, within, n, s)
		}
	}
}

// TestSyncLoopCoalescesAndDeduplicates drives the sync loop through the
// handlers' entry point, without an informer.
func TestSyncLoopCoalescesAndDeduplicates(t *testing.T) {
	// Long enough that publishing at the leading edge (at once) and at the
	// trailing edge (after coalesce) cannot be confused on a busy machine.
	const coalesce = 400 * time.Millisecond
	s, err := New(Config{Client: offlineClient(t), Namespace: "shop", Service: "cart", Port: "grpc", Coalesce: coalesce})
	if err != nil {
		t.Fatal(err)
	}
	s.reset()
	rec := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	synced := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.syncLoop(ctx, synced, s.podTimes(), rec.publish)
	}()
	defer func() { cancel(); <-done }()

	// Before the initial list completes nothing is published, whatever
	// arrives.
	s.record(mkSlice("a", discoveryv1.AddressTypeIPv4, map[string]int32{"grpc": 8080}, epSpec{addr: "198.18.0.1"}), false)
	time.Sleep(2 * coalesce)
	if rec.count() != 0 || s.Synced() {
		t.Fatalf("published %d before sync (synced %v)", rec.count(), s.Synced())
	}
	close(synced)
	rec.waitFor(t, time.Second, "the first list", func(sn *discovery.Snapshot) bool { return len(sn.Endpoints) == 1 })
	if !s.Synced() {
		t.Fatal("not synced after the first snapshot")
	}

	// A change after a quiet period is published at once.
	time.Sleep(2 * coalesce)
	start := time.Now()
	s.record(mkSlice("b", discoveryv1.AddressTypeIPv4, map[string]int32{"grpc": 8080}, epSpec{addr: "198.18.0.2"}), false)
	_, at := rec.waitFor(t, time.Second, "slice b", func(sn *discovery.Snapshot) bool { return len(sn.Endpoints) == 2 })
	if d := at.Sub(start); d >= coalesce/2 {
		t.Errorf("isolated change published after %v, want at once (well before the coalescing period %v)", d, coalesce)
	}

	// A burst is folded: 200 changes in quick succession, a few snapshots.
	before := rec.count()
	for i := range 200 {
		s.record(mkSlice(fmt.Sprintf("burst-%d", i%20), discoveryv1.AddressTypeIPv4, map[string]int32{"grpc": 8080},
			epSpec{addr: fmt.Sprintf("198.18.1.%d", i%20+1)}), false)
		if i%50 == 0 {
			time.Sleep(coalesce / 4)
		}
	}
	rec.waitFor(t, 3*coalesce, "22 endpoints", func(sn *discovery.Snapshot) bool { return len(sn.Endpoints) == 22 })
	if n := rec.count() - before; n > 6 {
		t.Errorf("burst of 200 changes over ~%v gave %d snapshots, want few", coalesce, n)
	}

	// A change that does not alter the endpoints publishes nothing; a
	// tombstone (a delete seen only through a relist) deletes.
	time.Sleep(2 * coalesce)
	before = rec.count()
	same := mkSlice("b", discoveryv1.AddressTypeIPv4, map[string]int32{"grpc": 8080}, epSpec{addr: "198.18.0.2"})
	same.Labels["unrelated"] = "change"
	s.record(same, false)
	time.Sleep(2 * coalesce)
	if rec.count() != before {
		t.Errorf("an unchanged endpoint set was published again")
	}
	s.record(cache.DeletedFinalStateUnknown{Key: "shop/b", Obj: same}, true)
	rec.waitFor(t, time.Second, "slice b deleted", func(sn *discovery.Snapshot) bool {
		_, found := sn.Find("198.18.0.2:8080")
		return !found && len(sn.Endpoints) == 21
	})
}

// benchSlices makes n endpoints in slices of 100, as the EndpointSlice
// controller does.
func benchSlices(n int) []*discoveryv1.EndpointSlice {
	var out []*discoveryv1.EndpointSlice
	for i := 0; i < n; i += 100 {
		var eps []epSpec
		for j := i; j < min(i+100, n); j++ {
			eps = append(eps, epSpec{addr: fmt.Sprintf("198.18.%d.%d", j/250, j%250+1), zone: "zone-a", node: fmt.Sprintf("node-%d", j%50), pod: fmt.Sprintf("cart-%d", j)})
		}
		out = append(out, mkSlice(fmt.Sprintf("cart-%d", i/100), discoveryv1.AddressTypeIPv4, map[string]int32{"grpc": 8080}, eps...))
	}
	return out
}

// BenchmarkMerge measures what the sync loop does per change: "full"
// converts every slice and merges them (the first list, or a relist);
// "one-slice" converts one changed slice and merges all (a pod changing
// state).
func BenchmarkMerge(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		in := benchSlices(n)
		sel := mustPort(b, "grpc")
		b.Run(fmt.Sprintf("full/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c := newSliceCache("shop/cart", sel, discovery.IdentityAddress)
				for _, s := range in {
					c.update(s)
				}
				if snap, _, _, err := c.snapshot(nil); err != nil || len(snap.Endpoints) != n {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("one-slice/%d", n), func(b *testing.B) {
			c := newSliceCache("shop/cart", sel, discovery.IdentityAddress)
			for _, s := range in {
				c.update(s)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				c.update(in[i%len(in)])
				i++
				if snap, _, _, err := c.snapshot(nil); err != nil || len(snap.Endpoints) != n {
					b.Fatal(err)
				}
			}
		})
	}
}
