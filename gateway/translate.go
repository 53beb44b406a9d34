package gateway

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/proxy/certs"
	"github.com/longhaul-proxy/longhaul/proxy/route"
)

// Group is the Gateway API's group.
const Group = gwv1.GroupName

// Route kinds.
const (
	KindHTTPRoute = "HTTPRoute"
	KindGRPCRoute = "GRPCRoute"
	KindTCPRoute  = "TCPRoute"
	KindTLSRoute  = "TLSRoute"
)

// Objects are the API objects Translate reads: all of them, whatever their
// class; Translate picks what concerns the controller.
type Objects struct {
	Classes         []*gwv1.GatewayClass
	Gateways        []*gwv1.Gateway
	HTTPRoutes      []*gwv1.HTTPRoute
	GRPCRoutes      []*gwv1.GRPCRoute
	TCPRoutes       []*gwv1.TCPRoute
	TLSRoutes       []*gwv1.TLSRoute
	ReferenceGrants []*gwv1.ReferenceGrant
	Services        []*corev1.Service
	// Secrets are the Secrets of type kubernetes.io/tls, read for the
	// certificates of HTTPS listeners.
	Secrets []*corev1.Secret
	// Namespaces are read for allowedRoutes' namespace selectors.
	Namespaces []*corev1.Namespace
	// CRDVersions maps the name of each Gateway API CRD the controller
	// reads ("gateways.gateway.networking.k8s.io") to its
	// gateway.networking.k8s.io/bundle-version annotation ("" for none);
	// nil leaves the GatewayClasses' SupportedVersion condition out.
	CRDVersions map[string]string
}

// BundleVersion is the Gateway API release the controller is built
// against; CRDs of the same minor version are supported.
const BundleVersion = "v1.6.3"

// CRDs are the names of the CustomResourceDefinitions the controller
// reads.
var CRDs = []string{
	"gatewayclasses." + Group, "gateways." + Group, "httproutes." + Group,
	"grpcroutes." + Group, "tcproutes." + Group, "tlsroutes." + Group, "referencegrants." + Group,
}

// Params are what Translate needs besides the objects.
type Params struct {
	// ControllerName is the GatewayClasses' spec.controllerName that the
	// controller serves.
	ControllerName gwv1.GatewayController
	// Class, if set, narrows the classes served to the GatewayClass of
	// that name (--gateway-class); it still needs ControllerName.
	Class string
	// Address returns the IP address a Gateway's listeners bind to (and
	// that its status.addresses reports); "" leaves the Gateway without
	// an address (Programmed False, AddressNotAssigned). It must give a
	// Gateway the same address at every call (Translate runs on every
	// change). Two Gateways may share an address on distinct ports; a
	// port taken by an older Gateway is PortUnavailable. Required.
	Address func(*gwv1.Gateway) string
	// StatusAddresses, if set, gives the addresses a Gateway's status
	// reports where clients reach it (in a cluster: the address of the
	// Service in front of longhaul, while Address gives the pod's
	// 0.0.0.0); nil reports Address as an IPAddress.
	StatusAddresses func(*gwv1.Gateway) []gwv1.GatewayStatusAddress
	// Template is the starting point of every listener and backend (its
	// Balance, Timeouts, Drain, HTTP and the rest); Name, Address,
	// Protocol, Endpoints, Backends and Routes are set by Translate.
	// DefaultTemplate gives the configuration's defaults. Leave
	// HTTP.Upstream empty: its default follows the protocol (h2c for the
	// grpc listeners of GRPCRoutes).
	Template config.Listener
	// Applied says, by listener name, whether the data path runs a
	// published listener: nil error for running, an error for refused.
	// A listener absent is pending (Programmed False, Pending).
	Applied map[string]error
}

// Result is the outcome of a translation: the listeners to run and the
// status every object of the controller's classes should have.
// Conditions carry observedGeneration but no lastTransitionTime: the
// status writer sets it (see mergeConditions).
type Result struct {
	// Listeners are sorted by name; names and addresses are unique, and
	// each listener passes config.Config.Validate.
	Listeners []config.Listener
	// Classes holds the status of each GatewayClass of ControllerName, by
	// name.
	Classes map[string]gwv1.GatewayClassStatus
	// Gateways holds the status of each Gateway of those classes.
	Gateways map[types.NamespacedName]gwv1.GatewayStatus
	// Routes holds, by route kind (KindHTTPRoute...), for each route with
	// a parentRef to one of those Gateways, the status of those parents
	// (the entries of ControllerName; entries of other controllers are not
	// touched).
	Routes map[string]map[types.NamespacedName][]gwv1.RouteParentStatus
}

// DefaultTemplate returns a listener with the configuration's defaults,
// as config.Parse fills them in, for Params.Template.
func DefaultTemplate() config.Listener {
	c, err := config.Parse([]byte(`listeners: [{name: t, address: "127.0.0.1:1", protocol: http, endpoints: {static: ["127.0.0.1:2"]}}]`))
	if err != nil {
		panic("gateway: the default listener does not parse: " + err.Error())
	}
	l := c.Listeners[0]
	l.Name, l.Address, l.Endpoints = "", "", config.Endpoints{}
	return l
}

// placeholder is what a listener with no route gets, since a listener
// with backends needs a route: a route for a host that cannot be asked
// for (".invalid" is reserved) to a backend of weight 0. Every request is
// then answered 404, as the API wants for a Gateway listener without
// routes, and the backend is never dialled.
const (
	placeholderHost     = "no-route.invalid"
	placeholderBackend  = "none"
	placeholderEndpoint = "127.0.0.1:9"
)

// gwListener is one listener of a Gateway, as Translate judges it.
type gwListener struct {
	spec     *gwv1.Listener
	hostname string // "" for any
	kinds    []gwv1.RouteGroupKind
	// valid listeners are served; the others carry their reasons.
	valid bool
	// attachable listeners take routes (and count them in attachedRoutes):
	// the accepted ones, served or not (an HTTPS listener without a
	// certificate is accepted, not served).
	attachable bool
	accepted   metav1.Condition
	resolved   metav1.Condition
	conflict   metav1.Condition
	invalidMsg string // why the listener is not valid (its Programmed message)
	// certs are an HTTPS listener's certificates whose refs resolved.
	certs    []config.Certificate
	attached int32
	lh       *lhListener // the longhaul listener serving it, if valid
}

// gwState is a Gateway of the controller's classes.
type gwState struct {
	gw        *gwv1.Gateway
	key       types.NamespacedName
	addr      string
	accepted  metav1.Condition
	listeners []*gwListener
	ports     map[gwv1.PortNumber]*lhListener
}

// lhListener is the longhaul listener of one Gateway port.
type lhListener struct {
	name    string
	address string
	// tls is set for an HTTPS port; certs are its Gateway listeners'.
	tls bool
	// stream is the route kind of a TCP or TLS (passthrough) port, served
	// by a tcp listener; "" for HTTP and HTTPS.
	stream  string
	certs   []config.Certificate
	entries []*entry
	// invalid is why the listener could not be built, if it could not.
	invalid string
}

// parentKey names one parentRef of one route.
type parentKey struct {
	kind string
	key  types.NamespacedName
	i    int
}

// entry is a route attached to one Gateway listener: one route of its
// longhaul listener, with hostnames narrowed to the Gateway listener's.
type entry struct {
	parent  parentKey
	created metav1.Time
	section string // the Gateway listener's name
	gl      *gwListener
	hosts   []string
	http    *config.HTTPRoute
	grpc    *config.GRPCRoute
	tcp     *config.TCPRoute
	tls     *config.TLSRoute
	// backends are the keys of the backends the route's refs name (the
	// config route's backendRefs name them by key until named).
	backends map[string]config.Kubernetes
	// unsupported lists what the route asks that cannot be served.
	unsupported []string
	invalid     string // set when the config validator refuses the route
}

