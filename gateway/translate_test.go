package gateway

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/longhaul-proxy/longhaul/config"
)

// Builders of the objects the tests translate.

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func meta(ns, name string, age int) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name, Generation: 3, CreationTimestamp: metav1.NewTime(t0.Add(time.Duration(age) * time.Minute))}
}

func class(name string, controller gwv1.GatewayController) *gwv1.GatewayClass {
	return &gwv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 2}, Spec: gwv1.GatewayClassSpec{ControllerName: controller}}
}

func gateway(ns, name string, ls ...gwv1.Listener) *gwv1.Gateway {
	return &gwv1.Gateway{ObjectMeta: meta(ns, name, 0), Spec: gwv1.GatewaySpec{GatewayClassName: "lh", Listeners: ls}}
}

func httpL(name string, port gwv1.PortNumber, host string) gwv1.Listener {
	l := gwv1.Listener{Name: gwv1.SectionName(name), Port: port, Protocol: gwv1.HTTPProtocolType}
	if host != "" {
		l.Hostname = new(gwv1.Hostname(host))
	}
	return l
}

func fromNS(l gwv1.Listener, from gwv1.FromNamespaces, sel map[string]string) gwv1.Listener {
	l.AllowedRoutes = &gwv1.AllowedRoutes{Namespaces: &gwv1.RouteNamespaces{From: &from}}
	if sel != nil {
		l.AllowedRoutes.Namespaces.Selector = &metav1.LabelSelector{MatchLabels: sel}
	}
	return l
}

func kinds(l gwv1.Listener, ks ...string) gwv1.Listener {
	if l.AllowedRoutes == nil {
		l.AllowedRoutes = &gwv1.AllowedRoutes{}
	}
	for _, k := range ks {
		l.AllowedRoutes.Kinds = append(l.AllowedRoutes.Kinds, gwv1.RouteGroupKind{Kind: gwv1.Kind(k)})
	}
	return l
}

func svc(ns, name string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{Ports: ports}}
}

func port(name string, p int32, target intstr.IntOrString) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: p, TargetPort: target}
}

type parent struct {
	ns, name, section string
	port              gwv1.PortNumber
}

func parents(ps ...parent) []gwv1.ParentReference {
	var out []gwv1.ParentReference
	for _, p := range ps {
		r := gwv1.ParentReference{Name: gwv1.ObjectName(p.name)}
		if p.ns != "" {
			r.Namespace = new(gwv1.Namespace(p.ns))
		}
		if p.section != "" {
			r.SectionName = new(gwv1.SectionName(p.section))
		}
		if p.port != 0 {
			r.Port = new(p.port)
		}
		out = append(out, r)
	}
	return out
}

func ref(ns, name string, p gwv1.PortNumber, weight int32) gwv1.HTTPBackendRef {
	r := gwv1.HTTPBackendRef{BackendRef: gwv1.BackendRef{BackendObjectReference: svcRef(ns, name, p)}}
	if weight >= 0 {
		r.Weight = new(weight)
	}
	return r
}

func hroute(ns, name string, age int, ps []gwv1.ParentReference, hosts []string, rules ...gwv1.HTTPRouteRule) *gwv1.HTTPRoute {
	r := &gwv1.HTTPRoute{ObjectMeta: meta(ns, name, age), Spec: gwv1.HTTPRouteSpec{CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: ps}, Rules: rules}}
	for _, h := range hosts {
		r.Spec.Hostnames = append(r.Spec.Hostnames, gwv1.Hostname(h))
	}
	return r
}

func rule(refs ...gwv1.HTTPBackendRef) gwv1.HTTPRouteRule {
	return gwv1.HTTPRouteRule{BackendRefs: refs}
}

func grpcRoute(ns, name string, ps []gwv1.ParentReference, refs ...gwv1.BackendObjectReference) *gwv1.GRPCRoute {
	r := &gwv1.GRPCRoute{ObjectMeta: meta(ns, name, 0), Spec: gwv1.GRPCRouteSpec{CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: ps}}}
	rl := gwv1.GRPCRouteRule{}
	for _, b := range refs {
		rl.BackendRefs = append(rl.BackendRefs, gwv1.GRPCBackendRef{BackendRef: gwv1.BackendRef{BackendObjectReference: b}})
	}
	r.Spec.Rules = []gwv1.GRPCRouteRule{rl}
	return r
}

func grant(ns, fromNS, kind, name string) *gwv1.ReferenceGrant {
	g := &gwv1.ReferenceGrant{ObjectMeta: meta(ns, "grant", 0), Spec: gwv1.ReferenceGrantSpec{
		From: []gwv1.ReferenceGrantFrom{{Group: Group, Kind: gwv1.Kind(kind), Namespace: gwv1.Namespace(fromNS)}},
		To:   []gwv1.ReferenceGrantTo{{Group: "", Kind: "Service"}},
	}}
	if name != "" {
		g.Spec.To[0].Name = new(gwv1.ObjectName(name))
	}
	return g
}

func namespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

// base is a class of ours, one of another controller's, and Services.
func base() Objects {
	return Objects{
		Classes: []*gwv1.GatewayClass{class("lh", testController), class("other", "example.com/other")},
		Services: []*corev1.Service{
			svc("app", "web", port("http", 80, intstr.FromInt32(8080)), port("admin", 9000, intstr.FromInt32(9000))),
			svc("app", "plain", port("", 80, intstr.FromInt32(8081))),
			svc("other", "remote", port("http", 80, intstr.FromString("http"))),
			svc("other", "second", port("http", 80, intstr.FromInt32(80))),
		},
		Namespaces: []*corev1.Namespace{namespace("app", nil), namespace("other", map[string]string{"team": "b"})},
	}
}

func params() Params {
	return Params{
		ControllerName: testController,
		Address:        func(g *gwv1.Gateway) string { return "127.0.0." + fmt.Sprint(len(g.Name)+1) },
		Template:       DefaultTemplate(),
	}
}

// Accessors of a Result.

func gwStatus(res *Result, ns, name string) gwv1.GatewayStatus {
	return res.Gateways[types.NamespacedName{Namespace: ns, Name: name}]
}

func listenerStatus(t *testing.T, res *Result, ns, gw, name string) gwv1.ListenerStatus {
	t.Helper()
	for _, l := range gwStatus(res, ns, gw).Listeners {
		if string(l.Name) == name {
			return l
		}
	}
	t.Fatalf("no status of listener %s of %s/%s", name, ns, gw)
	return gwv1.ListenerStatus{}
}

func routeParents(res *Result, ns, name string) []gwv1.RouteParentStatus {
	return res.Routes[KindHTTPRoute][types.NamespacedName{Namespace: ns, Name: name}]
}

