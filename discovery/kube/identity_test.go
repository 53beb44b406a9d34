package kube

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/discovery"
	"github.com/longhaul-proxy/longhaul/internal/kubetest"
)

// TestConvertIdentity: under discovery.IdentityPodName an endpoint's ID is its pod's
// name (a StatefulSet pod keeps it across a new IP); without a pod
// reference, with a reference to another kind, or under discovery.IdentityAddress,
// the ID is empty (the address).
func TestConvertIdentity(t *testing.T) {
	slice := func() *discoveryv1.EndpointSlice {
		s := mkSlice("db-x", discoveryv1.AddressTypeIPv4, map[string]int32{"sql": 5432},
			epSpec{addr: "198.18.0.1", pod: "db-0"},
			epSpec{addr: "198.18.0.2", pod: "db-1"},
			epSpec{addr: "198.18.0.3"},                  // no targetRef
			epSpec{addr: "198.18.0.4", pod: "external"}, // made a Node below
		)
		s.Endpoints[1].Hostname = ptr("db-1") // as for a StatefulSet's governing Service
		s.Endpoints[3].TargetRef.Kind = "Node"
		return s
	}
	sel := mustPort(t, "sql")
	ids := func(identity discovery.Identity) []string {
		eps, _, _ := convert(slice(), sel, identity)
		out := make([]string, len(eps))
		for i, e := range eps {
			out[i] = e.Address + "=" + e.ID
		}
		return out
	}
	if got, want := ids(discovery.IdentityPodName), []string{"198.18.0.1:5432=db-0", "198.18.0.2:5432=db-1", "198.18.0.3:5432=", "198.18.0.4:5432="}; !slices.Equal(got, want) {
		t.Errorf("pod-name: %v, want %v", got, want)
	}
	if got, want := ids(discovery.IdentityAddress), []string{"198.18.0.1:5432=", "198.18.0.2:5432=", "198.18.0.3:5432=", "198.18.0.4:5432="}; !slices.Equal(got, want) {
		t.Errorf("address: %v, want %v", got, want)
	}
	// An invalid name (API names never are) is no ID.
	if got := endpointID(discovery.IdentityPodName, &discoveryv1.Endpoint{TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "a b"}}); got != "" {
		t.Errorf("pod name %q: ID %q, want none", "a b", got)
	}
}

