package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/internal/testcert"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/internal/kubetest"
)

const testController = gwv1.GatewayController("longhaul.dev/gateway")

// within bounds how long a change at the API server may take to show in the
// published listeners or in a status.
const within = 20 * time.Second

// installCRDs creates the CustomResourceDefinitions of deploy/gateway/crds
// and waits until the Gateway API's kinds are served.
func installCRDs(t *testing.T, cl *kubetest.Cluster) gwclient.Interface {
	t.Helper()
	ctx := context.Background()
	n := cl.InstallCRDs(t, "../deploy/gateway/crds")
	gw, err := gwclient.NewForConfig(cl.Config)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the Gateway API's kinds are served", func() error {
		for _, list := range []func() error{
			func() error { _, err := gw.GatewayV1().GatewayClasses().List(ctx, metav1.ListOptions{}); return err },
			func() error { _, err := gw.GatewayV1().Gateways("").List(ctx, metav1.ListOptions{}); return err },
			func() error { _, err := gw.GatewayV1().HTTPRoutes("").List(ctx, metav1.ListOptions{}); return err },
			func() error { _, err := gw.GatewayV1().GRPCRoutes("").List(ctx, metav1.ListOptions{}); return err },
			func() error { _, err := gw.GatewayV1().ReferenceGrants("").List(ctx, metav1.ListOptions{}); return err },
		} {
			if err := list(); err != nil {
				return err
			}
		}
		return nil
	})
	t.Logf("installed %d CRDs", n)
	return gw
}

// eventually polls check until it returns nil, failing the test with its
// last error after within.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// applyGatewayRBAC creates deploy/gateway/rbac.yaml's objects with the
// ServiceAccount's and the Role's namespace rewritten to ns, as an overlay's
// namespace: does.
func applyGatewayRBAC(t *testing.T, c kubernetes.Interface, ns string) {
	t.Helper()
	ctx := context.Background()
	b, err := os.ReadFile("../deploy/gateway/rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	kinds := map[string]int{}
	for {
		var raw map[string]any
		if err := dec.Decode(&raw); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(raw)
		kind, _ := raw["kind"].(string)
		kinds[kind]++
		switch kind {
		case "ClusterRole":
			var r rbacv1.ClusterRole
			must(t, json.Unmarshal(body, &r))
			_, err = c.RbacV1().ClusterRoles().Create(ctx, &r, metav1.CreateOptions{})
		case "ClusterRoleBinding":
			var rb rbacv1.ClusterRoleBinding
			must(t, json.Unmarshal(body, &rb))
			for i := range rb.Subjects {
				rb.Subjects[i].Namespace = ns
			}
			_, err = c.RbacV1().ClusterRoleBindings().Create(ctx, &rb, metav1.CreateOptions{})
		case "Role":
			var r rbacv1.Role
			must(t, json.Unmarshal(body, &r))
			r.Namespace = ns
			_, err = c.RbacV1().Roles(ns).Create(ctx, &r, metav1.CreateOptions{})
		case "RoleBinding":
			var rb rbacv1.RoleBinding
			must(t, json.Unmarshal(body, &rb))
			rb.Namespace = ns
			for i := range rb.Subjects {
				rb.Subjects[i].Namespace = ns
			}
			_, err = c.RbacV1().RoleBindings(ns).Create(ctx, &rb, metav1.CreateOptions{})
		default:
			t.Fatalf("rbac.yaml: unexpected kind %q", kind)
		}
		must(t, err)
	}
	if kinds["ClusterRole"] != 1 || kinds["ClusterRoleBinding"] != 1 || kinds["Role"] != 1 || kinds["RoleBinding"] != 1 {
		t.Fatalf("rbac.yaml holds %v, want one ClusterRole, ClusterRoleBinding, Role and RoleBinding", kinds)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// saConfig is a rest config impersonating the ServiceAccount ns/name.
func saConfig(cl *kubetest.Cluster, ns, name string) *rest.Config {
	cfg := rest.CopyConfig(cl.Config)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + ns + ":" + name,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}
	return cfg
}

// recorder keeps what Publish receives.
type recorder struct {
	mu    sync.Mutex
	calls int
	last  []config.Listener
}

func (r *recorder) publish(ls []config.Listener) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	r.last = ls
}

func (r *recorder) get() ([]config.Listener, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last, r.calls
}

func service(ns, name string, port int32, portName string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: portName, Port: port, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}},
	}
}