// parentStatus is what Translate learns of one parentRef.
type parentStatus struct {
	ref      gwv1.ParentReference
	gen      int64
	accepted metav1.Condition
	resolved metav1.Condition
	entries  []*entry
}

// translator holds one translation's indexes.
type translator struct {
	p          Params
	classes    map[string]bool // accepted classes of ours
	gateways   map[types.NamespacedName]*gwState
	services   map[types.NamespacedName]*corev1.Service
	secrets    map[types.NamespacedName]*corev1.Secret
	namespaces map[string]labels.Set
	grants     []*gwv1.ReferenceGrant
	parents    map[parentKey]*parentStatus
	addrs      map[string]string // bound address -> the Gateway holding it
	// h2c holds the backend keys whose endpoints speak HTTP/2 without TLS:
	// GRPCRoutes' backends, and Service ports of appProtocol
	// kubernetes.io/h2c.
	h2c    map[string]bool
	lnames *namer // listener names
}

// Translate computes the listeners and the status that the objects call
// for. It is a pure function of its arguments: the same objects and params
// give the same result, whatever the order of the objects.
func Translate(objs Objects, p Params) *Result {
	t := &translator{
		p: p, classes: map[string]bool{}, gateways: map[types.NamespacedName]*gwState{},
		services: map[types.NamespacedName]*corev1.Service{}, secrets: map[types.NamespacedName]*corev1.Secret{}, namespaces: map[string]labels.Set{},
		grants: objs.ReferenceGrants, parents: map[parentKey]*parentStatus{}, addrs: map[string]string{}, lnames: newNamer(), h2c: map[string]bool{},
	}
	res := &Result{
		Classes:  map[string]gwv1.GatewayClassStatus{},
		Gateways: map[types.NamespacedName]gwv1.GatewayStatus{},
		Routes:   map[string]map[types.NamespacedName][]gwv1.RouteParentStatus{},
	}
	for _, k := range []string{KindHTTPRoute, KindGRPCRoute, KindTCPRoute, KindTLSRoute} {
		res.Routes[k] = map[types.NamespacedName][]gwv1.RouteParentStatus{}
	}
	for _, gc := range objs.Classes {
		if gc.Spec.ControllerName != p.ControllerName || p.Class != "" && gc.Name != p.Class {
			continue
		}
		c := cond(string(gwv1.GatewayClassConditionStatusAccepted), true, string(gwv1.GatewayClassReasonAccepted), "accepted by "+string(p.ControllerName), gc.Generation)
		if gc.Spec.ParametersRef != nil {
			c = cond(string(gwv1.GatewayClassConditionStatusAccepted), false, string(gwv1.GatewayClassReasonInvalidParameters),
				"parametersRef is not supported: the class takes no parameters", gc.Generation)
		} else {
			t.classes[gc.Name] = true
		}
		st := gwv1.GatewayClassStatus{Conditions: []metav1.Condition{c}}
		if objs.CRDVersions != nil {
			st.Conditions = append(st.Conditions, supportedVersion(objs.CRDVersions, gc.Generation))
		}
		res.Classes[gc.Name] = st
	}
	for _, s := range objs.Services {
		t.services[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s
	}
	for _, ns := range objs.Namespaces {
		t.namespaces[ns.Name] = ns.Labels
	}
	for _, s := range objs.Secrets {
		t.secrets[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s
	}

	gws := slices.Clone(objs.Gateways)
	slices.SortFunc(gws, func(a, b *gwv1.Gateway) int { return compareMeta(&a.ObjectMeta, &b.ObjectMeta) })
	for _, gw := range gws {
		if t.classes[string(gw.Spec.GatewayClassName)] {
			t.gateway(gw)
		}
	}

	httpRoutes := slices.Clone(objs.HTTPRoutes)
	slices.SortFunc(httpRoutes, func(a, b *gwv1.HTTPRoute) int { return compareMeta(&a.ObjectMeta, &b.ObjectMeta) })
	for _, r := range httpRoutes {
		t.httpRoute(r)
	}
	grpcRoutes := slices.Clone(objs.GRPCRoutes)
	slices.SortFunc(grpcRoutes, func(a, b *gwv1.GRPCRoute) int { return compareMeta(&a.ObjectMeta, &b.ObjectMeta) })
	for _, r := range grpcRoutes {
		t.grpcRoute(r)
	}
	tcpRoutes := slices.Clone(objs.TCPRoutes)
	slices.SortFunc(tcpRoutes, func(a, b *gwv1.TCPRoute) int { return compareMeta(&a.ObjectMeta, &b.ObjectMeta) })
	for _, r := range tcpRoutes {
		t.streamRoute(KindTCPRoute, &r.ObjectMeta, r.Spec.ParentRefs, nil, tcpRules(r.Spec.Rules))
	}
	tlsRoutes := slices.Clone(objs.TLSRoutes)
	slices.SortFunc(tlsRoutes, func(a, b *gwv1.TLSRoute) int { return compareMeta(&a.ObjectMeta, &b.ObjectMeta) })
	for _, r := range tlsRoutes {
		t.streamRoute(KindTLSRoute, &r.ObjectMeta, r.Spec.ParentRefs, r.Spec.Hostnames, tlsRules(r.Spec.Rules))
	}

	keys := make([]types.NamespacedName, 0, len(t.gateways))
	for k := range t.gateways {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareKeys)
	for _, k := range keys {
		g := t.gateways[k]
		ports := make([]gwv1.PortNumber, 0, len(g.ports))
		for port := range g.ports {
			ports = append(ports, port)
		}
		slices.Sort(ports)
		for _, port := range ports {
			if l, ok := t.build(g.ports[port]); ok {
				res.Listeners = append(res.Listeners, l)
			}
		}
	}
	slices.SortFunc(res.Listeners, func(a, b config.Listener) int { return strings.Compare(a.Name, b.Name) })

	for _, k := range keys {
		res.Gateways[k] = t.gatewayStatus(t.gateways[k])
	}
	pks := make([]parentKey, 0, len(t.parents))
	for pk := range t.parents {
		pks = append(pks, pk)
	}
	slices.SortFunc(pks, func(a, b parentKey) int {
		return cmp.Or(strings.Compare(a.kind, b.kind), compareKeys(a.key, b.key), cmp.Compare(a.i, b.i))
	})
	for _, pk := range pks {
		ps := t.parents[pk]
		ps.settle()
		st := gwv1.RouteParentStatus{ParentRef: ps.ref, ControllerName: p.ControllerName,
			Conditions: []metav1.Condition{ps.accepted, ps.resolved}}
		m := res.Routes[pk.kind]
		m[pk.key] = append(m[pk.key], st)
	}
	return res
}

// gateway judges a Gateway of one of the controller's classes and its
// listeners.
func (t *translator) gateway(gw *gwv1.Gateway) {
	gen := gw.Generation
	g := &gwState{gw: gw, key: types.NamespacedName{Namespace: gw.Namespace, Name: gw.Name}, ports: map[gwv1.PortNumber]*lhListener{}}
	t.gateways[g.key] = g
	if len(gw.Spec.Addresses) > 0 {
		g.accepted = cond(string(gwv1.GatewayConditionAccepted), false, string(gwv1.GatewayReasonUnsupportedAddress),
			"spec.addresses is not supported: the controller assigns each Gateway its address", gen)
	} else if gw.Spec.Infrastructure != nil && gw.Spec.Infrastructure.ParametersRef != nil {
		g.accepted = cond(string(gwv1.GatewayConditionAccepted), false, string(gwv1.GatewayReasonInvalidParameters),
			"infrastructure.parametersRef is not supported", gen)
	}
	g.addr = t.p.Address(gw)

	type portUse struct {
		protocol gwv1.ProtocolType
		hosts    map[string]bool
	}
	ports := map[gwv1.PortNumber]*portUse{}
	accepted := 0
	for i := range gw.Spec.Listeners {
		spec := &gw.Spec.Listeners[i]
		l := &gwListener{spec: spec, valid: true}
		if spec.Hostname != nil {
			l.hostname = string(*spec.Hostname)
		}
		g.listeners = append(g.listeners, l)
		l.accepted = cond(string(gwv1.ListenerConditionAccepted), true, string(gwv1.ListenerReasonAccepted), "", gen)
		l.resolved = cond(string(gwv1.ListenerConditionResolvedRefs), true, string(gwv1.ListenerReasonResolvedRefs), "", gen)
		l.conflict = cond(string(gwv1.ListenerConditionConflicted), false, string(gwv1.ListenerReasonNoConflicts), "", gen)
		fail := func(reason gwv1.ListenerConditionReason, msg string) {
			l.valid = false
			l.accepted = cond(string(gwv1.ListenerConditionAccepted), false, string(reason), msg, gen)
			l.invalidMsg = msg
		}

		switch spec.Protocol {
		case gwv1.HTTPProtocolType:
			if spec.TLS != nil {
				fail(gwv1.ListenerReasonUnsupportedValue, "tls is not allowed on an HTTP listener")
			}
		case gwv1.HTTPSProtocolType:
			switch {
			case spec.TLS == nil:
				fail(gwv1.ListenerReasonUnsupportedValue, "an HTTPS listener needs tls")
			case spec.TLS.Mode != nil && *spec.TLS.Mode != gwv1.TLSModeTerminate:
				fail(gwv1.ListenerReasonUnsupportedValue, fmt.Sprintf("tls.mode %s is not supported on an HTTPS listener: only Terminate", *spec.TLS.Mode))
			default:
				t.certificates(gw, l)
			}
		case gwv1.TCPProtocolType:
			if spec.TLS != nil {
				fail(gwv1.ListenerReasonUnsupportedValue, "tls is not allowed on a TCP listener")
			}
		case gwv1.TLSProtocolType:
			if spec.TLS == nil || spec.TLS.Mode == nil || *spec.TLS.Mode != gwv1.TLSModePassthrough {
				fail(gwv1.ListenerReasonUnsupportedValue, "a TLS listener needs tls.mode Passthrough: TLS termination is for HTTPS listeners")
			}
		default:
			fail(gwv1.ListenerReasonUnsupportedProtocol, fmt.Sprintf("protocol %s is not supported: only HTTP, HTTPS, TLS (passthrough) and TCP", spec.Protocol))
		}
		var invalidKinds []string
		l.kinds, invalidKinds = routeKinds(spec)
		if len(invalidKinds) > 0 {
			l.resolved = cond(string(gwv1.ListenerConditionResolvedRefs), false, string(gwv1.ListenerReasonInvalidRouteKinds),
				"route kinds not supported: "+strings.Join(invalidKinds, ", "), gen)
			if len(l.kinds) == 0 && l.valid {
				l.valid = false
				l.invalidMsg = "no supported route kind"
			}
		}
		if !l.valid {
			continue
		}
		u := ports[spec.Port]
		switch {
		case u == nil:
			ports[spec.Port] = &portUse{protocol: spec.Protocol, hosts: map[string]bool{l.hostname: true}}
		case u.protocol != spec.Protocol:
			l.conflict = cond(string(gwv1.ListenerConditionConflicted), true, string(gwv1.ListenerReasonProtocolConflict),
				fmt.Sprintf("port %d is used by an earlier listener with protocol %s", spec.Port, u.protocol), gen)
			fail(gwv1.ListenerReasonProtocolConflict, l.conflict.Message)
		case u.hosts[l.hostname]:
			l.conflict = cond(string(gwv1.ListenerConditionConflicted), true, string(gwv1.ListenerReasonHostnameConflict),
				fmt.Sprintf("an earlier listener on port %d has the same hostname", spec.Port), gen)
			fail(gwv1.ListenerReasonHostnameConflict, l.conflict.Message)
		default:
			u.hosts[l.hostname] = true
		}
		if !l.valid {
			continue
		}
		accepted++
		l.attachable = true
		if spec.Protocol == gwv1.HTTPSProtocolType && len(l.certs) == 0 {
			// Accepted, but with no certificate it cannot be served.
			l.valid, l.invalidMsg = false, "no certificate: "+l.resolved.Message
			continue
		}
		if g.accepted.Type == "" {
			addr := ""
			if g.addr != "" {
				addr = net.JoinHostPort(g.addr, strconv.Itoa(int(spec.Port)))
				if holder, taken := t.addrs[addr]; taken && holder != g.key.String() {
					fail(gwv1.ListenerReasonPortUnavailable, fmt.Sprintf("address %s is held by Gateway %s", addr, holder))
					continue
				}
				t.addrs[addr] = g.key.String()
			}
			lh := g.ports[spec.Port]
			if lh == nil {
				port := strconv.Itoa(int(spec.Port))
				lh = &lhListener{name: t.lnames.name(g.key.String()+"/"+port, "gw", gw.Namespace, gw.Name, port), address: addr,
					tls: spec.Protocol == gwv1.HTTPSProtocolType, stream: streamKind(spec.Protocol)}
				g.ports[spec.Port] = lh
			}
			l.lh = lh
			lh.certs = append(lh.certs, l.certs...)
		}
	}
	if g.accepted.Type == "" {
		switch {
		case accepted == len(g.listeners):
			g.accepted = cond(string(gwv1.GatewayConditionAccepted), true, string(gwv1.GatewayReasonAccepted), "", gen)
		case accepted > 0:
			g.accepted = cond(string(gwv1.GatewayConditionAccepted), true, string(gwv1.GatewayReasonListenersNotValid),
				"some listeners are not valid", gen)
		default:
			g.accepted = cond(string(gwv1.GatewayConditionAccepted), false, string(gwv1.GatewayReasonListenersNotValid),
				"no listener is valid", gen)
		}
	}
}

// certificates resolves an HTTPS listener's certificateRefs into l.certs,
// for its hostname, and sets its ResolvedRefs condition: false, with the
// API's reason, when any ref does not resolve (the others still serve).
func (t *translator) certificates(gw *gwv1.Gateway, l *gwListener) {
	gen := gw.Generation
	var hosts []string
	if l.hostname != "" {
		hosts = []string{l.hostname}
	}
	var reason gwv1.ListenerConditionReason
	var msgs []string
	bad := func(r gwv1.ListenerConditionReason, msg string) {
		if reason == "" || r == gwv1.ListenerReasonRefNotPermitted {
			reason = r // RefNotPermitted wins: it says what to fix
		}
		msgs = append(msgs, msg)
	}
	if len(l.spec.TLS.CertificateRefs) == 0 {
		bad(gwv1.ListenerReasonInvalidCertificateRef, "tls.certificateRefs is empty")
	}
	for i, ref := range l.spec.TLS.CertificateRefs {
		where := fmt.Sprintf("tls.certificateRefs[%d] %s", i, ref.Name)
		group, kind := "", "Secret"
		if ref.Group != nil {
			group = string(*ref.Group)
		}
		if ref.Kind != nil {
			kind = string(*ref.Kind)
		}
		if group != "" || kind != "Secret" {
			bad(gwv1.ListenerReasonInvalidCertificateRef, fmt.Sprintf("%s: kind %s/%s is not supported: only Secrets", where, group, kind))
			continue
		}
		ns := gw.Namespace
		if ref.Namespace != nil {
			ns = string(*ref.Namespace)
		}
		if ns != gw.Namespace && !t.granted("Gateway", gw.Namespace, ns, "Secret", string(ref.Name)) {
			bad(gwv1.ListenerReasonRefNotPermitted, fmt.Sprintf("%s: no ReferenceGrant in %s allows it", where, ns))
			continue
		}
		sec := t.secrets[types.NamespacedName{Namespace: ns, Name: string(ref.Name)}]
		if sec == nil {
			bad(gwv1.ListenerReasonInvalidCertificateRef, fmt.Sprintf("%s: no Secret %s/%s of type %s", where, ns, ref.Name, corev1.SecretTypeTLS))
			continue
		}
		crt, key := sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey]
		if _, err := certs.FromPEM(crt, key); err != nil {
			bad(gwv1.ListenerReasonInvalidCertificateRef, fmt.Sprintf("%s: Secret %s/%s: %v", where, ns, ref.Name, err))
			continue
		}
		l.certs = append(l.certs, config.Certificate{Hostnames: hosts, CertPEM: string(crt), KeyPEM: string(key)})
	}
	if reason != "" {
		l.resolved = cond(string(gwv1.ListenerConditionResolvedRefs), false, string(reason), strings.Join(msgs, "; "), gen)
	}
}

// routeKinds returns the route kinds a listener takes (allowedRoutes.kinds,
// or the kinds of its protocol) and the kinds asked for that it cannot.
func routeKinds(spec *gwv1.Listener) (ok []gwv1.RouteGroupKind, invalid []string) {
	group := gwv1.Group(Group)
	var names []gwv1.Kind
	switch spec.Protocol {
	case gwv1.HTTPProtocolType, gwv1.HTTPSProtocolType:
		names = []gwv1.Kind{KindHTTPRoute, KindGRPCRoute}
	case gwv1.TCPProtocolType:
		names = []gwv1.Kind{KindTCPRoute}
	case gwv1.TLSProtocolType:
		names = []gwv1.Kind{KindTLSRoute}
	}
	supported := []gwv1.RouteGroupKind{}
	for _, n := range names {
		supported = append(supported, gwv1.RouteGroupKind{Group: &group, Kind: n})
	}
	if spec.AllowedRoutes == nil || len(spec.AllowedRoutes.Kinds) == 0 {
		return supported, nil
	}
	ok = []gwv1.RouteGroupKind{}
	for _, k := range spec.AllowedRoutes.Kinds {
		g := Group
		if k.Group != nil {
			g = string(*k.Group)
		}
		if g == Group && slices.Contains(names, k.Kind) {
			if !slices.ContainsFunc(ok, func(o gwv1.RouteGroupKind) bool { return o.Kind == k.Kind }) {
				ok = append(ok, gwv1.RouteGroupKind{Group: &group, Kind: k.Kind})
			}
			continue
		}
		invalid = append(invalid, g+"/"+string(k.Kind))
	}
	return ok, invalid
}

// streamKind is the route kind a TCP or TLS listener serves, "" for the
// others.
func streamKind(p gwv1.ProtocolType) string {
	switch p {
	case gwv1.TCPProtocolType:
		return KindTCPRoute
	case gwv1.TLSProtocolType:
		return KindTLSRoute
	}
	return ""
}

// routeMeta is what attachment needs of any route.
type routeMeta struct {
	kind      string
	obj       *metav1.ObjectMeta
	parents   []gwv1.ParentReference
	hostnames []gwv1.Hostname
}

// attach attaches each parentRef of a route that names a Gateway of ours
// and returns, for each of those, its status and the Gateway listeners
// it attaches to.
func (t *translator) attach(r routeMeta) []*parentStatus {
	var out []*parentStatus
	gen := r.obj.Generation
	var hostnames []string
	for _, h := range r.hostnames {
		hostnames = append(hostnames, string(h))
	}
	for i, ref := range r.parents {
		if ref.Group != nil && *ref.Group != Group || ref.Kind != nil && *ref.Kind != "Gateway" {
			continue
		}
		ns := r.obj.Namespace
		if ref.Namespace != nil {
			ns = string(*ref.Namespace)
		}
		g := t.gateways[types.NamespacedName{Namespace: ns, Name: string(ref.Name)}]
		if g == nil {
			continue
		}
		pk := parentKey{kind: r.kind, key: types.NamespacedName{Namespace: r.obj.Namespace, Name: r.obj.Name}, i: i}
		ps := &parentStatus{ref: ref, gen: gen}
		t.parents[pk] = ps
		out = append(out, ps)

		var matched, allowed []*gwListener
		for _, l := range g.listeners {
			if ref.SectionName != nil && string(*ref.SectionName) != string(l.spec.Name) ||
				ref.Port != nil && *ref.Port != l.spec.Port {
				continue
			}
			matched = append(matched, l)
			if l.attachable && t.allowed(l, g, r) {
				allowed = append(allowed, l)
			}
		}
		switch {
		case g.accepted.Status != metav1.ConditionTrue:
			ps.accepted = cond(string(gwv1.RouteConditionAccepted), false, string(gwv1.RouteReasonNoMatchingParent), "the Gateway is not accepted", gen)
			continue
		case len(matched) == 0:
			ps.accepted = cond(string(gwv1.RouteConditionAccepted), false, string(gwv1.RouteReasonNoMatchingParent),
				"no listener of the Gateway matches the parentRef's sectionName and port", gen)
			continue
		case len(allowed) == 0:
			ps.accepted = cond(string(gwv1.RouteConditionAccepted), false, string(gwv1.RouteReasonNotAllowedByListeners),
				"no listener allows the route (allowedRoutes namespaces and kinds)", gen)
			continue
		}
		for _, l := range allowed {
			hosts, ok := route.ListenerHostnames(l.hostname, hostnames)
			if !ok {
				continue
			}
			ps.entries = append(ps.entries, &entry{parent: pk, created: r.obj.CreationTimestamp, section: string(l.spec.Name), gl: l, hosts: hosts})
		}
		if len(ps.entries) == 0 {
			ps.accepted = cond(string(gwv1.RouteConditionAccepted), false, string(gwv1.RouteReasonNoMatchingListenerHostname),
				"no hostname of the route matches a listener's", gen)
		}
	}
	return out
}

// allowed reports whether listener l of g lets route r attach.
func (t *translator) allowed(l *gwListener, g *gwState, r routeMeta) bool {
	if !slices.ContainsFunc(l.kinds, func(k gwv1.RouteGroupKind) bool { return string(k.Kind) == r.kind }) {
		return false
	}
	from := gwv1.NamespacesFromSame
	var sel *metav1.LabelSelector
	if ar := l.spec.AllowedRoutes; ar != nil && ar.Namespaces != nil {
		if ar.Namespaces.From != nil {
			from = *ar.Namespaces.From
		}
		sel = ar.Namespaces.Selector
	}
	switch from {
	case gwv1.NamespacesFromAll:
		return true
	case gwv1.NamespacesFromSame:
		return r.obj.Namespace == g.gw.Namespace
	case gwv1.NamespacesFromSelector:
		if sel == nil {
			return false
		}
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			return false
		}
		return s.Matches(t.namespaces[r.obj.Namespace])
	}
	return false
}

