package kube

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/longhaul-proxy/longhaul/discovery"
	"github.com/longhaul-proxy/longhaul/internal/kubetest"
)

// testPodKillTime: a terminating endpoint whose pod was deleted gracefully
// carries the pod's deletion timestamp as its kill time, read with the
// optional permission of deploy/rbac-pods.yaml; without it (deploy/rbac.yaml
// alone) the endpoint has no kill time, and nothing else changes.
//
// No kubelet runs, so a pod bound to a node stays, once deleted, with its
// deletion timestamp set until the test ends.
func testPodKillTime(t *testing.T, cl *kubetest.Cluster) {
	cases := []struct {
		name     string
		rbac     []string
		killTime bool
	}{
		{"Admin", nil, true},
		{"ServiceAccountWithOptionalRole", []string{"rbac.yaml", "rbac-pods.yaml"}, true},
		{"ServiceAccountWithoutPods", []string{"rbac.yaml"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			ns := cl.CreateNamespace(t, "kill-")
			client := cl.Client
			if tc.rbac != nil {
				for _, f := range tc.rbac {
					kubetest.ApplyRBAC(t, cl.Client, ns, "../../deploy/"+f)
				}
				client = cl.ServiceAccountClient(t, ns, "longhaul")
			}
			// No controller manager runs to create it; pods need it.
			if _, err := cl.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{
				ObjectMeta: metav1.ObjectMeta{Name: "default"},
			}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			pod, err := cl.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "cart-0"},
				Spec: corev1.PodSpec{
					NodeName:                     "node-1", // bound: a delete waits for a kubelet that never comes
					AutomountServiceAccountToken: new(false),
					Containers:                   []corev1.Container{{Name: "cart", Image: "cart:1"}},
				},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			api := sliceAPI{t, cl.Client, ns}
			in := mkSlice("cart-a", discoveryv1.AddressTypeIPv4, map[string]int32{"grpc": 8080},
				epSpec{addr: "198.18.0.1", pod: pod.Name}, epSpec{addr: "198.18.0.2"})
			in.Endpoints[0].TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod.Name, UID: pod.UID}
			slice := api.create(in)
			_, rec, cnt := runSource(t, client, ns, "grpc")
			rec.waitFor(t, within, "two ready endpoints", func(s *discovery.Snapshot) bool {
				e, _ := s.Find("198.18.0.1:8080")
				return len(s.Endpoints) == 2 && e.Ready
			})

			deleted := time.Now()
			if err := cl.Client.CoreV1().Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(30))}); err != nil {
				t.Fatal(err)
			}
			pod, err = cl.Client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("pod gone after a graceful delete: %v", err)
			}
			if pod.DeletionTimestamp == nil || pod.DeletionGracePeriodSeconds == nil || *pod.DeletionGracePeriodSeconds != 30 {
				t.Fatalf("deleted pod: deletionTimestamp %v, grace %v", pod.DeletionTimestamp, pod.DeletionGracePeriodSeconds)
			}
			dts := pod.DeletionTimestamp.Time
			if d := dts.Sub(deleted); d < 28*time.Second || d > 32*time.Second {
				t.Errorf("deletionTimestamp %v after the delete, want the 30s grace period", d)
			}
			// What the EndpointSlice controller does for a deleted pod.
			slice.Endpoints[0].Conditions = discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(true), Terminating: ptr(true)}
			slice = api.update(slice)

			terminating := func(s *discovery.Snapshot) bool {
				e, _ := s.Find("198.18.0.1:8080")
				return e.Terminating
			}
			_, at := rec.waitFor(t, within, "terminating", terminating)
			if tc.killTime {
				var snap *discovery.Snapshot
				snap, at = rec.waitFor(t, within, "the kill time", func(s *discovery.Snapshot) bool {
					e, _ := s.Find("198.18.0.1:8080")
					return e.Terminating && !e.KillTime.IsZero()
				})
				e, _ := snap.Find("198.18.0.1:8080")
				if !e.KillTime.Equal(dts) {
					t.Errorf("kill time %v, want the pod's deletionTimestamp %v", e.KillTime, dts)
				}
				if o, _ := snap.Find("198.18.0.2:8080"); !o.KillTime.IsZero() {
					t.Errorf("a ready endpoint has a kill time: %+v", o)
				}
				t.Logf("kill time %v published %v after the delete; pod GETs with a kill time: %d",
					e.KillTime.Format(time.RFC3339), at.Sub(deleted).Round(time.Millisecond), cnt.podKillTimes.Load())
				// Later builds keep it, and do not GET the pod again.
				slice.Endpoints[1].Conditions.Ready = ptr(false)
				api.update(slice)
				snap, _ = rec.waitFor(t, within, "another change", func(s *discovery.Snapshot) bool {
					o, _ := s.Find("198.18.0.2:8080")
					return !o.Ready
				})
				if e, _ := snap.Find("198.18.0.1:8080"); !e.KillTime.Equal(dts) {
					t.Errorf("kill time lost by a later snapshot: %+v", e)
				}
				if n := cnt.podKillTimes.Load(); n != 1 {
					t.Errorf("%d pod GETs found the kill time, want 1 (cached)", n)
				}
			} else {
				// Snapshots still flow; the kill time never comes.
				slice.Endpoints[1].Conditions.Ready = ptr(false)
				api.update(slice)
				rec.waitFor(t, within, "another change", func(s *discovery.Snapshot) bool {
					o, _ := s.Find("198.18.0.2:8080")
					return !o.Ready
				})
				time.Sleep(500 * time.Millisecond)
				last, _, _ := rec.last()
				if e, _ := last.Find("198.18.0.1:8080"); !e.Terminating || !e.KillTime.IsZero() {
					t.Errorf("without the permission: endpoint %+v, want terminating with no kill time", e)
				}
				if cnt.podForbidden.Load() == 0 {
					t.Error("the refused pod GET was not counted")
				}
				if n := cnt.errors.Load(); n != 0 {
					t.Errorf("%d errors counted: a missing optional permission is not an error", n)
				}
				t.Logf("without pods permission: %d forbidden lookups, snapshot %v after the delete", cnt.podForbidden.Load(), at.Sub(deleted).Round(time.Millisecond))
			}
		})
	}
}