func slice(ns, svc, portName, ip string) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: svc + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: new(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: new(portName), Port: new(int32(8080)), Protocol: new(corev1.ProtocolTCP)}},
	}
}

func httpRoute(ns, name, gwName string, ref gwv1.BackendObjectReference) *gwv1.HTTPRoute {
	return &gwv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: gwv1.ObjectName(gwName)}}},
			Hostnames:       []gwv1.Hostname{gwv1.Hostname(name + ".example.com")},
			Rules: []gwv1.HTTPRouteRule{{
				Matches:     []gwv1.HTTPRouteMatch{{Path: &gwv1.HTTPPathMatch{Type: new(gwv1.PathMatchPathPrefix), Value: new("/")}}},
				BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{BackendObjectReference: ref}}},
			}},
		},
	}
}

func svcRef(ns, name string, port gwv1.PortNumber) gwv1.BackendObjectReference {
	r := gwv1.BackendObjectReference{Name: gwv1.ObjectName(name), Port: &port}
	if ns != "" {
		r.Namespace = new(gwv1.Namespace(ns))
	}
	return r
}

// conditionIs checks that cs holds typ with status and reason, observed at
// generation gen.
func conditionIs(cs []metav1.Condition, typ string, status metav1.ConditionStatus, reason string, gen int64) error {
	for _, c := range cs {
		if c.Type != typ {
			continue
		}
		if c.Status != status || c.Reason != reason || c.ObservedGeneration != gen || c.LastTransitionTime.IsZero() {
			return fmt.Errorf("condition %s is %s/%s (generation %d, at %v), want %s/%s (generation %d)",
				typ, c.Status, c.Reason, c.ObservedGeneration, c.LastTransitionTime, status, reason, gen)
		}
		return nil
	}
	return fmt.Errorf("no condition %s in %v", typ, cs)
}

type want struct {
	typ    string
	status metav1.ConditionStatus
	reason string
}

func conditionsAre(cs []metav1.Condition, gen int64, ws ...want) error {
	var errs []error
	for _, w := range ws {
		errs = append(errs, conditionIs(cs, w.typ, w.status, w.reason, gen))
	}
	return errors.Join(errs...)
}