// backendRef resolves one backendRef of a route in namespace ns: the
// backend's key and endpoints, or the ResolvedRefs reason and message.
func (t *translator) backendRef(kind, ns string, ref gwv1.BackendObjectReference) (key string, k config.Kubernetes, reason gwv1.RouteConditionReason, msg string) {
	group, refKind := "", "Service"
	if ref.Group != nil {
		group = string(*ref.Group)
	}
	if ref.Kind != nil {
		refKind = string(*ref.Kind)
	}
	if group != "" || refKind != "Service" {
		return "", k, gwv1.RouteReasonInvalidKind, fmt.Sprintf("backendRef %s: kind %s/%s is not supported: only Services", ref.Name, group, refKind)
	}
	target := ns
	if ref.Namespace != nil {
		target = string(*ref.Namespace)
	}
	if target != ns && !t.granted(kind, ns, target, "Service", string(ref.Name)) {
		return "", k, gwv1.RouteReasonRefNotPermitted, fmt.Sprintf("backendRef %s/%s: no ReferenceGrant in %s allows it", target, ref.Name, target)
	}
	if ref.Port == nil {
		return "", k, gwv1.RouteReasonUnsupportedValue, fmt.Sprintf("backendRef %s/%s: a Service needs a port", target, ref.Name)
	}
	svc := t.services[types.NamespacedName{Namespace: target, Name: string(ref.Name)}]
	if svc == nil {
		return "", k, gwv1.RouteReasonBackendNotFound, fmt.Sprintf("Service %s/%s not found", target, ref.Name)
	}
	i := slices.IndexFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == int32(*ref.Port) })
	if i < 0 {
		return "", k, gwv1.RouteReasonBackendNotFound, fmt.Sprintf("Service %s/%s has no port %d", target, ref.Name, *ref.Port)
	}
	// The endpoints source selects an EndpointSlice port by the Service
	// port's name, or by the target port's number.
	sp := svc.Spec.Ports[i]
	port := sp.Name
	if port == "" {
		switch {
		case sp.TargetPort.IntValue() > 0:
			port = strconv.Itoa(sp.TargetPort.IntValue())
		case sp.TargetPort.StrVal == "":
			port = strconv.Itoa(int(sp.Port))
		default:
			return "", k, gwv1.RouteReasonUnsupportedValue, fmt.Sprintf("Service %s/%s port %d: an unnamed port with a named targetPort is not supported", target, ref.Name, sp.Port)
		}
	}
	key = fmt.Sprintf("%s/%s/%d", target, ref.Name, *ref.Port)
	if sp.AppProtocol != nil && *sp.AppProtocol == appProtocolH2C {
		t.h2c[key] = true
	}
	return key, config.Kubernetes{Namespace: target, Service: string(ref.Name), Port: port}, "", ""
}