// parentIs checks the one parent status of route ns/name.
func parentIs(t *testing.T, res *Result, ns, name string, ws ...want) {
	t.Helper()
	ps := routeParents(res, ns, name)
	if len(ps) != 1 {
		t.Fatalf("route %s/%s has %d parent statuses, want 1: %+v", ns, name, len(ps), ps)
	}
	if ps[0].ControllerName != testController {
		t.Errorf("route %s/%s: controllerName %q", ns, name, ps[0].ControllerName)
	}
	if err := conditionsAreNoTime(ps[0].Conditions, 3, ws...); err != nil {
		t.Errorf("route %s/%s: %v", ns, name, err)
	}
}

// conditionsAreNoTime checks conditions as Translate makes them: without
// lastTransitionTime.
func conditionsAreNoTime(cs []metav1.Condition, gen int64, ws ...want) error {
	var errs []error
	for _, w := range ws {
		i := slices.IndexFunc(cs, func(c metav1.Condition) bool { return c.Type == w.typ })
		switch {
		case i < 0:
			errs = append(errs, fmt.Errorf("no condition %s in %+v", w.typ, cs))
		case cs[i].Status != w.status || cs[i].Reason != w.reason || cs[i].ObservedGeneration != gen || cs[i].Message == "":
			errs = append(errs, fmt.Errorf("condition %s is %s/%s (generation %d, message %q), want %s/%s (generation %d)",
				w.typ, cs[i].Status, cs[i].Reason, cs[i].ObservedGeneration, cs[i].Message, w.status, w.reason, gen))
		}
	}
	return errors.Join(errs...)
}

func onlyListener(t *testing.T, res *Result) *config.Listener {
	t.Helper()
	if len(res.Listeners) != 1 {
		t.Fatalf("%d listeners, want 1: %+v", len(res.Listeners), res.Listeners)
	}
	return &res.Listeners[0]
}

func backendNames(l *config.Listener) []string {
	var out []string
	for _, b := range l.Backends {
		out = append(out, b.Name)
	}
	return out
}

var (
	acc      = want{"Accepted", metav1.ConditionTrue, "Accepted"}
	resolved = want{"ResolvedRefs", metav1.ConditionTrue, "ResolvedRefs"}
)