// testPodRevision: while an endpoint is terminating, every endpoint that
// names its pod carries the pod's revision label (pod-template-hash), read
// with one GET per pod, so that new sessions prefer the new revision; with
// no endpoint terminating, no pod is read and endpoints carry none.
func testPodRevision(t *testing.T, cl *kubetest.Cluster) {
	ctx := context.Background()
	ns := cl.CreateNamespace(t, "revision-")
	if _, err := cl.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "default"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubetest.ApplyRBAC(t, cl.Client, ns, "../../deploy/rbac.yaml")
	kubetest.ApplyRBAC(t, cl.Client, ns, "../../deploy/rbac-pods.yaml")
	client := cl.ServiceAccountClient(t, ns, "longhaul")
	pods := map[string]*corev1.Pod{}
	for _, p := range []struct{ name, hash string }{{"web-aaa-1", "aaa"}, {"web-aaa-2", "aaa"}, {"web-bbb-1", "bbb"}} {
		pod, err := cl.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: p.name, Labels: map[string]string{"app": "web", "pod-template-hash": p.hash}},
			Spec: corev1.PodSpec{
				NodeName:                     "node-1",
				AutomountServiceAccountToken: new(false),
				Containers:                   []corev1.Container{{Name: "web", Image: "web:" + p.hash}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pods[p.name] = pod
	}
	api := sliceAPI{t, cl.Client, ns}
	in := mkSlice("cart-a", discoveryv1.AddressTypeIPv4, map[string]int32{"grpc": 8080},
		epSpec{addr: "198.18.0.1"}, epSpec{addr: "198.18.0.2"}, epSpec{addr: "198.18.0.3"}, epSpec{addr: "198.18.0.4"})
	for i, name := range []string{"web-aaa-1", "web-aaa-2", "web-bbb-1"} {
		in.Endpoints[i].TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: name, UID: pods[name].UID}
	}
	slice := api.create(in)
	_, rec, cnt := runSource(t, client, ns, "grpc")
	rec.waitFor(t, within, "four ready endpoints", func(s *discovery.Snapshot) bool { return len(s.Endpoints) == 4 })
	// A change with nothing terminating reads no pod.
	slice.Endpoints[3].Conditions.Ready = ptr(false)
	slice = api.update(slice)
	snap, _ := rec.waitFor(t, within, "the fourth not ready", func(s *discovery.Snapshot) bool {
		e, _ := s.Find("198.18.0.4:8080")
		return !e.Ready
	})
	for _, e := range snap.Endpoints {
		if e.Revision != "" {
			t.Errorf("no rollout, yet %s has revision %q", e.Address, e.Revision)
		}
	}
	if n := cnt.podGets.Load(); n != 0 {
		t.Errorf("%d pod GETs with no endpoint terminating, want 0", n)
	}

	// The first old pod leaves: every pod's revision is read.
	if err := cl.Client.CoreV1().Pods(ns).Delete(ctx, "web-aaa-1", metav1.DeleteOptions{GracePeriodSeconds: new(int64(30))}); err != nil {
		t.Fatal(err)
	}
	slice.Endpoints[0].Conditions = discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(true), Terminating: ptr(true)}
	slice = api.update(slice)
	want := map[string]string{"198.18.0.1:8080": "aaa", "198.18.0.2:8080": "aaa", "198.18.0.3:8080": "bbb", "198.18.0.4:8080": ""}
	snap, _ = rec.waitFor(t, within, "the revisions and the kill time", func(s *discovery.Snapshot) bool {
		for _, e := range s.Endpoints {
			if e.Revision != want[e.Address] {
				return false
			}
		}
		e, _ := s.Find("198.18.0.1:8080")
		return !e.KillTime.IsZero()
	})
	pl := snap.Placement()
	var preferred, outgoing []string
	for i, e := range pl.Eligible {
		if pl.Preferred(i) {
			preferred = append(preferred, e.Address)
		} else {
			outgoing = append(outgoing, e.Address)
		}
	}
	if !pl.Active() || !slices.Equal(preferred, []string{"198.18.0.3:8080"}) || !slices.Equal(outgoing, []string{"198.18.0.2:8080"}) {
		t.Errorf("placement: preferred %v, outgoing %v; want the new revision preferred and the other old pod outgoing", preferred, outgoing)
	}
	gets := cnt.podGets.Load()
	if gets != 3 {
		t.Errorf("%d pod GETs for three pods, want 3", gets)
	}
	// Later builds answer from the cache.
	slice.Endpoints[3].Conditions.Ready = ptr(true)
	slice = api.update(slice)
	snap, _ = rec.waitFor(t, within, "the fourth ready again", func(s *discovery.Snapshot) bool {
		e, _ := s.Find("198.18.0.4:8080")
		return e.Ready
	})
	if e, _ := snap.Find("198.18.0.2:8080"); e.Revision != "aaa" {
		t.Errorf("revision lost by a later build: %+v", e)
	}
	if n := cnt.podGets.Load(); n != gets {
		t.Errorf("%d pod GETs after a later build, want still %d", n, gets)
	}
	t.Logf("rollout seen with %d pod GETs; placement preferred %v, outgoing %v", gets, preferred, outgoing)

	// The old pod gone: no endpoint terminating, revisions no longer carried.
	slice.Endpoints = slice.Endpoints[1:]
	api.update(slice)
	rec.waitFor(t, within, "the old pod gone, no revision", func(s *discovery.Snapshot) bool {
		if len(s.Endpoints) != 3 {
			return false
		}
		for _, e := range s.Endpoints {
			if e.Revision != "" {
				return false
			}
		}
		return true
	})
}