// TestControllerAgainstAPIServer runs the Controller, with the rights of
// deploy/gateway's ClusterRole only, against a real kube-apiserver: the
// listeners it publishes and every status it writes, as routes and a
// ReferenceGrant change.
func TestControllerAgainstAPIServer(t *testing.T) {
	cl := kubetest.Start(t)
	gwAdmin := installCRDs(t, cl)
	ctx := context.Background()
	sys := cl.CreateNamespace(t, "longhaul-")
	app := cl.CreateNamespace(t, "app-")
	other := cl.CreateNamespace(t, "other-")
	applyGatewayRBAC(t, cl.Client, sys)

	api := gwAdmin.GatewayV1()
	_, err := api.GatewayClasses().Create(ctx, &gwv1.GatewayClass{
		ObjectMeta: metav1.ObjectMeta{Name: "longhaul-test"},
		Spec:       gwv1.GatewayClassSpec{ControllerName: testController},
	}, metav1.CreateOptions{})
	must(t, err)
	_, err = api.GatewayClasses().Create(ctx, &gwv1.GatewayClass{
		ObjectMeta: metav1.ObjectMeta{Name: "someone-else"},
		Spec:       gwv1.GatewayClassSpec{ControllerName: "example.com/other"},
	}, metav1.CreateOptions{})
	must(t, err)
	_, err = api.Gateways(app).Create(ctx, &gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: gwv1.GatewaySpec{GatewayClassName: "longhaul-test", Listeners: []gwv1.Listener{
			{Name: "http", Port: 8080, Protocol: gwv1.HTTPProtocolType},
			{Name: "https", Port: 8443, Protocol: gwv1.HTTPSProtocolType, Hostname: new(gwv1.Hostname("secure.example.com")),
				TLS: &gwv1.ListenerTLSConfig{CertificateRefs: []gwv1.SecretObjectReference{{Name: "cert"}}}},
		}},
	}, metav1.CreateOptions{})
	must(t, err)
	for _, s := range []*corev1.Service{service(app, "web", 80, "http"), service(other, "remote", 80, "http")} {
		_, err := cl.Client.CoreV1().Services(s.Namespace).Create(ctx, s, metav1.CreateOptions{})
		must(t, err)
	}
	for _, s := range []*discoveryv1.EndpointSlice{slice(app, "web", "http", "10.1.0.11"), slice(other, "remote", "http", "10.1.0.12")} {
		_, err := cl.Client.DiscoveryV1().EndpointSlices(s.Namespace).Create(ctx, s, metav1.CreateOptions{})
		must(t, err)
	}
	for _, r := range []*gwv1.HTTPRoute{
		httpRoute(app, "good", "web", svcRef("", "web", 80)),
		httpRoute(app, "missing", "web", svcRef("", "nothing", 80)),
		httpRoute(app, "cross", "web", svcRef(other, "remote", 80)),
	} {
		_, err := api.HTTPRoutes(app).Create(ctx, r, metav1.CreateOptions{})
		must(t, err)
	}

	// The controller runs with the ServiceAccount's rights, as in a pod.
	cfg := saConfig(cl, sys, "longhaul")
	kube, err := kubernetes.NewForConfig(cfg)
	must(t, err)
	gwc, err := gwclient.NewForConfig(cfg)
	must(t, err)
	md, err := metadata.NewForConfig(cfg)
	must(t, err)
	var rec recorder
	c, err := New(Options{
		Kube: kube, Gateway: gwc, Metadata: md, ControllerName: testController,
		Address:        func(*gwv1.Gateway) string { return "127.0.0.2" },
		Publish:        rec.publish,
		ReportsApplied: true,
		Coalesce:       20 * time.Millisecond,
		Lease:          "longhaul-gateway", LeaseNamespace: sys, Identity: "replica-a",
		LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 500 * time.Millisecond,
	})
	must(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	var stopOnce sync.Once
	stopRun := func() {
		stopOnce.Do(func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	defer stopRun()

	name := "gw-" + app + "-web-8080"
	listener := func() (*config.Listener, error) {
		ls, _ := rec.get()
		if len(ls) != 1 {
			return nil, fmt.Errorf("published %d listeners, want 1", len(ls))
		}
		return &ls[0], nil
	}
	eventually(t, "the Gateway's listener is published", func() error {
		l, err := listener()
		if err != nil {
			return err
		}
		if l.Name != name || l.Address != "127.0.0.2:8080" || l.Protocol != "http" {
			return fmt.Errorf("listener %s at %s (%s), want %s at 127.0.0.2:8080 (http)", l.Name, l.Address, l.Protocol, name)
		}
		if len(l.Routes.HTTP) != 3 {
			return fmt.Errorf("%d routes, want 3", len(l.Routes.HTTP))
		}
		if len(l.Backends) != 1 || l.Backends[0].Endpoints.Kubernetes == nil ||
			*l.Backends[0].Endpoints.Kubernetes != (config.Kubernetes{Namespace: app, Service: "web", Port: "http"}) {
			return fmt.Errorf("backends %+v, want only %s/web port http", l.Backends, app)
		}
		return nil
	})
	l, _ := listener()
	for _, r := range l.Routes.HTTP {
		refs := r.Rules[0].Backends
		switch {
		case strings.Contains(r.Name, "-good-"):
			if len(refs) != 1 || refs[0].Name != l.Backends[0].Name {
				t.Errorf("route %s sends to %+v, want backend %s", r.Name, refs, l.Backends[0].Name)
			}
		case len(refs) != 0:
			t.Errorf("route %s with an unresolved ref sends to %+v, want none (500)", r.Name, refs)
		}
	}
	if err := (&config.Config{Admin: config.Default().Admin, Log: config.Default().Log, Listeners: []config.Listener{*l}}).Validate(); err != nil {
		t.Errorf("the published listener does not validate: %v", err)
	}

	eventually(t, "the controller leads", func() error {
		if !c.Leader() {
			return errors.New("not the leader")
		}
		return nil
	})
	gcStatus := func(name string) (*gwv1.GatewayClass, error) {
		return api.GatewayClasses().Get(ctx, name, metav1.GetOptions{})
	}
	eventually(t, "GatewayClass accepted", func() error {
		gc, err := gcStatus("longhaul-test")
		if err != nil {
			return err
		}
		return conditionsAre(gc.Status.Conditions, gc.Generation, want{"Accepted", metav1.ConditionTrue, "Accepted"},
			want{"SupportedVersion", metav1.ConditionTrue, "SupportedVersion"})
	})
	if gc, err := gcStatus("someone-else"); err != nil || len(gc.Status.Conditions) != 1 || gc.Status.Conditions[0].Reason != "Pending" {
		t.Errorf("another controller's class got status %+v (%v), want the API's default (Pending) untouched", gc.Status.Conditions, err)
	}

	// The listeners' attachedRoutes, as routes are added.
	attachedHTTP, attachedHTTPS := int32(3), int32(0)
	gatewayIs := func(programmed want, lprog want) func() error {
		return func() error {
			g, err := api.Gateways(app).Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				return err
			}
			gen := g.Generation
			var errs []error
			errs = append(errs, conditionsAre(g.Status.Conditions, gen,
				want{"Accepted", metav1.ConditionTrue, "Accepted"}, programmed))
			if len(g.Status.Addresses) != 1 || g.Status.Addresses[0].Value != "127.0.0.2" ||
				g.Status.Addresses[0].Type == nil || *g.Status.Addresses[0].Type != gwv1.IPAddressType {
				errs = append(errs, fmt.Errorf("addresses %+v, want IPAddress 127.0.0.2", g.Status.Addresses))
			}
			if len(g.Status.Listeners) != 2 {
				return errors.Join(append(errs, fmt.Errorf("%d listener statuses, want 2", len(g.Status.Listeners)))...)
			}
			h, s := g.Status.Listeners[0], g.Status.Listeners[1]
			errs = append(errs, conditionsAre(h.Conditions, gen,
				want{"Accepted", metav1.ConditionTrue, "Accepted"}, lprog,
				want{"ResolvedRefs", metav1.ConditionTrue, "ResolvedRefs"},
				want{"Conflicted", metav1.ConditionFalse, "NoConflicts"}))
			if h.Name != "http" || h.AttachedRoutes != attachedHTTP {
				errs = append(errs, fmt.Errorf("listener %s has %d routes, want http with %d", h.Name, h.AttachedRoutes, attachedHTTP))
			}
			kinds := []string{}
			for _, k := range h.SupportedKinds {
				kinds = append(kinds, string(*k.Group)+"/"+string(k.Kind))
			}
			if !slices.Equal(kinds, []string{Group + "/HTTPRoute", Group + "/GRPCRoute"}) {
				errs = append(errs, fmt.Errorf("supportedKinds %v", kinds))
			}
			// Its Secret does not exist (yet): accepted, not programmed.
			errs = append(errs, conditionsAre(s.Conditions, gen,
				want{"Accepted", metav1.ConditionTrue, "Accepted"},
				want{"Programmed", metav1.ConditionFalse, "Invalid"},
				want{"ResolvedRefs", metav1.ConditionFalse, "InvalidCertificateRef"}))
			if s.AttachedRoutes != attachedHTTPS {
				errs = append(errs, fmt.Errorf("the https listener has %d routes", s.AttachedRoutes))
			}
			return errors.Join(errs...)
		}
	}
	// Before the data path reports, the listener is pending.
	eventually(t, "Gateway pending", gatewayIs(want{"Programmed", metav1.ConditionFalse, "Pending"}, want{"Programmed", metav1.ConditionFalse, "Pending"}))
	c.Applied(map[string]error{name: nil})
	eventually(t, "Gateway programmed", gatewayIs(want{"Programmed", metav1.ConditionTrue, "Programmed"}, want{"Programmed", metav1.ConditionTrue, "Programmed"}))

	routeIs := func(name string, ws ...want) func() error {
		return func() error {
			r, err := api.HTTPRoutes(app).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if len(r.Status.Parents) != 1 {
				return fmt.Errorf("%d parent statuses, want 1", len(r.Status.Parents))
			}
			p := r.Status.Parents[0]
			if p.ControllerName != testController || string(p.ParentRef.Name) != "web" {
				return fmt.Errorf("parent %+v of controller %s", p.ParentRef, p.ControllerName)
			}
			return conditionsAre(p.Conditions, r.Generation, ws...)
		}
	}
	accepted := want{"Accepted", metav1.ConditionTrue, "Accepted"}
	eventually(t, "route good", routeIs("good", accepted, want{"ResolvedRefs", metav1.ConditionTrue, "ResolvedRefs"}))
	eventually(t, "route missing", routeIs("missing", accepted, want{"ResolvedRefs", metav1.ConditionFalse, "BackendNotFound"}))
	eventually(t, "route cross", routeIs("cross", accepted, want{"ResolvedRefs", metav1.ConditionFalse, "RefNotPermitted"}))

	// A ReferenceGrant in the Service's namespace lets the route in.
	_, err = api.ReferenceGrants(other).Create(ctx, &gwv1.ReferenceGrant{
		ObjectMeta: metav1.ObjectMeta{Name: "from-app"},
		Spec: gwv1.ReferenceGrantSpec{
			From: []gwv1.ReferenceGrantFrom{{Group: Group, Kind: KindHTTPRoute, Namespace: gwv1.Namespace(app)}},
			To:   []gwv1.ReferenceGrantTo{{Group: "", Kind: "Service"}},
		},
	}, metav1.CreateOptions{})
	must(t, err)
	eventually(t, "route cross resolved", routeIs("cross", accepted, want{"ResolvedRefs", metav1.ConditionTrue, "ResolvedRefs"}))
	eventually(t, "the remote backend is published", func() error {
		l, err := listener()
		if err != nil {
			return err
		}
		if len(l.Backends) != 2 || l.Backends[1].Endpoints.Kubernetes == nil ||
			*l.Backends[1].Endpoints.Kubernetes != (config.Kubernetes{Namespace: other, Service: "remote", Port: "http"}) {
			return fmt.Errorf("backends %+v, want %s/web and %s/remote", l.Backends, app, other)
		}
		return nil
	})
	// The changed listener is pending again until the data path says.
	eventually(t, "Gateway pending after the change", gatewayIs(want{"Programmed", metav1.ConditionFalse, "Pending"}, want{"Programmed", metav1.ConditionFalse, "Pending"}))

	// A route whose sectionName names no listener.
	bad := httpRoute(app, "nosection", "web", svcRef("", "web", 80))
	bad.Spec.ParentRefs[0].SectionName = new(gwv1.SectionName("nope"))
	_, err = api.HTTPRoutes(app).Create(ctx, bad, metav1.CreateOptions{})
	must(t, err)
	eventually(t, "route nosection", routeIs("nosection", want{"Accepted", metav1.ConditionFalse, "NoMatchingParent"},
		want{"ResolvedRefs", metav1.ConditionTrue, "ResolvedRefs"}))

	// A GRPCRoute on the port of HTTPRoutes is accepted: its backend is
	// reached over h2c, beside the HTTP/1.1 ones.
	_, err = api.GRPCRoutes(app).Create(ctx, &gwv1.GRPCRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "rpc"},
		Spec: gwv1.GRPCRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: "web"}}},
			Rules:           []gwv1.GRPCRouteRule{{BackendRefs: []gwv1.GRPCBackendRef{{BackendRef: gwv1.BackendRef{BackendObjectReference: svcRef(other, "remote", 80)}}}}},
		},
	}, metav1.CreateOptions{})
	must(t, err)
	eventually(t, "GRPCRoute rpc", func() error {
		r, err := api.GRPCRoutes(app).Get(ctx, "rpc", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(r.Status.Parents) != 1 {
			return fmt.Errorf("%d parent statuses", len(r.Status.Parents))
		}
		return conditionsAre(r.Status.Parents[0].Conditions, r.Generation, accepted, want{"ResolvedRefs", metav1.ConditionFalse, "RefNotPermitted"})
	})
	attachedHTTP, attachedHTTPS = 4, 1 // rpc names no section: both listeners take it
	eventually(t, "the mixed port's gRPC route", func() error {
		l, err := listener()
		if err != nil {
			return err
		}
		if len(l.Routes.GRPC) != 1 || len(l.Routes.HTTP) != 3 {
			return fmt.Errorf("%d gRPC and %d HTTP routes, want 1 and 3", len(l.Routes.GRPC), len(l.Routes.HTTP))
		}
		return nil
	})

	// Status is written only when it changes: a quiet period writes none.
	before := c.writes.Load()
	_, calls := rec.get()
	c.trigger()
	time.Sleep(200 * time.Millisecond) // several coalescing periods with nothing changed
	if got := c.writes.Load(); got != before {
		t.Errorf("%d status writes with nothing changed", got-before)
	}
	if _, after := rec.get(); after != calls {
		t.Errorf("%d publications with nothing changed", after-calls)
	}

	// A second replica publishes the same listeners but does not lead.
	var rec2 recorder
	c2, err := New(Options{
		Kube: kube, Gateway: gwc, ControllerName: testController,
		Address: func(*gwv1.Gateway) string { return "127.0.0.2" }, Publish: rec2.publish, Coalesce: 20 * time.Millisecond,
		Lease: "longhaul-gateway", LeaseNamespace: sys, Identity: "replica-b",
		LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 500 * time.Millisecond,
	})
	must(t, err)
	ctx2, stop2 := context.WithCancel(ctx)
	done2 := make(chan error, 1)
	go func() { done2 <- c2.Run(ctx2) }()
	eventually(t, "the second replica publishes", func() error {
		a, _ := rec.get()
		b, _ := rec2.get()
		if len(b) == 0 || !jsonEqual(a, b) {
			return fmt.Errorf("second replica published %d listeners, differing from the first's", len(b))
		}
		return nil
	})
	if c2.Leader() {
		t.Error("both replicas lead")
	}
	if n := c2.writes.Load(); n != 0 {
		t.Errorf("the replica that does not lead wrote %d statuses", n)
	}

	// The leader stops (releasing the Lease): the other takes over and
	// writes what changes next.
	stopRun()
	eventually(t, "the second replica leads", func() error {
		if !c2.Leader() {
			return errors.New("not the leader")
		}
		return nil
	})
	mr, err := api.HTTPRoutes(app).Get(ctx, "missing", metav1.GetOptions{})
	must(t, err)
	mr.Spec.Rules[0].BackendRefs[0].Name = "web"
	_, err = api.HTTPRoutes(app).Update(ctx, mr, metav1.UpdateOptions{})
	must(t, err)
	eventually(t, "route missing fixed, written by the new leader", routeIs("missing", accepted, want{"ResolvedRefs", metav1.ConditionTrue, "ResolvedRefs"}))
	// Without ReportsApplied, a published listener counts as running.
	eventually(t, "Gateway programmed by the new leader", gatewayIs(want{"Programmed", metav1.ConditionTrue, "Programmed"}, want{"Programmed", metav1.ConditionTrue, "Programmed"}))

	// The https listener's Secret appears: it is served on a listener of
	// its own, with the Secret's pair for its hostname, and programmed; a
	// rotated Secret reaches the data path.
	tlsListener := func(pair testcert.Pair) func() error {
		return func() error {
			ls, _ := rec2.get()
			i := slices.IndexFunc(ls, func(l config.Listener) bool { return l.Name == "gw-"+app+"-web-8443" })
			if i < 0 {
				return fmt.Errorf("no listener for port 8443 among %d", len(ls))
			}
			certs := ls[i].HTTP.TLS.Certificates
			if len(certs) != 1 || certs[0].CertPEM != string(pair.CertPEM) || !slices.Equal(certs[0].Hostnames, []string{"secure.example.com"}) {
				return fmt.Errorf("certificates %d (hostnames %v), want the Secret's for secure.example.com", len(certs), certs)
			}
			return nil
		}
	}
	first, second := testcert.New(t, "first", "secure.example.com"), testcert.New(t, "second", "secure.example.com")
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cert"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: first.CertPEM, corev1.TLSPrivateKeyKey: first.KeyPEM}}
	secret, err = cl.Client.CoreV1().Secrets(app).Create(ctx, secret, metav1.CreateOptions{})
	must(t, err)
	eventually(t, "the https listener is published with the Secret's certificate", tlsListener(first))
	eventually(t, "the https listener is programmed", func() error {
		g, err := api.Gateways(app).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(g.Status.Listeners) != 2 {
			return fmt.Errorf("%d listener statuses", len(g.Status.Listeners))
		}
		return conditionsAre(g.Status.Listeners[1].Conditions, g.Generation, want{"Accepted", metav1.ConditionTrue, "Accepted"},
			want{"Programmed", metav1.ConditionTrue, "Programmed"}, want{"ResolvedRefs", metav1.ConditionTrue, "ResolvedRefs"})
	})
	secret.Data = map[string][]byte{corev1.TLSCertKey: second.CertPEM, corev1.TLSPrivateKeyKey: second.KeyPEM}
	_, err = cl.Client.CoreV1().Secrets(app).Update(ctx, secret, metav1.UpdateOptions{})
	must(t, err)
	eventually(t, "the rotated Secret is published", tlsListener(second))
	stop2()
	must(t, <-done2)

	// A status write that meets a newer object (a conflict) reads it
	// again and writes once more.
	stale, err := api.Gateways(app).Get(ctx, "web", metav1.GetOptions{})
	must(t, err)
	fresh := stale.DeepCopy()
	fresh.Labels = map[string]string{"touched": "yes"} // a newer resourceVersion, the same generation
	_, err = api.Gateways(app).Update(ctx, fresh, metav1.UpdateOptions{})
	must(t, err)
	objs := Objects{Gateways: []*gwv1.Gateway{stale}}
	classes, err := api.GatewayClasses().List(ctx, metav1.ListOptions{})
	must(t, err)
	for i := range classes.Items {
		objs.Classes = append(objs.Classes, &classes.Items[i])
	}
	res := Translate(objs, Params{ControllerName: testController, Address: func(*gwv1.Gateway) string { return "127.0.0.2" },
		Template: DefaultTemplate(), Applied: map[string]error{name: errors.New("refused in the test")}})
	before = c.writes.Load()
	must(t, c.writeStatus(ctx, Objects{Gateways: objs.Gateways}, res))
	if n := c.writes.Load() - before; n != 2 {
		t.Errorf("%d writes, want 2 (a conflict, then the write)", n)
	}
	g, err := api.Gateways(app).Get(ctx, "web", metav1.GetOptions{})
	must(t, err)
	if err := conditionIs(g.Status.Conditions, "Programmed", metav1.ConditionFalse, "Invalid", g.Generation); err != nil ||
		!strings.Contains(g.Status.Conditions[1].Message, "refused in the test") || g.Labels["touched"] != "yes" {
		t.Errorf("after the conflict: %v, %+v, labels %v", err, g.Status.Conditions, g.Labels)
	}
}