func TestTranslate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		objs   func(o *Objects)
		params func(p *Params)
		check  func(t *testing.T, res *Result)
	}{{
		name: "one route to one Service",
		objs: func(o *Objects) {
			o.Gateways = []*gwv1.Gateway{gateway("app", "gw", httpL("http", 80, ""))}
			o.HTTPRoutes = []*gwv1.HTTPRoute{hroute("app", "r", 0, parents(parent{name: "gw"}), []string{"a.example.com"}, rule(ref("", "web", 80, -1)))}
		},
		check: func(t *testing.T, res *Result) {
			l := onlyListener(t, res)
			if l.Name != "gw-app-gw-80" || l.Address != "127.0.0.3:80" || l.Protocol != "http" {
				t.Errorf("listener %s at %s (%s)", l.Name, l.Address, l.Protocol)
			}
			if !slices.Equal(backendNames(l), []string{"app-web-80"}) || *l.Backends[0].Endpoints.Kubernetes != (config.Kubernetes{Namespace: "app", Service: "web", Port: "http"}) {
				t.Errorf("backends %+v", l.Backends)
			}
			if len(l.Routes.HTTP) != 1 || !slices.Equal(l.Routes.HTTP[0].Hostnames, []string{"a.example.com"}) ||
				l.Routes.HTTP[0].Rules[0].Backends[0].Name != "app-web-80" || l.Routes.HTTP[0].Rules[0].Backends[0].Weight != nil {
				t.Errorf("routes %+v", l.Routes.HTTP)
			}
			parentIs(t, res, "app", "r", acc, resolved)
			ls := listenerStatus(t, res, "app", "gw", "http")
			if ls.AttachedRoutes != 1 {
				t.Errorf("attachedRoutes %d", ls.AttachedRoutes)
			}
			if err := conditionsAreNoTime(ls.Conditions, 3, acc, want{"Programmed", metav1.ConditionFalse, "Pending"}, resolved,
				want{"Conflicted", metav1.ConditionFalse, "NoConflicts"}); err != nil {
				t.Error(err)
			}
			st := gwStatus(res, "app", "gw")
			if err := conditionsAreNoTime(st.Conditions, 3, acc, want{"Programmed", metav1.ConditionFalse, "Pending"}); err != nil {
				t.Error(err)
			}
			if len(st.Addresses) != 1 || st.Addresses[0].Value != "127.0.0.3" || *st.Addresses[0].Type != gwv1.IPAddressType {
				t.Errorf("addresses %+v", st.Addresses)
			}
			if err := conditionsAreNoTime(res.Classes["lh"].Conditions, 2, acc); err != nil {
				t.Error(err)
			}
			if _, ok := res.Classes["other"]; ok {
				t.Error("status for another controller's class")
			}
		},
	}, {
		name: "applied listeners are programmed, refused ones invalid",
		objs: func(o *Objects) {
			o.Gateways = []*gwv1.Gateway{gateway("app", "gw", httpL("a", 80, ""), httpL("b", 81, ""))}
		},
		params: func(p *Params) {
			p.Applied = map[string]error{"gw-app-gw-80": nil, "gw-app-gw-81": errors.New("bind: address in use")}
		},
		check: func(t *testing.T, res *Result) {
			if len(res.Listeners) != 2 {
				t.Fatalf("%d listeners", len(res.Listeners))
			}
			if err := conditionsAreNoTime(listenerStatus(t, res, "app", "gw", "a").Conditions, 3, want{"Programmed", metav1.ConditionTrue, "Programmed"}); err != nil {
				t.Error(err)
			}
			b := listenerStatus(t, res, "app", "gw", "b")
			if err := conditionsAreNoTime(b.Conditions, 3, want{"Programmed", metav1.ConditionFalse, "Invalid"}); err != nil || !strings.Contains(b.Conditions[1].Message, "address in use") {
				t.Errorf("%v %+v", err, b.Conditions)
			}
			if err := conditionsAreNoTime(gwStatus(res, "app", "gw").Conditions, 3, want{"Programmed", metav1.ConditionFalse, "Invalid"}); err != nil {
				t.Error(err)
			}
		},
	}, {
		name: "a Gateway without routes still listens, answering 404",
		objs: func(o *Objects) { o.Gateways = []*gwv1.Gateway{gateway("app", "gw", httpL("http", 80, ""))} },
		params: func(p *Params) {
			p.Applied = map[string]error{"gw-app-gw-80": nil}
		},
		check: func(t *testing.T, res *Result) {
			l := onlyListener(t, res)
			if len(l.Routes.HTTP) != 1 || !slices.Equal(l.Routes.HTTP[0].Hostnames, []string{placeholderHost}) ||
				!slices.Equal(backendNames(l), []string{placeholderBackend}) || *l.Routes.HTTP[0].Rules[0].Backends[0].Weight != 0 {
				t.Errorf("listener %+v", l)
			}
			if err := conditionsAreNoTime(gwStatus(res, "app", "gw").Conditions, 3, acc, want{"Programmed", metav1.ConditionTrue, "Programmed"}); err != nil {
				t.Error(err)
			}
			if n := listenerStatus(t, res, "app", "gw", "http").AttachedRoutes; n != 0 {
				t.Errorf("attachedRoutes %d", n)
			}
		},
	}, {
		name: "listeners on one port share a socket; hostnames narrowed per listener",
		objs: func(o *Objects) {
			o.Gateways = []*gwv1.Gateway{gateway("app", "gw", httpL("foo", 80, "foo.example.com"), httpL("wild", 80, "*.example.com"), httpL("other", 8080, ""))}
			o.HTTPRoutes = []*gwv1.HTTPRoute{
				hroute("app", "any", 0, parents(parent{name: "gw"}), nil, rule(ref("", "web", 80, -1))),
				hroute("app", "bar", 1, parents(parent{name: "gw", section: "wild"}), []string{"bar.example.com", "bar.other.org"}, rule(ref("", "web", 80, -1))),
			}
		},
		check: func(t *testing.T, res *Result) {
			if len(res.Listeners) != 2 {
				t.Fatalf("%d listeners, want 2 (ports 80 and 8080)", len(res.Listeners))
			}
			l := res.Listeners[0]
			if l.Address != "127.0.0.3:80" {
				t.Fatalf("first listener at %s", l.Address)
			}
			got := map[string][]string{}
			for _, r := range l.Routes.HTTP {
				got[r.Name] = r.Hostnames
			}
			wantHosts := map[string][]string{
				"000001-app-any-foo":  {"foo.example.com"},
				"000002-app-any-wild": {"*.example.com"},
				"000003-app-bar-wild": {"bar.example.com"},
			}
			if !reflect.DeepEqual(got, wantHosts) {
				t.Errorf("routes on port 80: %v, want %v", got, wantHosts)
			}
			if r := res.Listeners[1].Routes.HTTP; len(r) != 1 || r[0].Hostnames != nil {
				t.Errorf("routes on port 8080: %+v", r)
			}
			for name, n := range map[string]int32{"foo": 1, "wild": 2, "other": 1} {
				if got := listenerStatus(t, res, "app", "gw", name).AttachedRoutes; got != n {
					t.Errorf("listener %s: attachedRoutes %d, want %d", name, got, n)
				}
			}
		},
	}, {
		name: "parentRef sectionName and port",
		objs: func(o *Objects) {
			o.Gateways = []*gwv1.Gateway{gateway("app", "gw", httpL("a", 80, ""), httpL("b", 81, ""))}
			o.HTTPRoutes = []*gwv1.HTTPRoute{
				hroute("app", "by-port", 0, parents(parent{name: "gw", port: 81}), nil, rule(ref("", "web", 80, -1))),
				hroute("app", "no-section", 0, parents(parent{name: "gw", section: "c"}), nil, rule(ref("", "web", 80, -1))),
				hroute("app", "no-port", 0, parents(parent{name: "gw", section: "a", port: 81}), nil, rule(ref("", "web", 80, -1))),
				hroute("app", "no-gateway", 0, parents(parent{name: "absent"}), nil, rule(ref("", "web", 80, -1))),
			}
		},
		check: func(t *testing.T, res *Result) {
			parentIs(t, res, "app", "by-port", acc, resolved)
			parentIs(t, res, "app", "no-section", want{"Accepted", metav1.ConditionFalse, "NoMatchingParent"}, resolved)
			parentIs(t, res, "app", "no-port", want{"Accepted", metav1.ConditionFalse, "NoMatchingParent"})
			if ps := routeParents(res, "app", "no-gateway"); ps != nil {
				t.Errorf("a route to a Gateway that is not ours got status %+v", ps)
			}
			if a, b := listenerStatus(t, res, "app", "gw", "a").AttachedRoutes, listenerStatus(t, res, "app", "gw", "b").AttachedRoutes; a != 0 || b != 1 {
				t.Errorf("attachedRoutes a %d, b %d; want 0, 1", a, b)
			}
		},
	}, {
		name: "allowedRoutes namespaces: Same, All, Selector",
		objs: func(o *Objects) {
			o.Gateways = []*gwv1.Gateway{gateway("app", "gw",
				httpL("same", 80, ""), fromNS(httpL("all", 81, ""), gwv1.NamespacesFromAll, nil),
				fromNS(httpL("sel", 82, ""), gwv1.NamespacesFromSelector, map[string]string{"team": "b"}))}
			o.HTTPRoutes = []*gwv1.HTTPRoute{
				hroute("other", "to-same", 0, parents(parent{ns: "app", name: "gw", section: "same"}), nil, rule(ref("", "second", 80, -1))),
				hroute("other", "to-all", 0, parents(parent{ns: "app", name: "gw", section: "all"}), nil, rule(ref("", "second", 80, -1))),
				hroute("other", "to-sel", 0, parents(parent{ns: "app", name: "gw", section: "sel"}), nil, rule(ref("", "second", 80, -1))),
				hroute("app", "app-to-sel", 0, parents(parent{name: "gw", section: "sel"}), nil, rule(ref("", "web", 80, -1))),
			}
		},
		check: func(t *testing.T, res *Result) {
			notAllowed := want{"Accepted", metav1.ConditionFalse, "NotAllowedByListeners"}
			parentIs(t, res, "other", "to-same", notAllowed)
			parentIs(t, res, "other", "to-all", acc, resolved)
			parentIs(t, res, "other", "to-sel", acc, resolved)
			parentIs(t, res, "app", "app-to-sel", notAllowed)
		},
	}, {
		name: "allowedRoutes kinds",
		objs: func(o *Objects) {
			o.Gateways = []*gwv1.Gateway{gateway("app", "gw", kinds(httpL("h", 80, ""), "HTTPRoute", "TCPRoute"), kinds(httpL("none", 81, ""), "TLSRoute"))}
			o.GRPCRoutes = []*gwv1.GRPCRoute{grpcRoute("app", "g", parents(parent{name: "gw", section: "h"}), svcRef("", "web", 80))}
			o.HTTPRoutes = []*gwv1.HTTPRoute{hroute("app", "r", 0, parents(parent{name: "gw", section: "none"}), nil, rule(ref("", "web", 80, -1)))}
		},
		check: func(t *testing.T, res *Result) {
			h := listenerStatus(t, res, "app", "gw", "h")
			if len(h.SupportedKinds) != 1 || h.SupportedKinds[0].Kind != "HTTPRoute" {
				t.Errorf("supportedKinds %+v", h.SupportedKinds)
			}
			if err := conditionsAreNoTime(h.Conditions, 3, acc, want{"ResolvedRefs", metav1.ConditionFalse, "InvalidRouteKinds"}); err != nil {
				t.Error(err)
			}
			n := listenerStatus(t, res, "app", "gw", "none")
			if n.SupportedKinds == nil || len(n.SupportedKinds) != 0 {
				t.Errorf("supportedKinds %+v, want empty", n.SupportedKinds)
			}
			if err := conditionsAreNoTime(n.Conditions, 3, want{"ResolvedRefs", metav1.ConditionFalse, "InvalidRouteKinds"}, want{"Programmed", metav1.ConditionFalse, "Invalid"}); err != nil {
				t.Error(err)
			}
			gs := res.Routes[KindGRPCRoute][types.NamespacedName{Namespace: "app", Name: "g"}]
			if len(gs) != 1 || gs[0].Conditions[0].Reason != "NotAllowedByListeners" {
				t.Errorf("GRPCRoute status %+v", gs)
			}
			parentIs(t, res, "app", "r", want{"Accepted", metav1.ConditionFalse, "NotAllowedByListeners"})
		},
	}, {
		name: "hostnames that do not intersect",
		objs: func(o *Objects) {
			o.Gateways = []*gwv1.Gateway{gateway("app", "gw", httpL("http", 80, "*.example.com"))}
			o.HTTPRoutes = []*gwv1.HTTPRoute{
				hroute("app", "off", 0, parents(parent{name: "gw"}), []string{"example.com", "a.example.org"}, rule(ref("", "web", 80, -1))),
				hroute("app", "on", 0, parents(parent{name: "gw"}), []string{"example.com", "*.a.example.com"}, rule(ref("", "web", 80, -1))),
			}
		},
		check: func(t *testing.T, res *Result) {
			parentIs(t, res, "app", "off", want{"Accepted", metav1.ConditionFalse, "NoMatchingListenerHostname"})
			parentIs(t, res, "app", "on", acc)
			if r := onlyListener(t, res).Routes.HTTP; len(r) != 1 || !slices.Equal(r[0].Hostnames, []string{"*.a.example.com"}) {
				t.Errorf("routes %+v", r)
			}
		},
	}, {
		name: "backendRefs: kinds, missing Services and ports, ReferenceGrants, weights",
		objs: func(o *Objects) {
			o.Gateways = []*gwv1.Gateway{gateway("app", "gw", httpL("http", 80, ""))}
			badKind := ref("", "web", 80, -1)
			badKind.Kind = new(gwv1.Kind("Pod"))
			o.HTTPRoutes = []*gwv1.HTTPRoute{
				hroute("app", "kind", 0, parents(parent{name: "gw"}), []string{"kind.test"}, rule(badKind)),
				hroute("app", "nosvc", 0, parents(parent{name: "gw"}), []string{"nosvc.test"}, rule(ref("", "absent", 80, -1))),
				hroute("app", "noport", 0, parents(parent{name: "gw"}), []string{"noport.test"}, rule(ref("", "web", 81, -1))),
				hroute("app", "cross", 0, parents(parent{name: "gw"}), []string{"cross.test"}, rule(ref("other", "remote", 80, -1))),
				hroute("app", "granted", 0, parents(parent{name: "gw"}), []string{"granted.test"}, rule(ref("other", "second", 80, 3), ref("", "web", 80, 0), ref("", "absent", 80, 5))),
				hroute("app", "twice", 0, parents(parent{name: "gw"}), []string{"twice.test"}, rule(ref("", "web", 80, 1)), rule(ref("", "web", 80, 2), ref("", "plain", 80, -1))),
			}
			o.ReferenceGrants = []*gwv1.ReferenceGrant{grant("other", "app", KindHTTPRoute, "second"), grant("other", "app", KindGRPCRoute, "")}
		},
		check: func(t *testing.T, res *Result) {
			parentIs(t, res, "app", "kind", acc, want{"ResolvedRefs", metav1.ConditionFalse, "InvalidKind"})
			parentIs(t, res, "app", "nosvc", acc, want{"ResolvedRefs", metav1.ConditionFalse, "BackendNotFound"})
			parentIs(t, res, "app", "noport", acc, want{"ResolvedRefs", metav1.ConditionFalse, "BackendNotFound"})
			parentIs(t, res, "app", "cross", acc, want{"ResolvedRefs", metav1.ConditionFalse, "RefNotPermitted"})
			parentIs(t, res, "app", "granted", acc, want{"ResolvedRefs", metav1.ConditionFalse, "BackendNotFound"})
			parentIs(t, res, "app", "twice", acc, resolved)
			l := onlyListener(t, res)
			if got, want := backendNames(l), []string{"app-plain-80", "app-web-80", "other-second-80"}; !slices.Equal(got, want) {
				t.Errorf("backends %v, want %v (one per Service port)", got, want)
			}
			for _, b := range l.Backends {
				if b.Name == "app-plain-80" && b.Endpoints.Kubernetes.Port != "8081" {
					t.Errorf("an unnamed Service port selects the target port: %+v", b.Endpoints.Kubernetes)
				}
			}
			refs := map[string][]string{}
			for _, r := range l.Routes.HTTP {
				for _, rl := range r.Rules {
					var s []string
					for _, b := range rl.Backends {
						w := "nil"
						if b.Weight != nil {
							w = fmt.Sprint(*b.Weight)
						}
						s = append(s, b.Name+"="+w)
					}
					refs[r.Hostnames[0]] = append(refs[r.Hostnames[0]], strings.Join(s, ","))
				}
			}
			wantRefs := map[string][]string{
				"kind.test": {""}, "nosvc.test": {""}, "noport.test": {""}, "cross.test": {""},
				"granted.test": {"other-second-80=3,app-web-80=0"},
				"twice.test":   {"app-web-80=1", "app-web-80=2,app-plain-80=nil"},
			}
			if !reflect.DeepEqual(refs, wantRefs) {
				t.Errorf("rules' backends %v, want %v", refs, wantRefs)
			}
		},
	}, {
		name: "a route the validator refuses does not break the others",
		objs: func(o *Objects) {
			o.Gateways = []*gwv1.Gateway{gateway("app", "gw", httpL("http", 80, ""))}
			badRegex := rule(ref("", "web", 80, -1))
			badRegex.Matches = []gwv1.HTTPRouteMatch{{Path: &gwv1.HTTPPathMatch{Type: new(gwv1.PathMatchRegularExpression), Value: new("/(")}}}
			mirror := rule(ref("", "web", 80, -1))
			mirror.Filters = []gwv1.HTTPRouteFilter{{Type: gwv1.HTTPRouteFilterCORS, CORS: &gwv1.HTTPCORSFilter{}}}
			timeouts := rule(ref("", "web", 80, -1))
			timeouts.Timeouts = &gwv1.HTTPRouteTimeouts{}
			rewrite := rule(ref("", "web", 80, -1))
			rewrite.Matches = []gwv1.HTTPRouteMatch{{Path: &gwv1.HTTPPathMatch{Type: new(gwv1.PathMatchPathPrefix), Value: new("/api")}}}
			rewrite.Filters = []gwv1.HTTPRouteFilter{{Type: gwv1.HTTPRouteFilterURLRewrite, URLRewrite: &gwv1.HTTPURLRewriteFilter{
				Path: &gwv1.HTTPPathModifier{Type: gwv1.PrefixMatchHTTPPathModifier, ReplacePrefixMatch: new("/")}}}}
			o.HTTPRoutes = []*gwv1.HTTPRoute{
				hroute("app", "regex", 0, parents(parent{name: "gw"}), nil, badRegex),
				hroute("app", "mirror", 0, parents(parent{name: "gw"}), nil, mirror),
				hroute("app", "timeouts", 0, parents(parent{name: "gw"}), nil, timeouts),
				hroute("app", "good", 0, parents(parent{name: "gw"}), nil, rewrite),
			}
		},
		check: func(t *testing.T, res *Result) {
			unsupported := want{"Accepted", metav1.ConditionFalse, "UnsupportedValue"}
			parentIs(t, res, "app", "regex", unsupported)
			parentIs(t, res, "app", "mirror", unsupported)
			parentIs(t, res, "app", "timeouts", unsupported)
			parentIs(t, res, "app", "good", acc, resolved)
			if msg := routeParents(res, "app", "mirror")[0].Conditions[0].Message; !strings.Contains(msg, "CORS") {
				t.Errorf("message %q does not name the filter", msg)
			}
			l := onlyListener(t, res)
			if len(l.Routes.HTTP) != 1 || l.Routes.HTTP[0].Rules[0].Filters[0].URLRewrite.Path.ReplacePrefixMatch != "/" {
				t.Errorf("routes %+v", l.Routes.HTTP)
			}
			if n := listenerStatus(t, res, "app", "gw", "http").AttachedRoutes; n != 1 {
				t.Errorf("attachedRoutes %d, want 1", n)
			}
		},
	}, {
		name: "a mirror filter copies to a backend of its own",
		objs: func(o *Objects) {
			o.Gateways = []*gwv1.Gateway{gateway("app", "gw", httpL("http", 80, ""))}
			m := rule(ref("", "web", 80, -1))
			m.Filters = []gwv1.HTTPRouteFilter{
				{Type: gwv1.HTTPRouteFilterRequestMirror, RequestMirror: &gwv1.HTTPRequestMirrorFilter{BackendRef: svcRef("", "plain", 80), Percent: new(int32(25))}},
				{Type: gwv1.HTTPRouteFilterRequestMirror, RequestMirror: &gwv1.HTTPRequestMirrorFilter{BackendRef: svcRef("", "absent", 80)}},
			}
			o.HTTPRoutes = []*gwv1.HTTPRoute{hroute("app", "m", 0, parents(parent{name: "gw"}), nil, m)}
		},
		check: func(t *testing.T, res *Result) {
			// The mirror to a Service that does not exist is left out.
			parentIs(t, res, "app", "m", acc, want{"ResolvedRefs", metav1.ConditionFalse, "BackendNotFound"})
			l := onlyListener(t, res)
			if !slices.Equal(backendNames(l), []string{"app-plain-80", "app-web-80"}) {
				t.Errorf("backends %v", backendNames(l))
			}
			fs := l.Routes.HTTP[0].Rules[0].Filters
			if len(fs) != 1 || fs[0].RequestMirror == nil || fs[0].RequestMirror.BackendRef.Name != "app-plain-80" || *fs[0].RequestMirror.Percent != 25 {
				t.Errorf("filters %+v", fs)
			}
			if err := validate(*l); err != nil {
				t.Error(err)
			}
		},
	}, {
		name: "GRPCRoutes alone make a grpc listener; with HTTPRoutes an http one whose gRPC and h2c backends speak h2c",
		objs: func(o *Objects) {
			o.Gateways = []*gwv1.Gateway{gateway("app", "gw", httpL("a", 80, ""), httpL("b", 81, ""))}
			o.GRPCRoutes = []*gwv1.GRPCRoute{
				grpcRoute("app", "alone", parents(parent{name: "gw", section: "a"}), svcRef("", "web", 80)),
				grpcRoute("app", "mixed", parents(parent{name: "gw", section: "b"}), svcRef("", "web", 80)),
			}
			h2 := port("http", 80, intstr.FromInt32(8080))
			h2.AppProtocol = new(appProtocolH2C)
			o.Services = append(o.Services, svc("app", "h2", h2))
			o.HTTPRoutes = []*gwv1.HTTPRoute{hroute("app", "h", 0, parents(parent{name: "gw", section: "b"}), nil,
				rule(ref("", "plain", 80, -1)), rule(ref("", "h2", 80, -1)))}
		},
		check: func(t *testing.T, res *Result) {
			if len(res.Listeners) != 2 || res.Listeners[0].Protocol != "grpc" || res.Listeners[1].Protocol != "http" {
				t.Fatalf("listeners %+v", res.Listeners)
			}
			if g := res.Listeners[0].Routes.GRPC; len(g) != 1 || g[0].Rules[0].Backends[0].Name != "app-web-80" {
				t.Errorf("grpc routes %+v", g)
			}
			b := res.Listeners[1]
			if len(b.Routes.GRPC) != 1 || len(b.Routes.HTTP) != 1 {
				t.Errorf("port 81: %d gRPC and %d HTTP routes, want 1 and 1", len(b.Routes.GRPC), len(b.Routes.HTTP))
			}
			protocols := map[string]string{}
			for _, be := range b.Backends {
				protocols[be.Name] = be.Protocol
			}
			if want := map[string]string{"app-web-80": "h2c", "app-h2-80": "h2c", "app-plain-80": ""}; !reflect.DeepEqual(protocols, want) {
				t.Errorf("backend protocols %v, want %v", protocols, want)
			}
			if err := validate(b); err != nil {
				t.Errorf("port 81: %v", err)
			}
			for _, name := range []string{"alone", "mixed"} {
				ps := res.Routes[KindGRPCRoute][types.NamespacedName{Namespace: "app", Name: name}]
				if err := conditionsAreNoTime(ps[0].Conditions, 3, acc, resolved); err != nil {
					t.Errorf("%s: %v", name, err)
				}
			}
		},
	}, {
		name: "unsupported protocols, conflicts, addresses",
		objs: func(o *Objects) {
			tls := httpL("tls", 443, "")
			tls.Protocol = gwv1.UDPProtocolType
			tcp := httpL("tcp", 9000, "")
			tcp.Protocol = gwv1.UDPProtocolType
			o.Gateways = []*gwv1.Gateway{
				gateway("app", "gw", httpL("a", 80, "a.test"), httpL("dup", 80, "a.test"), tls, tcp),
				gateway("app", "none", tls),
				gateway("app", "fixed", httpL("a", 80, "")),
				gateway("other", "gw", httpL("a", 80, ""), httpL("b", 81, "")), // same address as app/gw (same name length)
			}
			o.Gateways[2].Spec.Addresses = []gwv1.GatewaySpecAddress{{Value: "10.0.0.1"}}
		},
		check: func(t *testing.T, res *Result) {
			if err := conditionsAreNoTime(gwStatus(res, "app", "gw").Conditions, 3, want{"Accepted", metav1.ConditionTrue, "ListenersNotValid"}); err != nil {
				t.Error(err)
			}
			if err := conditionsAreNoTime(listenerStatus(t, res, "app", "gw", "dup").Conditions, 3,
				want{"Conflicted", metav1.ConditionTrue, "HostnameConflict"}, want{"Accepted", metav1.ConditionFalse, "HostnameConflict"}); err != nil {
				t.Error(err)
			}
			for _, n := range []string{"tls", "tcp"} {
				if err := conditionsAreNoTime(listenerStatus(t, res, "app", "gw", n).Conditions, 3,
					want{"Accepted", metav1.ConditionFalse, "UnsupportedProtocol"}, want{"Programmed", metav1.ConditionFalse, "Invalid"}); err != nil {
					t.Errorf("%s: %v", n, err)
				}
			}
			if err := conditionsAreNoTime(gwStatus(res, "app", "none").Conditions, 3,
				want{"Accepted", metav1.ConditionFalse, "ListenersNotValid"}, want{"Programmed", metav1.ConditionFalse, "Invalid"}); err != nil {
				t.Error(err)
			}
			if err := conditionsAreNoTime(gwStatus(res, "app", "fixed").Conditions, 3,
				want{"Accepted", metav1.ConditionFalse, "UnsupportedAddress"}, want{"Programmed", metav1.ConditionFalse, "Invalid"}); err != nil {
				t.Error(err)
			}
			if err := conditionsAreNoTime(listenerStatus(t, res, "other", "gw", "a").Conditions, 3,
				want{"Accepted", metav1.ConditionFalse, "PortUnavailable"}); err != nil {
				t.Error(err)
			}
			var addrs []string
			for _, l := range res.Listeners {
				addrs = append(addrs, l.Address)
			}
			if want := []string{"127.0.0.3:80", "127.0.0.3:81"}; !slices.Equal(addrs, want) {
				t.Errorf("addresses %v, want %v", addrs, want)
			}
		},
	}, {
		name: "a Gateway without an address",
		objs: func(o *Objects) {
			o.Gateways = []*gwv1.Gateway{gateway("app", "gw", httpL("http", 80, ""))}
			o.HTTPRoutes = []*gwv1.HTTPRoute{hroute("app", "r", 0, parents(parent{name: "gw"}), nil, rule(ref("", "web", 80, -1)))}
		},
		params: func(p *Params) { p.Address = func(*gwv1.Gateway) string { return "" } },
		check: func(t *testing.T, res *Result) {
			if len(res.Listeners) != 0 {
				t.Errorf("listeners %+v", res.Listeners)
			}
			if err := conditionsAreNoTime(gwStatus(res, "app", "gw").Conditions, 3, acc, want{"Programmed", metav1.ConditionFalse, "AddressNotAssigned"}); err != nil {
				t.Error(err)
			}
			parentIs(t, res, "app", "r", acc)
		},
	}, {
		name: "status addresses apart from the bind address",
		objs: func(o *Objects) { o.Gateways = []*gwv1.Gateway{gateway("app", "gw", httpL("http", 80, ""))} },
		params: func(p *Params) {
			p.Address = func(*gwv1.Gateway) string { return "0.0.0.0" }
			p.StatusAddresses = func(g *gwv1.Gateway) []gwv1.GatewayStatusAddress {
				return []gwv1.GatewayStatusAddress{{Type: new(gwv1.HostnameAddressType), Value: g.Name + ".lb.example.com"}}
			}
		},
		check: func(t *testing.T, res *Result) {
			if l := onlyListener(t, res); l.Address != "0.0.0.0:80" {
				t.Errorf("bound to %s", l.Address)
			}
			if a := gwStatus(res, "app", "gw").Addresses; len(a) != 1 || a[0].Value != "gw.lb.example.com" || *a[0].Type != gwv1.HostnameAddressType {
				t.Errorf("status addresses %+v", a)
			}
		},
	}, {
		name: "classes: parametersRef refused, others ignored",
		objs: func(o *Objects) {
			withParams := class("params", testController)
			withParams.Spec.ParametersRef = &gwv1.ParametersReference{Group: "example.com", Kind: "Config", Name: "x"}
			o.Classes = append(o.Classes, withParams)
			g1, g2 := gateway("app", "p", httpL("http", 80, "")), gateway("app", "o", httpL("http", 80, ""))
			g1.Spec.GatewayClassName, g2.Spec.GatewayClassName = "params", "other"
			o.Gateways = []*gwv1.Gateway{g1, g2}
		},
		check: func(t *testing.T, res *Result) {
			if err := conditionsAreNoTime(res.Classes["params"].Conditions, 2, want{"Accepted", metav1.ConditionFalse, "InvalidParameters"}); err != nil {
				t.Error(err)
			}
			if len(res.Gateways) != 0 || len(res.Listeners) != 0 {
				t.Errorf("gateways %v, listeners %v", res.Gateways, res.Listeners)
			}
			// With Class, only that class of ours is served.
			objs := base()
			objs.Classes = append(objs.Classes, class("lh2", testController))
			g1, g2 := gateway("app", "a", httpL("http", 80, "")), gateway("app", "b", httpL("http", 80, ""))
			g2.Spec.GatewayClassName = "lh2"
			objs.Gateways = []*gwv1.Gateway{g1, g2}
			p := params()
			p.Class = "lh2"
			one := Translate(objs, p)
			if _, ok := one.Classes["lh"]; ok || len(one.Classes) != 1 || len(one.Gateways) != 1 || len(one.Listeners) != 1 || one.Listeners[0].Name != "gw-app-b-80" {
				t.Errorf("with Class lh2: classes %v, gateways %v, listeners %d", one.Classes, one.Gateways, len(one.Listeners))
			}
		},
	}, {
		name: "SupportedVersion follows the CRDs' bundle version",
		objs: func(o *Objects) {
			o.Classes = append(o.Classes, class("lh2", testController))
			o.CRDVersions = map[string]string{}
			for _, n := range CRDs {
				o.CRDVersions[n] = "v1.6.0"
			}
		},
		check: func(t *testing.T, res *Result) {
			if err := conditionsAreNoTime(res.Classes["lh"].Conditions, 2, acc, want{"SupportedVersion", metav1.ConditionTrue, "SupportedVersion"}); err != nil {
				t.Error(err)
			}
			objs := base()
			objs.CRDVersions = map[string]string{"gateways." + Group: "v1.7.0"}
			st := Translate(objs, params()).Classes["lh"]
			if err := conditionsAreNoTime(st.Conditions, 2, acc, want{"SupportedVersion", metav1.ConditionFalse, "UnsupportedVersion"}); err != nil {
				t.Error(err)
			}
			if msg := st.Conditions[1].Message; !strings.Contains(msg, `"v1.7.0"`) || !strings.Contains(msg, "httproutes."+Group+" (not installed)") {
				t.Errorf("message %q", msg)
			}
			if n := len(Translate(base(), params()).Classes["lh"].Conditions); n != 1 {
				t.Errorf("%d conditions without CRD versions, want Accepted alone", n)
			}
		},
	}, {
		name: "names stay DNS labels, unique, and ranks follow age then name",
		objs: func(o *Objects) {
			long := strings.Repeat("n", 60)
			o.Namespaces = append(o.Namespaces, namespace(long, nil))
			o.Services = append(o.Services, svc(long, long+"-a", port("http", 80, intstr.FromInt32(80))), svc(long, long+"-b", port("http", 80, intstr.FromInt32(80))))
			o.Gateways = []*gwv1.Gateway{gateway(long, long, httpL("http", 80, "")), gateway(long, long+"x", httpL("http", 80, ""))}
			o.HTTPRoutes = []*gwv1.HTTPRoute{
				hroute(long, "young", 5, parents(parent{name: long}), nil, rule(ref("", long+"-a", 80, -1))),
				hroute(long, "b-old", 1, parents(parent{name: long}), []string{"x.test"}, rule(ref("", long+"-b", 80, -1))),
				hroute(long, "a-old", 1, parents(parent{name: long}), []string{"y.test"}, rule(ref("", long+"-a", 80, -1))),
			}
		},
		params: func(p *Params) {
			p.Address = func(g *gwv1.Gateway) string { return "127.0.0." + fmt.Sprint(len(g.Name)) }
		},
		check: func(t *testing.T, res *Result) {
			if len(res.Listeners) != 2 {
				t.Fatalf("%d listeners", len(res.Listeners))
			}
			seen := map[string]bool{}
			for _, l := range res.Listeners {
				for _, n := range append([]string{l.Name}, backendNames(&l)...) {
					if len(n) > 63 || sanitize(n) != n {
						t.Errorf("name %q is not a DNS label", n)
					}
				}
				if seen[l.Name] {
					t.Errorf("listener name %q twice", l.Name)
				}
				seen[l.Name] = true
			}
			var l *config.Listener
			for i := range res.Listeners {
				if len(res.Listeners[i].Routes.HTTP) == 3 {
					l = &res.Listeners[i]
				}
			}
			if l == nil {
				t.Fatal("no listener has the 3 routes")
			}
			var order []string
			for _, r := range l.Routes.HTTP {
				order = append(order, r.Name[:7]+strings.Split(r.Name, "-")[2])
			}
			if want := []string{"000001-a", "000002-b", "000003-young"}; !slices.Equal(order, want) {
				t.Errorf("route ranks %v, want %v", order, want)
			}
			if b := backendNames(l); len(b) != 2 || b[0] == b[1] {
				t.Errorf("backend names %v", b)
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			objs := base()
			tc.objs(&objs)
			p := params()
			if tc.params != nil {
				tc.params(&p)
			}
			res := Translate(objs, p)
			for _, l := range res.Listeners {
				c := config.Default()
				c.Listeners = []config.Listener{l}
				if err := c.Validate(); err != nil {
					t.Errorf("listener %s does not validate: %v", l.Name, err)
				}
			}
			tc.check(t, res)

			// The same objects in another order give the same result.
			for range 5 {
				shuffled := objs
				shuffled.Gateways = shuffle(objs.Gateways)
				shuffled.HTTPRoutes = shuffle(objs.HTTPRoutes)
				shuffled.GRPCRoutes = shuffle(objs.GRPCRoutes)
				shuffled.Services = shuffle(objs.Services)
				shuffled.Classes = shuffle(objs.Classes)
				if again := Translate(shuffled, p); !reflect.DeepEqual(again, res) {
					t.Fatalf("another order of the objects gives another result")
				}
			}
		})
	}
}