// appProtocolH2C is the Service port appProtocol of HTTP/2 over cleartext
// (the Gateway API's HTTPRouteBackendProtocolH2C).
const appProtocolH2C = "kubernetes.io/h2c"

// granted reports whether a ReferenceGrant in namespace to lets objects of
// kind (of the Gateway API's group) in namespace from refer to the core
// object toKind (Service, Secret) called name.
func (t *translator) granted(kind, from, to, toKind, name string) bool {
	for _, g := range t.grants {
		if g.Namespace != to {
			continue
		}
		okFrom := slices.ContainsFunc(g.Spec.From, func(f gwv1.ReferenceGrantFrom) bool {
			return string(f.Group) == Group && string(f.Kind) == kind && string(f.Namespace) == from
		})
		okTo := slices.ContainsFunc(g.Spec.To, func(r gwv1.ReferenceGrantTo) bool {
			return r.Group == "" && string(r.Kind) == toKind && (r.Name == nil || string(*r.Name) == name)
		})
		if okFrom && okTo {
			return true
		}
	}
	return false
}

// refs resolves a rule's backendRefs into config refs (named by key), the
// backends they name, and the first ResolvedRefs failure. An unresolved ref
// is left out, so its share of requests goes to the rule's others; a rule
// with none left is answered 500.
func (t *translator) refs(kind, ns string, in []gwv1.BackendRef, backends map[string]config.Kubernetes, fail *metav1.Condition, gen int64) []config.BackendRef {
	var out []config.BackendRef
	for _, r := range in {
		key, k, reason, msg := t.backendRef(kind, ns, r.BackendObjectReference)
		if reason != "" {
			if fail.Type == "" {
				*fail = cond(string(gwv1.RouteConditionResolvedRefs), false, string(reason), msg, gen)
			}
			continue
		}
		backends[key] = k
		var w *int
		if r.Weight != nil {
			w = new(int(*r.Weight))
		}
		out = append(out, config.BackendRef{Name: key, Weight: w})
	}
	return out
}

