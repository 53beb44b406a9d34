package kube

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/discovery"
	"github.com/longhaul-proxy/longhaul/internal/kubetest"
)

// TestConvertIdentity: under IdentityPodName an endpoint's ID is its pod's
// name (a StatefulSet pod keeps it across a new IP); without a pod
// reference, with a reference to another kind, or under IdentityAddress,
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
	ids := func(identity Identity) []string {
		eps, _, _ := convert(slice(), sel, identity)
		out := make([]string, len(eps))
		for i, e := range eps {
			out[i] = e.Address + "=" + e.ID
		}
		return out
	}
	if got, want := ids(IdentityPodName), []string{"198.18.0.1:5432=db-0", "198.18.0.2:5432=db-1", "198.18.0.3:5432=", "198.18.0.4:5432="}; !slices.Equal(got, want) {
		t.Errorf("pod-name: %v, want %v", got, want)
	}
	if got, want := ids(IdentityAddress), []string{"198.18.0.1:5432=", "198.18.0.2:5432=", "198.18.0.3:5432=", "198.18.0.4:5432="}; !slices.Equal(got, want) {
		t.Errorf("address: %v, want %v", got, want)
	}
	// An invalid name (API names never are) is no ID.
	if got := endpointID(IdentityPodName, &discoveryv1.Endpoint{TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "a b"}}); got != "" {
		t.Errorf("pod name %q: ID %q, want none", "a b", got)
	}
}

// TestIdentityReplacedPod: a StatefulSet pod replaced under a new IP, its
// old endpoint still terminating in another slice, yields a snapshot in
// which both carry the pod's name; the snapshot stays sorted and unique by
// address.
func TestIdentityReplacedPod(t *testing.T) {
	c := newSliceCache("shop/db", mustPort(t, "sql"), IdentityPodName)
	c.update(mkSlice("a", discoveryv1.AddressTypeIPv4, map[string]int32{"sql": 5432},
		epSpec{addr: "198.18.0.9", pod: "db-2"},
		epSpec{addr: "198.18.0.1", pod: "db-0"}))
	c.update(mkSlice("b", discoveryv1.AddressTypeIPv4, map[string]int32{"sql": 5432},
		epSpec{addr: "198.18.0.3", pod: "db-2", ready: ptr(false), serving: ptr(false), terminate: ptr(true)}))
	snap, err := c.snapshot(nil)
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

func TestParseIdentity(t *testing.T) {
	for s, want := range map[string]Identity{"": IdentityAddress, "address": IdentityAddress, "pod-name": IdentityPodName} {
		if got, err := ParseIdentity(s); err != nil || got != want {
			t.Errorf("ParseIdentity(%q) = %v, %v; want %v", s, got, err, want)
		}
		if s != "" && want.String() != s {
			t.Errorf("%v.String() = %q, want %q", want, want.String(), s)
		}
	}
	if _, err := ParseIdentity("podname"); err == nil || !strings.Contains(err.Error(), "want address or pod-name") {
		t.Errorf("ParseIdentity(podname): %v", err)
	}
}

// testStatefulSetIdentity runs a source with IdentityPodName against the
// API server: a StatefulSet-like pod "db-2" replaced under a new IP (its
// slice rewritten as the EndpointSlice controller does) keeps every key of
// a Maglev picker built from the snapshots; a pod replaced under a new name
// moves keys.
func testStatefulSetIdentity(t *testing.T, cl *kubetest.Cluster) {
	ns := cl.CreateNamespace(t, "identity-")
	api := sliceAPI{t, cl.Client, ns}
	_, rec, _ := runSourceConfig(t, Config{Client: cl.Client, Namespace: ns, Service: "cart", Port: "grpc", Identity: IdentityPodName})
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
