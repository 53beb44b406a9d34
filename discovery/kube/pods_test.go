package kube

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