func (t *translator) httpRoute(r *gwv1.HTTPRoute) {
	ps := t.attach(routeMeta{kind: KindHTTPRoute, obj: &r.ObjectMeta, parents: r.Spec.ParentRefs, hostnames: r.Spec.Hostnames})
	if len(ps) == 0 {
		return
	}
	var resolved metav1.Condition
	var unsupported []string
	backends := map[string]config.Kubernetes{}
	cr := config.HTTPRoute{}
	for ri, rule := range r.Spec.Rules {
		where := fmt.Sprintf("rules[%d]", ri)
		if rule.Timeouts != nil {
			unsupported = append(unsupported, where+".timeouts")
		}
		if rule.Retry != nil {
			unsupported = append(unsupported, where+".retry")
		}
		if rule.SessionPersistence != nil {
			unsupported = append(unsupported, where+".sessionPersistence")
		}
		cRule := config.HTTPRule{}
		if rule.Name != nil {
			cRule.Name = string(*rule.Name)
		}
		for _, m := range rule.Matches {
			cm := config.HTTPMatch{}
			if m.Path != nil {
				cm.Path = &config.PathMatch{Type: deref(m.Path.Type, gwv1.PathMatchPathPrefix), Value: deref(m.Path.Value, "/")}
			}
			if m.Method != nil {
				cm.Method = string(*m.Method)
			}
			for _, h := range m.Headers {
				cm.Headers = append(cm.Headers, config.ValueMatch{Type: deref(h.Type, gwv1.HeaderMatchExact), Name: string(h.Name), Value: h.Value})
			}
			for _, q := range m.QueryParams {
				cm.QueryParams = append(cm.QueryParams, config.ValueMatch{Type: deref(q.Type, gwv1.QueryParamMatchExact), Name: string(q.Name), Value: q.Value})
			}
			cRule.Matches = append(cRule.Matches, cm)
		}
		for fi, f := range rule.Filters {
			if f.Type == gwv1.HTTPRouteFilterRequestMirror && f.RequestMirror != nil {
				if m := t.mirror(r, f.RequestMirror, backends, &resolved); m != nil {
					cRule.Filters = append(cRule.Filters, config.HTTPFilter{Type: string(f.Type), RequestMirror: m})
				}
				continue
			}
			cf, ok := httpFilter(f)
			if !ok {
				unsupported = append(unsupported, fmt.Sprintf("%s.filters[%d] (%s)", where, fi, f.Type))
				continue
			}
			cRule.Filters = append(cRule.Filters, cf)
		}
		var refs []gwv1.BackendRef
		for bi, b := range rule.BackendRefs {
			if len(b.Filters) > 0 {
				unsupported = append(unsupported, fmt.Sprintf("%s.backendRefs[%d].filters", where, bi))
			}
			refs = append(refs, b.BackendRef)
		}
		cRule.Backends = t.refs(KindHTTPRoute, r.Namespace, refs, backends, &resolved, r.Generation)
		cr.Rules = append(cr.Rules, cRule)
	}
	if len(r.Spec.Rules) == 0 {
		cr.Rules = []config.HTTPRule{{}} // the API's default: one rule matching every request, no backend
	}
	for _, p := range ps {
		p.resolved = resolved
		for _, e := range p.entries {
			c := cr
			c.Hostnames = e.hosts
			e.http, e.backends, e.unsupported = &c, backends, unsupported
			e.attach()
		}
	}
}