// TestIdentityReplacedPod: a StatefulSet pod replaced under a new IP, its
// old endpoint still terminating in another slice, yields a snapshot in
// which both carry the pod's name; the snapshot stays sorted and unique by
// address.
func TestIdentityReplacedPod(t *testing.T) {
	c := newSliceCache("shop/db", mustPort(t, "sql"), discovery.IdentityPodName)
	c.update(mkSlice("a", discoveryv1.AddressTypeIPv4, map[string]int32{"sql": 5432},
		epSpec{addr: "198.18.0.9", pod: "db-2"},
		epSpec{addr: "198.18.0.1", pod: "db-0"}))
	c.update(mkSlice("b", discoveryv1.AddressTypeIPv4, map[string]int32{"sql": 5432},
		epSpec{addr: "198.18.0.3", pod: "db-2", ready: ptr(false), serving: ptr(false), terminate: ptr(true)}))
	snap, _, _, err := c.snapshot(nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range snap.Endpoints {
		got = append(got, e.Address+"="+e.ID)
	}
	if want := "198.18.0.1:5432=db-0 198.18.0.3:5432=db-2 198.18.0.9:5432=db-2"; strings.Join(got, " ") != want {
		t.Errorf("snapshot %v, want %s", got, want)
	}
	if el := snap.Eligible(); len(el) != 2 || el[1] != (discovery.Endpoint{Address: "198.18.0.9:5432", ID: "db-2", Ready: true, Serving: true, Weight: 1, Pod: "db-2"}) {
		t.Errorf("eligible %+v, want db-0 and the new db-2", el)
	}
}

// testStatefulSetIdentity runs a source with discovery.IdentityPodName against the
// API server: a StatefulSet-like pod "db-2" replaced under a new IP (its
// slice rewritten as the EndpointSlice controller does) keeps every key of
// a Maglev picker built from the snapshots; a pod replaced under a new name
// moves keys.
func testStatefulSetIdentity(t *testing.T, cl *kubetest.Cluster) {
	ns := cl.CreateNamespace(t, "identity-")
	api := sliceAPI{t, cl.Client, ns}
	_, rec, _ := runSourceConfig(t, Config{Client: cl.Client, Namespace: ns, Service: "cart", Port: "grpc", Identity: discovery.IdentityPodName})
	specs := make([]epSpec, 5)
	for i := range specs {
		specs[i] = epSpec{addr: fmt.Sprintf("198.18.2.%d", 10+i), pod: fmt.Sprintf("db-%d", i)}
	}
	slice := api.create(mkSlice("cart-db", discoveryv1.AddressTypeIPv4, map[string]int32{"grpc": 8080}, specs...))
	picks := func(what string, want ...string) []string {
		t.Helper()
		snap, _ := rec.waitFor(t, within, what, hasAddrs(want...))
		p, err := balancer.Build(snap, balancer.Policy{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]string, 10_000)
		for i := range out {
			out[i] = p.Pick(balancer.HashString(fmt.Sprint(i)), nil).Endpoint.ID
		}
		return out
	}
	before := picks("five pods", "198.18.2.10:8080", "198.18.2.11:8080", "198.18.2.12:8080", "198.18.2.13:8080", "198.18.2.14:8080")

	slice.Endpoints[2].Addresses = []string{"198.18.2.99"}
	slice = api.update(slice)
	after := picks("db-2 under a new IP", "198.18.2.10:8080", "198.18.2.11:8080", "198.18.2.13:8080", "198.18.2.14:8080", "198.18.2.99:8080")
	n := 0
	for i := range before {
		if before[i] != after[i] {
			n++
		}
	}
	if n != 0 {
		t.Errorf("db-2 under a new IP: %d of %d keys moved, want 0", n, len(before))
	}

	slice.Endpoints[2].TargetRef.Name = "db-7"
	slice.Endpoints[2].Addresses = []string{"198.18.2.98"}
	api.update(slice)
	renamed := picks("db-7 instead", "198.18.2.10:8080", "198.18.2.11:8080", "198.18.2.13:8080", "198.18.2.14:8080", "198.18.2.98:8080")
	n = 0
	for i := range before {
		if before[i] != renamed[i] {
			n++
		}
	}
	if n < 1500 {
		t.Errorf("db-2 replaced by db-7: %d of %d keys moved, want its share and more", n, len(before))
	}
	t.Logf("same pod name, new IP: 0 of %d keys moved; new pod name: %d moved", len(before), n)
}

// TestHeldUntilIdentified: under an identity read from the pod, an
// endpoint whose pod was not read yet is published not ready (held
// back), and with its ID once it was.
func TestHeldUntilIdentified(t *testing.T) {
	c := newSliceCache("shop/cache", mustPort(t, "sql"), discovery.IdentityLabel("shard"))
	sl := mkSlice("a", discoveryv1.AddressTypeIPv4, map[string]int32{"sql": 5432},
		epSpec{addr: "198.18.0.1", pod: "cache-x1"}, epSpec{addr: "198.18.0.2", pod: "cache-x2"}, epSpec{addr: "198.18.0.3"})
	sl.Namespace = "shop" // the pods' (mkSlice's targetRefs)
	c.update(sl)
	known := map[string]podInfo{"cache-x1": {id: "0", identified: true}}
	lookup := func(ref podRef, _ bool) podInfo { return known[ref.name] }
	snap, held, _, err := c.snapshot(lookup)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range snap.Endpoints {
		got = append(got, fmt.Sprintf("%s id=%q ready=%v", e.Address, e.ID, e.Ready))
	}
	want := []string{`198.18.0.1:5432 id="0" ready=true`, `198.18.0.2:5432 id="" ready=false`, `198.18.0.3:5432 id="" ready=true`}
	if held != 1 || !slices.Equal(got, want) {
		t.Errorf("held %d, snapshot %v; want 1 held and %v", held, got, want)
	}
	known["cache-x2"] = podInfo{id: "1", identified: true}
	snap, held, _, _ = c.snapshot(lookup)
	if e, _ := snap.Find("198.18.0.2:5432"); held != 0 || e.ID != "1" || !e.Ready {
		t.Errorf("once read: held %d, endpoint %+v; want none held, ID 1, ready", held, e)
	}
}

// testLabelIdentity runs a source whose identity is a pod label against the
// API server: the first snapshot already carries every pod's label as its
// ID; a pod replaced by another pod with the same label under a new IP
// moves no key; without the permission to read pods, endpoints hash by
// address and the first snapshot is not held back for long.
func testLabelIdentity(t *testing.T, cl *kubetest.Cluster) {
	ctx := context.Background()
	for _, withPods := range []bool{true, false} {
		t.Run(map[bool]string{true: "WithPods", false: "WithoutPods"}[withPods], func(t *testing.T) {
			ns := cl.CreateNamespace(t, "shard-")
			if _, err := cl.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{
				ObjectMeta: metav1.ObjectMeta{Name: "default"},
			}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			kubetest.ApplyRBAC(t, cl.Client, ns, "../../deploy/rbac.yaml")
			if withPods {
				kubetest.ApplyRBAC(t, cl.Client, ns, "../../deploy/rbac-pods.yaml")
			}
			client := cl.ServiceAccountClient(t, ns, "longhaul")
			mkPod := func(name, shard string) *corev1.Pod {
				pod, err := cl.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"shard": shard}},
					Spec: corev1.PodSpec{NodeName: "node-1", AutomountServiceAccountToken: new(false),
						Containers: []corev1.Container{{Name: "cache", Image: "cache:1"}}},
				}, metav1.CreateOptions{})
				if err != nil {
					t.Fatal(err)
				}
				return pod
			}
			api := sliceAPI{t, cl.Client, ns}
			in := mkSlice("cart-a", discoveryv1.AddressTypeIPv4, map[string]int32{"grpc": 8080})
			for i := range 5 {
				pod := mkPod(fmt.Sprintf("cache-a%d", i), fmt.Sprint(i))
				in.Endpoints = append(in.Endpoints, discoveryv1.Endpoint{
					Addresses: []string{fmt.Sprintf("198.18.3.%d", 10+i)},
					TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod.Name, UID: pod.UID},
				})
			}
			slice := api.create(in)
			began := time.Now()
			_, rec, _ := runSourceConfig(t, Config{Client: client, Namespace: ns, Service: "cart", Port: "grpc", Identity: discovery.IdentityLabel("shard")})
			first, _, _ := rec.last()
			took := time.Since(began)
			var ids []string
			for _, e := range first.Endpoints {
				ids = append(ids, e.ID)
			}
			wantIDs := []string{"0", "1", "2", "3", "4"}
			if !withPods {
				wantIDs = []string{"", "", "", "", ""}
			}
			if !slices.Equal(ids, wantIDs) || len(first.Eligible()) != 5 {
				t.Fatalf("first snapshot: IDs %q, %d eligible; want %q, 5 eligible", ids, len(first.Eligible()), wantIDs)
			}
			if took > firstHold {
				t.Errorf("first snapshot after %v, want well within %v", took, firstHold)
			}
			if !withPods {
				t.Logf("without pods permission: first snapshot after %v, hashing by address", took.Round(time.Millisecond))
				return
			}
			picks := func(s *discovery.Snapshot) []string {
				p, err := balancer.Build(s, balancer.Policy{}, nil)
				if err != nil {
					t.Fatal(err)
				}
				out := make([]string, 10_000)
				for i := range out {
					out[i] = p.Pick(balancer.HashString(fmt.Sprint(i)), nil).Endpoint.Address
				}
				return out
			}
			before := picks(first)
			// Shard 2's pod is replaced by a new pod under a new IP.
			pod := mkPod("cache-b2", "2")
			slice.Endpoints[2] = discoveryv1.Endpoint{
				Addresses: []string{"198.18.3.99"},
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod.Name, UID: pod.UID},
			}
			api.update(slice)
			snap, _ := rec.waitFor(t, within, "shard 2 under a new IP, identified", func(s *discovery.Snapshot) bool {
				e, ok := s.Find("198.18.3.99:8080")
				return ok && e.ID == "2" && e.Ready
			})
			after := picks(snap)
			moved := 0
			for i := range before {
				if before[i] != after[i] && !(before[i] == "198.18.3.12:8080" && after[i] == "198.18.3.99:8080") {
					moved++
				}
			}
			if moved != 0 {
				t.Errorf("shard 2 replaced under a new IP: %d of %d keys moved, want 0", moved, len(before))
			}
			t.Logf("label identity: first snapshot after %v with every ID; shard 2 replaced under a new IP: 0 of %d keys moved", took.Round(time.Millisecond), len(before))
		})
	}
}