func TestPodRevisionLabels(t *testing.T) {
	for _, c := range []struct {
		labels map[string]string
		want   string
	}{
		{map[string]string{"pod-template-hash": "5d8f9c7b6"}, "5d8f9c7b6"},
		{map[string]string{"controller-revision-hash": "db-6c4f8d9b7f"}, "db-6c4f8d9b7f"},
		{map[string]string{"pod-template-hash": "a", "controller-revision-hash": "b"}, "a"},
		{map[string]string{"app": "web"}, ""},
		{map[string]string{"pod-template-hash": "has space"}, ""},
		{nil, ""},
	} {
		if got := podRevision(c.labels); got != c.want {
			t.Errorf("podRevision(%v) = %q, want %q", c.labels, got, c.want)
		}
	}
}

// TestKillTimeNotDelayedByRevisionRead: a pod read for its revision while
// running, then terminating, is read again at once for its kill time: the
// retry throttle is for reads of the pod as terminating only.
func TestKillTimeNotDelayedByRevisionRead(t *testing.T) {
	cs := fake.NewClientset(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", UID: "u1",
		Labels: map[string]string{"pod-template-hash": "aaa"}}})
	woke := make(chan struct{}, 8)
	p := newPodTimes(cs.CoreV1().Pods("shop"), zap.NewNop(), nil, func() { woke <- struct{}{} }, discovery.IdentityAddress)
	ctx, cancel := context.WithCancel(context.Background())
	wait := p.run(ctx)
	defer func() { cancel(); wait() }()
	ref := podRef{name: "web-1", uid: "u1"}
	p.build(func() { p.get(ref, false) })
	select {
	case <-woke:
	case <-time.After(5 * time.Second):
		t.Fatal("the revision read did not end")
	}
	// The pod is deleted: its deletion timestamp is set.
	dts := metav1.NewTime(time.Now().Add(30 * time.Second).Truncate(time.Second))
	pod, err := cs.CoreV1().Pods("shop").Get(ctx, "web-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.DeletionTimestamp = &dts
	if _, err := cs.CoreV1().Pods("shop").Update(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var info podInfo
	p.build(func() { info = p.get(ref, true) })
	if !info.kill.IsZero() {
		t.Fatal("kill time known before the pod was read as terminating")
	}
	select {
	case <-woke:
	case <-time.After(podRetry / 2):
		t.Fatalf("no read for the kill time within %v of the pod terminating (the revision read throttled it)", podRetry/2)
	}
	p.build(func() { info = p.get(ref, true) })
	if !info.kill.Equal(dts.Time) {
		t.Fatalf("kill time %v, want %v", info.kill, dts.Time)
	}
	t.Logf("kill time read %v after the pod turned terminating", time.Since(start).Round(time.Millisecond))
}

// TestIdentifyWait: under an identity read from pods, an endpoint whose pod
// has not been read (the read pending, here for ever: no worker runs) is
// held back until identifyWait has passed since it was first asked for,
// then identified without an ID (its address). The clock is the test's.
func TestIdentifyWait(t *testing.T) {
	cs := fake.NewClientset()
	var mu sync.Mutex
	clock := time.Unix(1000, 0)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	woke := make(chan struct{}, 8)
	p := newPodTimes(cs.CoreV1().Pods("shop"), zap.NewNop(), nil, func() { woke <- struct{}{} }, discovery.IdentityLabel("shard"))
	p.now = now
	ref := podRef{name: "cache-1"}
	var info podInfo
	p.build(func() { info = p.get(ref, false) }) // queued, never read
	if info.identified {
		t.Fatal("identified before its pod was read")
	}
	advance(identifyWait - time.Millisecond)
	if p.build(func() { info = p.get(ref, false) }); info.identified {
		t.Fatalf("identified %v after it was first asked for, before identifyWait (%v)", identifyWait-time.Millisecond, identifyWait)
	}
	advance(time.Millisecond)
	if p.build(func() { info = p.get(ref, false) }); !info.identified || info.id != "" {
		t.Fatalf("after identifyWait: %+v, want identified by its address", info)
	}
}