func (t *translator) grpcRoute(r *gwv1.GRPCRoute) {
	ps := t.attach(routeMeta{kind: KindGRPCRoute, obj: &r.ObjectMeta, parents: r.Spec.ParentRefs, hostnames: r.Spec.Hostnames})
	if len(ps) == 0 {
		return
	}
	var resolved metav1.Condition
	var unsupported []string
	backends := map[string]config.Kubernetes{}
	cr := config.GRPCRoute{}
	for ri, rule := range r.Spec.Rules {
		where := fmt.Sprintf("rules[%d]", ri)
		if rule.SessionPersistence != nil {
			unsupported = append(unsupported, where+".sessionPersistence")
		}
		cRule := config.GRPCRule{}
		if rule.Name != nil {
			cRule.Name = string(*rule.Name)
		}
		for _, m := range rule.Matches {
			cm := config.GRPCMatch{}
			if m.Method != nil {
				cm.Method = &config.GRPCMethodMatch{Type: deref(m.Method.Type, gwv1.GRPCMethodMatchExact),
					Service: deref(m.Method.Service, ""), Method: deref(m.Method.Method, "")}
			}
			for _, h := range m.Headers {
				cm.Headers = append(cm.Headers, config.ValueMatch{Type: deref(h.Type, gwv1.GRPCHeaderMatchExact), Name: string(h.Name), Value: h.Value})
			}
			cRule.Matches = append(cRule.Matches, cm)
		}
		for fi, f := range rule.Filters {
			switch f.Type {
			case gwv1.GRPCRouteFilterRequestHeaderModifier, gwv1.GRPCRouteFilterResponseHeaderModifier:
				cRule.Filters = append(cRule.Filters, config.GRPCFilter{Type: string(f.Type),
					RequestHeaderModifier: headerModifier(f.RequestHeaderModifier), ResponseHeaderModifier: headerModifier(f.ResponseHeaderModifier)})
			default:
				unsupported = append(unsupported, fmt.Sprintf("%s.filters[%d] (%s)", where, fi, f.Type))
			}
		}
		var refs []gwv1.BackendRef
		for bi, b := range rule.BackendRefs {
			if len(b.Filters) > 0 {
				unsupported = append(unsupported, fmt.Sprintf("%s.backendRefs[%d].filters", where, bi))
			}
			refs = append(refs, b.BackendRef)
		}
		cRule.Backends = t.refs(KindGRPCRoute, r.Namespace, refs, backends, &resolved, r.Generation)
		for _, b := range cRule.Backends {
			t.h2c[b.Name] = true // gRPC is HTTP/2
		}
		cr.Rules = append(cr.Rules, cRule)
	}
	if len(r.Spec.Rules) == 0 {
		cr.Rules = []config.GRPCRule{{}}
	}
	for _, p := range ps {
		p.resolved = resolved
		for _, e := range p.entries {
			c := cr
			c.Hostnames = e.hosts
			e.grpc, e.backends, e.unsupported = &c, backends, unsupported
			e.attach()
		}
	}
}

// streamRule is one rule of a TCPRoute or TLSRoute: its backends.
type streamRule struct {
	name *gwv1.SectionName
	refs []gwv1.BackendRef
}

func tcpRules(rs []gwv1.TCPRouteRule) []streamRule {
	out := make([]streamRule, len(rs))
	for i, r := range rs {
		out[i] = streamRule{name: r.Name, refs: r.BackendRefs}
	}
	return out
}

func tlsRules(rs []gwv1.TLSRouteRule) []streamRule {
	out := make([]streamRule, len(rs))
	for i, r := range rs {
		out[i] = streamRule{name: r.Name, refs: r.BackendRefs}
	}
	return out
}

// streamRoute attaches a TCPRoute or TLSRoute (kind) and makes its entries:
// a connection goes to a backend of its rules, picked by weight.
func (t *translator) streamRoute(kind string, obj *metav1.ObjectMeta, parents []gwv1.ParentReference, hostnames []gwv1.Hostname, rules []streamRule) {
	ps := t.attach(routeMeta{kind: kind, obj: obj, parents: parents, hostnames: hostnames})
	if len(ps) == 0 {
		return
	}
	var resolved metav1.Condition
	backends := map[string]config.Kubernetes{}
	var refs [][]config.BackendRef
	for _, r := range rules {
		refs = append(refs, t.refs(kind, obj.Namespace, r.refs, backends, &resolved, obj.Generation))
	}
	for _, p := range ps {
		p.resolved = resolved
		for _, e := range p.entries {
			e.backends = backends
			if kind == KindTCPRoute {
				e.tcp = &config.TCPRoute{}
				for _, r := range refs {
					e.tcp.Rules = append(e.tcp.Rules, config.TCPRule{Backends: r})
				}
			} else {
				e.tls = &config.TLSRoute{Hostnames: e.hosts}
				for _, r := range refs {
					e.tls.Rules = append(e.tls.Rules, config.TLSRule{Backends: r})
				}
			}
			e.attach()
		}
	}
}

// attach adds e to the longhaul listener serving its Gateway listener,
// which judges it (build); a listener that is not served counts it as
// attached as it is.
func (e *entry) attach() {
	if e.gl.lh == nil {
		e.gl.attached++
		return
	}
	e.gl.lh.entries = append(e.gl.lh.entries, e)
}

// mirror resolves a RequestMirror filter's backend (named by key, as
// backendRefs are until build names them); nil, with the ResolvedRefs
// failure recorded, when it does not resolve: the request is then not
// mirrored.
func (t *translator) mirror(r *gwv1.HTTPRoute, m *gwv1.HTTPRequestMirrorFilter, backends map[string]config.Kubernetes, fail *metav1.Condition) *config.Mirror {
	key, k, reason, msg := t.backendRef(KindHTTPRoute, r.Namespace, m.BackendRef)
	if reason != "" {
		if fail.Type == "" {
			*fail = cond(string(gwv1.RouteConditionResolvedRefs), false, string(reason), "requestMirror: "+msg, r.Generation)
		}
		return nil
	}
	backends[key] = k
	out := &config.Mirror{BackendRef: config.MirrorRef{Name: key}}
	if m.Percent != nil {
		out.Percent = new(int(*m.Percent))
	}
	if f := m.Fraction; f != nil {
		out.Fraction = &config.Fraction{Numerator: int(f.Numerator)}
		if f.Denominator != nil {
			out.Fraction.Denominator = new(int(*f.Denominator))
		}
	}
	return out
}

// httpFilter converts a filter longhaul applies; ok is false for the
// others (CORS, ExternalAuth, ExtensionRef).
func httpFilter(f gwv1.HTTPRouteFilter) (config.HTTPFilter, bool) {
	out := config.HTTPFilter{Type: string(f.Type)}
	switch f.Type {
	case gwv1.HTTPRouteFilterRequestHeaderModifier:
		out.RequestHeaderModifier = headerModifier(f.RequestHeaderModifier)
	case gwv1.HTTPRouteFilterResponseHeaderModifier:
		out.ResponseHeaderModifier = headerModifier(f.ResponseHeaderModifier)
	case gwv1.HTTPRouteFilterRequestRedirect:
		rr := f.RequestRedirect
		if rr == nil {
			return out, false
		}
		out.RequestRedirect = &config.Redirect{Scheme: deref(rr.Scheme, ""), Hostname: deref(rr.Hostname, ""),
			Path: pathModifier(rr.Path), Port: num(rr.Port), StatusCode: num(rr.StatusCode)}
	case gwv1.HTTPRouteFilterURLRewrite:
		u := f.URLRewrite
		if u == nil {
			return out, false
		}
		out.URLRewrite = &config.Rewrite{Hostname: deref(u.Hostname, ""), Path: pathModifier(u.Path)}
	default:
		return out, false
	}
	return out, true
}

func headerModifier(h *gwv1.HTTPHeaderFilter) *config.HeaderModifier {
	if h == nil {
		return nil
	}
	out := &config.HeaderModifier{Remove: h.Remove}
	for _, x := range h.Set {
		out.Set = append(out.Set, config.Header{Name: string(x.Name), Value: x.Value})
	}
	for _, x := range h.Add {
		out.Add = append(out.Add, config.Header{Name: string(x.Name), Value: x.Value})
	}
	return out
}