func jsonEqual(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

// TestGatewayClusterRole asks the API server what deploy/gateway's RBAC lets
// the ServiceAccount do, and what not.
func TestGatewayClusterRole(t *testing.T) {
	cl := kubetest.Start(t)
	ctx := context.Background()
	ns := cl.CreateNamespace(t, "longhaul-")
	applyGatewayRBAC(t, cl.Client, ns)
	user := "system:serviceaccount:" + ns + ":longhaul"
	groups := []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
	can := func(verb, group, resource, sub, namespace string) bool {
		t.Helper()
		r, err := cl.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{User: user, Groups: groups,
				ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: namespace, Verb: verb, Group: group, Resource: resource, Subresource: sub}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("SubjectAccessReview: %v", err)
		}
		return r.Status.Allowed
	}
	for _, c := range []struct {
		verb, group, resource, sub, ns string
		want                           bool
	}{
		{"watch", Group, "httproutes", "", "", true},
		{"list", Group, "httproutes", "", "app", true},
		{"watch", Group, "grpcroutes", "", "", true},
		{"watch", Group, "tcproutes", "", "", true},
		{"watch", Group, "tlsroutes", "", "", true},
		{"update", Group, "tcproutes", "status", "app", true},
		{"update", Group, "tlsroutes", "status", "app", true},
		{"update", Group, "tlsroutes", "", "app", false},
		{"watch", "", "secrets", "", "", true},
		{"update", "", "secrets", "", "app", false},
		{"watch", Group, "gateways", "", "", true},
		{"watch", Group, "gatewayclasses", "", "", true},
		{"watch", Group, "referencegrants", "", "", true},
		{"patch", Group, "httproutes", "status", "app", true},
		{"update", Group, "httproutes", "status", "app", true},
		{"update", Group, "gateways", "status", "app", true},
		{"update", Group, "gatewayclasses", "status", "", true},
		{"update", Group, "grpcroutes", "status", "app", true},
		{"update", Group, "httproutes", "", "app", false},
		{"patch", Group, "httproutes", "", "app", false},
		{"delete", Group, "httproutes", "", "app", false},
		{"create", Group, "gateways", "", "app", false},
		{"update", Group, "gateways", "", "app", false},
		{"update", Group, "referencegrants", "status", "app", false},
		{"watch", "", "services", "", "", true},
		{"watch", "discovery.k8s.io", "endpointslices", "", "", true},
		{"watch", "", "namespaces", "", "", true},
		{"watch", "apiextensions.k8s.io", "customresourcedefinitions", "", "", true},
		{"update", "apiextensions.k8s.io", "customresourcedefinitions", "", "", false},
		{"delete", "apiextensions.k8s.io", "customresourcedefinitions", "", "", false},
		{"get", "", "secrets", "", "app", true},
		{"delete", "", "services", "", "app", false},
		{"update", "", "services", "", "app", false},
		{"create", "", "pods", "", "app", false},
		{"list", "", "pods", "", "app", false},
		{"create", "", "secrets", "", "app", false},
		{"update", "coordination.k8s.io", "leases", "", ns, true},
		{"create", "coordination.k8s.io", "leases", "", ns, true},
		{"update", "coordination.k8s.io", "leases", "", "kube-system", false},
		{"delete", "coordination.k8s.io", "leases", "", ns, false},
	} {
		if got := can(c.verb, c.group, c.resource, c.sub, c.ns); got != c.want {
			t.Errorf("%s may %s %s/%s.%s in %q: %v, want %v", user, c.verb, c.resource, c.sub, c.group, c.ns, got, c.want)
		}
	}
}
