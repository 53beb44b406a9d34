package gateway

import (
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

func streamL(name string, port gwv1.PortNumber, proto gwv1.ProtocolType, host string, mode gwv1.TLSModeType) gwv1.Listener {
	l := httpL(name, port, host)
	l.Protocol = proto
	if mode != "" {
		l.TLS = &gwv1.ListenerTLSConfig{Mode: &mode}
	}
	return l
}

func tcpRoute(ns, name string, age int, ps []gwv1.ParentReference, refs ...gwv1.BackendObjectReference) *gwv1.TCPRoute {
	r := &gwv1.TCPRoute{ObjectMeta: meta(ns, name, age), Spec: gwv1.TCPRouteSpec{CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: ps}}}
	rl := gwv1.TCPRouteRule{}
	for _, b := range refs {
		rl.BackendRefs = append(rl.BackendRefs, gwv1.BackendRef{BackendObjectReference: b})
	}
	r.Spec.Rules = []gwv1.TCPRouteRule{rl}
	return r
}

func tlsRoute(ns, name string, ps []gwv1.ParentReference, hosts []gwv1.Hostname, refs ...gwv1.BackendObjectReference) *gwv1.TLSRoute {
	r := &gwv1.TLSRoute{ObjectMeta: meta(ns, name, 0), Spec: gwv1.TLSRouteSpec{CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: ps}, Hostnames: hosts}}
	rl := gwv1.TLSRouteRule{}
	for _, b := range refs {
		rl.BackendRefs = append(rl.BackendRefs, gwv1.BackendRef{BackendObjectReference: b})
	}
	r.Spec.Rules = []gwv1.TLSRouteRule{rl}
	return r
}

// TestTranslateStreams: TCP listeners take TCPRoutes (the oldest serves,
// every one is attached and accepted), TLS listeners in Passthrough mode
// take TLSRoutes by hostname, both served by tcp listeners; a TLS listener
// asking for termination is not accepted and supports no kind.
func TestTranslateStreams(t *testing.T) {
	o := base()
	o.Gateways = []*gwv1.Gateway{gateway("app", "gw",
		streamL("tcp", 9000, gwv1.TCPProtocolType, "", ""),
		streamL("tls", 8443, gwv1.TLSProtocolType, "*.example.com", gwv1.TLSModePassthrough),
		streamL("terminate", 8444, gwv1.TLSProtocolType, "t.example.com", gwv1.TLSModeTerminate),
		streamL("idle", 9001, gwv1.TCPProtocolType, "", ""),
	)}
	o.TCPRoutes = []*gwv1.TCPRoute{
		tcpRoute("app", "newer", 5, parents(parent{name: "gw", section: "tcp"}), svcRef("", "plain", 80)),
		tcpRoute("app", "older", 1, parents(parent{name: "gw", section: "tcp"}), svcRef("", "web", 80)),
		tcpRoute("app", "on-http", 1, parents(parent{name: "gw", section: "tls"}), svcRef("", "web", 80)),
	}
	o.TLSRoutes = []*gwv1.TLSRoute{
		tlsRoute("app", "t", parents(parent{name: "gw"}), []gwv1.Hostname{"abc.example.com", "other.org"}, svcRef("", "web", 80)),
	}
	p := params()
	res := Translate(o, p)
	byName := map[string]int{}
	for i, l := range res.Listeners {
		byName[l.Name] = i
	}
	tcp, ok := byName["gw-app-gw-9000"]
	if !ok {
		t.Fatalf("no listener for the TCP port: %+v", res.Listeners)
	}
	l := res.Listeners[tcp]
	if l.Protocol != "tcp" || len(l.Routes.TCP) != 1 || len(l.Backends) != 1 || l.Backends[0].Endpoints.Kubernetes.Service != "web" {
		t.Errorf("TCP listener: protocol %s, routes %+v, backends %+v; want the older route's backend web only", l.Protocol, l.Routes.TCP, l.Backends)
	}
	if err := validate(l); err != nil {
		t.Errorf("TCP listener: %v", err)
	}
	tls := res.Listeners[byName["gw-app-gw-8443"]]
	if tls.Protocol != "tcp" || len(tls.Routes.TLS) != 1 || !slices.Equal(tls.Routes.TLS[0].Hostnames, []string{"abc.example.com"}) {
		t.Errorf("TLS listener: protocol %s, routes %+v; want one TLS route for abc.example.com", tls.Protocol, tls.Routes.TLS)
	}
	if err := validate(tls); err != nil {
		t.Errorf("TLS listener: %v", err)
	}
	idle := res.Listeners[byName["gw-app-gw-9001"]]
	if len(idle.Routes.TCP) != 1 || *idle.Routes.TCP[0].Rules[0].Backends[0].Weight != 0 {
		t.Errorf("a TCP listener without routes: %+v, want the placeholder of weight 0", idle.Routes.TCP)
	}
	if _, ok := byName["gw-app-gw-8444"]; ok {
		t.Error("a TLS listener asking for termination is served")
	}

	if n := listenerStatus(t, res, "app", "gw", "tcp").AttachedRoutes; n != 2 {
		t.Errorf("tcp: attachedRoutes %d, want 2", n)
	}
	for _, name := range []string{"older", "newer"} {
		ps := res.Routes[KindTCPRoute][types.NamespacedName{Namespace: "app", Name: name}]
		if len(ps) != 1 {
			t.Fatalf("TCPRoute %s: %d parents", name, len(ps))
		}
		if err := conditionsAreNoTime(ps[0].Conditions, 3, acc, resolved); err != nil {
			t.Errorf("TCPRoute %s: %v", name, err)
		}
	}
	ps := res.Routes[KindTCPRoute][types.NamespacedName{Namespace: "app", Name: "on-http"}]
	if len(ps) != 1 || conditionsAreNoTime(ps[0].Conditions, 3, want{"Accepted", metav1.ConditionFalse, "NotAllowedByListeners"}) != nil {
		t.Errorf("a TCPRoute on a TLS listener: %+v", ps)
	}
	tlsPS := res.Routes[KindTLSRoute][types.NamespacedName{Namespace: "app", Name: "t"}]
	if len(tlsPS) != 1 || conditionsAreNoTime(tlsPS[0].Conditions, 3, acc, resolved) != nil {
		t.Errorf("TLSRoute t: %+v", tlsPS)
	}
	term := listenerStatus(t, res, "app", "gw", "terminate")
	if err := conditionsAreNoTime(term.Conditions, 3, want{"Accepted", metav1.ConditionFalse, "UnsupportedValue"}); err != nil || len(term.SupportedKinds) != 0 {
		t.Errorf("terminate: %v, supportedKinds %+v (want none)", err, term.SupportedKinds)
	}
	for name, kind := range map[string]string{"tcp": KindTCPRoute, "tls": KindTLSRoute} {
		ks := listenerStatus(t, res, "app", "gw", name).SupportedKinds
		if len(ks) != 1 || string(ks[0].Kind) != kind {
			t.Errorf("%s: supportedKinds %+v, want %s", name, ks, kind)
		}
	}
}