func pathModifier(p *gwv1.HTTPPathModifier) *config.PathModifier {
	if p == nil {
		return nil
	}
	return &config.PathModifier{Type: string(p.Type), ReplaceFullPath: deref(p.ReplaceFullPath, ""), ReplacePrefixMatch: deref(p.ReplacePrefixMatch, "")}
}

// build makes the longhaul listener of one Gateway port from the routes
// attached to its Gateway listeners. A route the config validator refuses
// is left out (its parent status says why); ok is false when the listener
// itself cannot be built.
func (t *translator) build(lh *lhListener) (config.Listener, bool) {
	if lh.address == "" {
		lh.invalid = "the Gateway has no address"
		return config.Listener{}, false
	}
	// Routes in the API's order of precedence for ties: the oldest first,
	// then by "{namespace}/{name}". The data path breaks ties by name, so
	// each name starts with the route's rank.
	slices.SortStableFunc(lh.entries, func(a, b *entry) int {
		return cmp.Or(a.created.Compare(b.created.Time), compareKeys(a.parent.key, b.parent.key),
			strings.Compare(a.parent.kind, b.parent.kind), strings.Compare(a.section, b.section), cmp.Compare(a.parent.i, b.parent.i))
	})
	hasHTTP := slices.ContainsFunc(lh.entries, func(e *entry) bool { return e.http != nil })
	protocol := "http"
	switch {
	case lh.stream != "":
		protocol = "tcp"
	case !hasHTTP && len(lh.entries) > 0:
		protocol = "grpc"
	}

	l := t.p.Template
	l.Name = lh.name
	l.Address, l.Protocol, l.Endpoints, l.Backends, l.Routes = lh.address, protocol, config.Endpoints{}, nil, config.Routes{}
	l.HTTP.TLS = config.TLS{}
	if lh.tls {
		l.HTTP.TLS.Certificates = lh.certs
	}
	if protocol == "tcp" {
		l.HTTP = config.HTTP{}
	}

	// Backends are named in key order, so names do not depend on routes.
	all := map[string]config.Kubernetes{}
	for _, e := range lh.entries {
		for k, v := range e.backends {
			all[k] = v
		}
	}
	keys := make([]string, 0, len(all))
	for k := range all {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	names := newNamer()
	names.name(placeholderBackend, placeholderBackend) // reserved
	backend := func(key string) config.Backend {
		k := all[key]
		b := config.Backend{Name: names.name(key, k.Namespace, k.Service, strings.Split(key, "/")[2]),
			Endpoints: config.Endpoints{Kubernetes: &k}, Balance: t.p.Template.Balance, Drain: t.p.Template.Drain}
		if protocol == "http" && t.h2c[key] {
			b.Protocol = "h2c" // beside HTTP/1.1 backends on the port
		}
		return b
	}
	for _, k := range keys {
		backend(k)
	}

	rank := 0
	for _, e := range lh.entries {
		if len(e.unsupported) > 0 {
			e.invalid = "not supported: " + strings.Join(e.unsupported, ", ")
			continue
		}
		if e.tcp != nil && len(l.Routes.TCP) > 0 {
			// One TCPRoute serves a listener: the oldest. The others stay
			// attached and accepted, and serve if it goes.
			e.gl.attached++
			continue
		}
		rank++
		name := fmt.Sprintf("%06d-%s-%s-%s", rank, e.parent.key.Namespace, e.parent.key.Name, e.section)
		var refs []string
		one := l
		one.Backends = nil
		rename := func(bs []config.BackendRef) []config.BackendRef {
			out := make([]config.BackendRef, len(bs))
			for i, b := range bs {
				be := backend(b.Name)
				out[i] = config.BackendRef{Name: be.Name, Weight: b.Weight}
				if !slices.Contains(refs, b.Name) {
					refs = append(refs, b.Name)
					one.Backends = append(one.Backends, be)
				}
			}
			return out
		}
		switch {
		case e.http != nil:
			r := *e.http
			r.Name, r.ListenerHostname = name, e.gl.hostname
			r.Rules = renameRefs(r.Rules, func(x *config.HTTPRule) *[]config.BackendRef { return &x.Backends }, rename)
			for i := range r.Rules {
				r.Rules[i].Filters = slices.Clone(r.Rules[i].Filters)
				for j, f := range r.Rules[i].Filters {
					if f.RequestMirror != nil {
						m := *f.RequestMirror
						m.BackendRef.Name = rename([]config.BackendRef{{Name: m.BackendRef.Name}})[0].Name
						r.Rules[i].Filters[j].RequestMirror = &m
					}
				}
			}
			one.Routes = config.Routes{HTTP: []config.HTTPRoute{r}}
		case e.grpc != nil:
			r := *e.grpc
			r.Name, r.ListenerHostname = name, e.gl.hostname
			r.Rules = renameRefs(r.Rules, func(x *config.GRPCRule) *[]config.BackendRef { return &x.Backends }, rename)
			one.Routes = config.Routes{GRPC: []config.GRPCRoute{r}}
		case e.tcp != nil:
			r := *e.tcp
			r.Name = name
			r.Rules = renameRefs(r.Rules, func(x *config.TCPRule) *[]config.BackendRef { return &x.Backends }, rename)
			one.Routes = config.Routes{TCP: []config.TCPRoute{r}}
		default:
			r := *e.tls
			r.Name = name
			r.Rules = renameRefs(r.Rules, func(x *config.TLSRule) *[]config.BackendRef { return &x.Backends }, rename)
			one.Routes = config.Routes{TLS: []config.TLSRoute{r}}
		}
		check := one
		if len(check.Backends) == 0 { // a listener needs a backend: lend it one
			check.Backends = []config.Backend{placeholder(&t.p.Template)}
		}
		if err := validate(check); err != nil {
			e.invalid = err.Error()
			rank--
			continue
		}
		l.Routes.HTTP = append(l.Routes.HTTP, one.Routes.HTTP...)
		l.Routes.GRPC = append(l.Routes.GRPC, one.Routes.GRPC...)
		l.Routes.TCP = append(l.Routes.TCP, one.Routes.TCP...)
		l.Routes.TLS = append(l.Routes.TLS, one.Routes.TLS...)
		for _, b := range one.Backends {
			if !slices.ContainsFunc(l.Backends, func(x config.Backend) bool { return x.Name == b.Name }) {
				l.Backends = append(l.Backends, b)
			}
		}
		e.gl.attached++
	}
	if len(l.Routes.HTTP)+len(l.Routes.GRPC)+len(l.Routes.TCP)+len(l.Routes.TLS) == 0 {
		none := []config.BackendRef{{Name: placeholderBackend, Weight: new(0)}}
		switch lh.stream {
		case KindTCPRoute: // every connection is closed
			l.Routes.TCP = []config.TCPRoute{{Name: "no-routes", Rules: []config.TCPRule{{Backends: none}}}}
		case KindTLSRoute:
			l.Routes.TLS = []config.TLSRoute{{Name: "no-routes", Hostnames: []string{placeholderHost}, Rules: []config.TLSRule{{Backends: none}}}}
		default:
			l.Routes.HTTP = []config.HTTPRoute{{Name: "no-routes", Hostnames: []string{placeholderHost}, Rules: []config.HTTPRule{{Backends: none}}}}
		}
	}
	if len(l.Backends) == 0 {
		l.Backends = []config.Backend{placeholder(&t.p.Template)}
	}
	slices.SortFunc(l.Backends, func(a, b config.Backend) int { return strings.Compare(a.Name, b.Name) })
	if err := validate(l); err != nil {
		lh.invalid = err.Error()
		return l, false
	}
	return l, true
}

// renameRefs returns a copy of rules with each rule's backend references
// (refs says where they are) passed through rename.
func renameRefs[R any](rules []R, refs func(*R) *[]config.BackendRef, rename func([]config.BackendRef) []config.BackendRef) []R {
	out := slices.Clone(rules)
	for i := range out {
		b := refs(&out[i])
		*b = rename(*b)
	}
	return out
}

func placeholder(tmpl *config.Listener) config.Backend {
	return config.Backend{Name: placeholderBackend, Endpoints: config.Endpoints{Static: []string{placeholderEndpoint}},
		Balance: tmpl.Balance, Drain: tmpl.Drain}
}

// validate runs the configuration's validator on one listener, reporting
// its problems but those of the admin server it does not have.
func validate(l config.Listener) error {
	c := config.Default()
	c.Admin.Address = "" // not this listener's concern
	c.Listeners = []config.Listener{l}
	err := c.Validate()
	var ve *config.ValidationError
	if err == nil || !errors.As(err, &ve) {
		return err
	}
	var msgs []string
	for _, p := range ve.Problems {
		if strings.HasPrefix(p.Path, "admin") {
			continue
		}
		msgs = append(msgs, strings.TrimPrefix(p.Error(), "listeners[0]."))
	}
	if len(msgs) == 0 {
		return nil
	}
	return errors.New(strings.Join(msgs, "; "))
}

// settle completes a parent's conditions once its entries are judged.
func (ps *parentStatus) settle() {
	if ps.resolved.Type == "" {
		ps.resolved = cond(string(gwv1.RouteConditionResolvedRefs), true, string(gwv1.RouteReasonResolvedRefs), "", ps.gen)
	}
	if ps.accepted.Type != "" {
		return
	}
	var why []string
	for _, e := range ps.entries {
		if e.invalid == "" {
			ps.accepted = cond(string(gwv1.RouteConditionAccepted), true, string(gwv1.RouteReasonAccepted), "", ps.gen)
			return
		}
		if !slices.Contains(why, e.invalid) {
			why = append(why, e.invalid)
		}
	}
	ps.accepted = cond(string(gwv1.RouteConditionAccepted), false, string(gwv1.RouteReasonUnsupportedValue), strings.Join(why, "; "), ps.gen)
}

// gatewayStatus is the status of a Gateway once its listeners are built.
func (t *translator) gatewayStatus(g *gwState) gwv1.GatewayStatus {
	gen := g.gw.Generation
	st := gwv1.GatewayStatus{}
	switch {
	case g.addr == "":
	case t.p.StatusAddresses != nil:
		st.Addresses = t.p.StatusAddresses(g.gw)
	default:
		st.Addresses = []gwv1.GatewayStatusAddress{{Type: new(gwv1.IPAddressType), Value: g.addr}}
	}
	programmed := func(l *gwListener) (bool, gwv1.ListenerConditionReason, string) {
		switch {
		case !l.valid:
			return false, gwv1.ListenerReasonInvalid, l.invalidMsg
		case g.accepted.Status != metav1.ConditionTrue:
			return false, gwv1.ListenerReasonInvalid, "the Gateway is not accepted"
		case l.lh == nil:
			return false, gwv1.ListenerReasonPending, "the Gateway has no address"
		case l.lh.invalid != "":
			return false, gwv1.ListenerReasonInvalid, l.lh.invalid
		}
		err, ok := t.p.Applied[l.lh.name]
		switch {
		case !ok:
			return false, gwv1.ListenerReasonPending, "waiting for the data path"
		case err != nil:
			return false, gwv1.ListenerReasonInvalid, err.Error()
		}
		return true, gwv1.ListenerReasonProgrammed, ""
	}
	all, some := true, false
	var why string
	for _, l := range g.listeners {
		ok, reason, msg := programmed(l)
		if l.valid {
			all = all && ok
			some = some || ok
			if !ok && why == "" {
				why = msg
			}
		}
		kinds := l.kinds
		if l.accepted.Status != metav1.ConditionTrue {
			kinds = []gwv1.RouteGroupKind{} // a listener not accepted supports nothing
		}
		st.Listeners = append(st.Listeners, gwv1.ListenerStatus{
			Name: l.spec.Name, SupportedKinds: kinds, AttachedRoutes: l.attached,
			Conditions: []metav1.Condition{l.accepted, cond(string(gwv1.ListenerConditionProgrammed), ok, string(reason), msg, gen), l.resolved, l.conflict},
		})
	}
	var prog metav1.Condition
	switch {
	case g.accepted.Status != metav1.ConditionTrue:
		prog = cond(string(gwv1.GatewayConditionProgrammed), false, string(gwv1.GatewayReasonInvalid), "the Gateway is not accepted", gen)
	case g.addr == "":
		prog = cond(string(gwv1.GatewayConditionProgrammed), false, string(gwv1.GatewayReasonAddressNotAssigned), "no address could be assigned", gen)
	case all && some:
		prog = cond(string(gwv1.GatewayConditionProgrammed), true, string(gwv1.GatewayReasonProgrammed), "", gen)
	case strings.HasPrefix(why, "waiting"):
		prog = cond(string(gwv1.GatewayConditionProgrammed), false, string(gwv1.GatewayReasonPending), why, gen)
	default:
		prog = cond(string(gwv1.GatewayConditionProgrammed), false, string(gwv1.GatewayReasonInvalid), why, gen)
	}
	st.Conditions = []metav1.Condition{g.accepted, prog}
	return st
}

// supportedVersion is the SupportedVersion condition for the CRDs found:
// true when every CRD the controller reads is of BundleVersion's minor
// version.
func supportedVersion(found map[string]string, gen int64) metav1.Condition {
	minor := func(v string) string {
		parts := strings.SplitN(v, ".", 3)
		if len(parts) < 2 {
			return v
		}
		return parts[0] + "." + parts[1]
	}
	var off []string
	for _, name := range CRDs {
		v, ok := found[name]
		switch {
		case !ok:
			off = append(off, name+" (not installed)")
		case minor(v) != minor(BundleVersion):
			off = append(off, fmt.Sprintf("%s (%q)", name, v))
		}
	}
	typ := string(gwv1.GatewayClassConditionStatusSupportedVersion)
	if len(off) > 0 {
		return cond(typ, false, string(gwv1.GatewayClassReasonUnsupportedVersion),
			fmt.Sprintf("supported: Gateway API %s.x; found %s", minor(BundleVersion), strings.Join(off, ", ")), gen)
	}
	return cond(typ, true, string(gwv1.GatewayClassReasonSupportedVersion), "Gateway API "+minor(BundleVersion)+".x", gen)
}

func cond(typ string, status bool, reason, msg string, gen int64) metav1.Condition {
	s := metav1.ConditionFalse
	if status {
		s = metav1.ConditionTrue
	}
	if msg == "" {
		msg = reason
	}
	return metav1.Condition{Type: typ, Status: s, Reason: reason, Message: msg, ObservedGeneration: gen}
}

func deref[T ~string](p *T, def T) string {
	if p == nil {
		return string(def)
	}
	return string(*p)
}

func num[T ~int | ~int32](p *T) int {
	if p == nil {
		return 0
	}
	return int(*p)
}

// compareMeta orders objects as the API breaks ties: the oldest first,
// then by "{namespace}/{name}".
func compareMeta(a, b *metav1.ObjectMeta) int {
	return cmp.Or(a.CreationTimestamp.Compare(b.CreationTimestamp.Time),
		compareKeys(types.NamespacedName{Namespace: a.Namespace, Name: a.Name}, types.NamespacedName{Namespace: b.Namespace, Name: b.Name}))
}

func compareKeys(a, b types.NamespacedName) int {
	return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
}