func shuffle[T any](s []T) []T {
	out := slices.Clone(s)
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func TestMergeConditions(t *testing.T) {
	old := metav1.NewTime(t0)
	now := metav1.NewTime(t0.Add(time.Hour))
	prev := []metav1.Condition{
		{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted", LastTransitionTime: old},
		{Type: "Programmed", Status: metav1.ConditionFalse, Reason: "Pending", LastTransitionTime: old},
		{Type: "Custom", Status: metav1.ConditionTrue, Reason: "X", LastTransitionTime: old},
	}
	got := mergeConditions(prev, []metav1.Condition{
		{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted", Message: "again", ObservedGeneration: 2},
		{Type: "Programmed", Status: metav1.ConditionTrue, Reason: "Programmed", ObservedGeneration: 2},
	}, now)
	if len(got) != 3 || got[0].LastTransitionTime != old || got[0].Message != "again" || got[0].ObservedGeneration != 2 ||
		got[1].LastTransitionTime != now || got[2].Type != "Custom" {
		t.Errorf("merged %+v", got)
	}
}

func TestMergeParents(t *testing.T) {
	now := metav1.NewTime(t0)
	theirs := gwv1.RouteParentStatus{ParentRef: gwv1.ParentReference{Name: "x"}, ControllerName: "example.com/other",
		Conditions: []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted", LastTransitionTime: now}}}
	ours := gwv1.RouteParentStatus{ParentRef: gwv1.ParentReference{Name: "gw"}, ControllerName: testController,
		Conditions: []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted", Message: "Accepted"}}}

	if got, changed := mergeParents([]gwv1.RouteParentStatus{theirs}, nil, testController, now); changed || len(got) != 1 {
		t.Errorf("a route with no parent of ours changed: %v %+v", changed, got)
	}
	got, changed := mergeParents([]gwv1.RouteParentStatus{theirs}, []gwv1.RouteParentStatus{ours}, testController, now)
	if !changed || len(got) != 2 || got[0].ControllerName != theirs.ControllerName || got[1].Conditions[0].LastTransitionTime != now {
		t.Fatalf("merged %v %+v", changed, got)
	}
	if _, changed := mergeParents(got, []gwv1.RouteParentStatus{ours}, testController, metav1.NewTime(t0.Add(time.Hour))); changed {
		t.Error("the same status again counts as a change")
	}
	if got, changed := mergeParents(got, nil, testController, now); !changed || len(got) != 1 || got[0].ControllerName == testController {
		t.Errorf("our stale parent is not removed: %v %+v", changed, got)
	}
}

func TestNamer(t *testing.T) {
	n := newNamer()
	a := n.name("k1", "App", "My_Service", "80")
	if a != "app-my-service-80" {
		t.Errorf("got %q", a)
	}
	if n.name("k1", "ignored") != a {
		t.Error("the same key gets another name")
	}
	b := n.name("k2", "app-my", "service-80") // the same readable parts
	if b == a || len(b) > 63 || sanitize(b) != b {
		t.Errorf("collision gives %q", b)
	}
	long := n.name("k3", strings.Repeat("a", 100))
	if len(long) > 63 || sanitize(long) != long {
		t.Errorf("long name %q", long)
	}
}

// TestTranslateRandom translates random objects, invalid ones among them
// (bad regular expressions, header names and redirects, unknown kinds and
// Services, clashing ports and hostnames): every listener published passes
// the config validator, names and addresses are unique, and every parent
// status has its two conditions.
func TestTranslateRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	hosts := []string{"", "a.example.com", "*.example.com", "b.example.org", "*.org"}
	reasons := map[string]int{}
	listeners := 0
	for round := range 300 {
		objs := base()
		for g := range 1 + rng.IntN(3) {
			gw := gateway(pick("app", "other"), fmt.Sprintf("g%d", g))
			for l := range 1 + rng.IntN(4) {
				ln := httpL(fmt.Sprintf("l%d", l), gwv1.PortNumber(80+rng.IntN(3)), pick(hosts...))
				if rng.IntN(6) == 0 {
					ln.Protocol = gwv1.HTTPSProtocolType
				}
				if rng.IntN(4) == 0 {
					ln = fromNS(ln, gwv1.NamespacesFromAll, nil)
				}
				gw.Spec.Listeners = append(gw.Spec.Listeners, ln)
			}
			objs.Gateways = append(objs.Gateways, gw)
		}
		for r := range rng.IntN(8) {
			var rules []gwv1.HTTPRouteRule
			for range 1 + rng.IntN(3) {
				rl := rule(ref(pick("", "other"), pick("web", "plain", "remote", "absent"), gwv1.PortNumber(80+rng.IntN(2)), int32(rng.IntN(3))-1))
				switch rng.IntN(6) {
				case 0:
					rl.Matches = []gwv1.HTTPRouteMatch{{Path: &gwv1.HTTPPathMatch{Type: new(gwv1.PathMatchRegularExpression), Value: new(pick("/(", "/a+", "["))}}}
				case 1:
					rl.Matches = []gwv1.HTTPRouteMatch{{Headers: []gwv1.HTTPHeaderMatch{{Name: gwv1.HTTPHeaderName(pick("X-A", "bad name", "")), Value: "v"}}}}
				case 2:
					rl.Filters = []gwv1.HTTPRouteFilter{{Type: gwv1.HTTPRouteFilterRequestRedirect, RequestRedirect: &gwv1.HTTPRequestRedirectFilter{StatusCode: new(rng.IntN(400))}}}
					rl.BackendRefs = nil
				case 3:
					rl.Filters = []gwv1.HTTPRouteFilter{{Type: gwv1.HTTPRouteFilterURLRewrite, URLRewrite: &gwv1.HTTPURLRewriteFilter{
						Path: &gwv1.HTTPPathModifier{Type: gwv1.PrefixMatchHTTPPathModifier, ReplacePrefixMatch: new("/x")}}}}
				}
				rules = append(rules, rl)
			}
			var hs []string
			for range rng.IntN(3) {
				if h := pick(hosts...); h != "" {
					hs = append(hs, h)
				}
			}
			ps := parents(parent{ns: pick("", "app", "other"), name: fmt.Sprintf("g%d", rng.IntN(3)), section: pick("", "l0", "l1", "l9")})
			objs.HTTPRoutes = append(objs.HTTPRoutes, hroute(pick("app", "other"), fmt.Sprintf("r%d", r), rng.IntN(3), ps, hs, rules...))
		}
		for r := range rng.IntN(3) {
			objs.GRPCRoutes = append(objs.GRPCRoutes, grpcRoute(pick("app", "other"), fmt.Sprintf("g%d", r),
				parents(parent{ns: "app", name: fmt.Sprintf("g%d", rng.IntN(3))}), svcRef("", pick("web", "absent"), 80)))
		}
		if rng.IntN(2) == 0 {
			objs.ReferenceGrants = []*gwv1.ReferenceGrant{grant("other", "app", KindHTTPRoute, "")}
		}

		res := Translate(objs, params())
		names, addrs := map[string]bool{}, map[string]bool{}
		for _, l := range res.Listeners {
			c := config.Default()
			c.Listeners = []config.Listener{l}
			if err := c.Validate(); err != nil {
				t.Fatalf("round %d: listener %s does not validate: %v", round, l.Name, err)
			}
			if names[l.Name] || addrs[l.Address] {
				t.Fatalf("round %d: listener %s at %s twice", round, l.Name, l.Address)
			}
			names[l.Name], addrs[l.Address] = true, true
		}
		listeners += len(res.Listeners)
		for _, m := range []map[types.NamespacedName][]gwv1.RouteParentStatus{res.Routes[KindHTTPRoute], res.Routes[KindGRPCRoute]} {
			for k, ps := range m {
				for _, p := range ps {
					if len(p.Conditions) != 2 || p.Conditions[0].Type != "Accepted" || p.Conditions[1].Type != "ResolvedRefs" || p.Conditions[0].Reason == "" {
						t.Fatalf("round %d: route %s: conditions %+v", round, k, p.Conditions)
					}
					reasons[p.Conditions[0].Reason]++
				}
			}
		}
	}
	t.Logf("%d listeners; route parents by Accepted reason: %v", listeners, reasons)
	for _, r := range []string{"Accepted", "UnsupportedValue", "NoMatchingParent", "NoMatchingListenerHostname", "NotAllowedByListeners"} {
		if reasons[r] == 0 {
			t.Errorf("no route parent %s: the generator misses a case", r)
		}
	}
}
