package gateway

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/longhaul-proxy/longhaul/internal/testcert"
)

func httpsL(name string, port gwv1.PortNumber, host string, refs ...gwv1.SecretObjectReference) gwv1.Listener {
	l := httpL(name, port, host)
	l.Protocol = gwv1.HTTPSProtocolType
	l.TLS = &gwv1.ListenerTLSConfig{CertificateRefs: refs}
	return l
}

func secretRef(ns, name string) gwv1.SecretObjectReference {
	r := gwv1.SecretObjectReference{Name: gwv1.ObjectName(name)}
	if ns != "" {
		r.Namespace = new(gwv1.Namespace(ns))
	}
	return r
}

func tlsSecret(ns, name string, crt, key []byte) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key}}
}

// TestTranslateHTTPS: HTTPS listeners terminate TLS with the certificates
// their refs name, one per listener hostname on the shared port; a ref
// that does not resolve sets ResolvedRefs false with the API's reason, and
// a listener left without a certificate is accepted but not programmed.
func TestTranslateHTTPS(t *testing.T) {
	def := testcert.New(t, "default", "example.org")
	second := testcert.New(t, "second", "second.example.org")
	o := base()
	wrongGroup := secretRef("", "cert")
	wrongGroup.Group = new(gwv1.Group("wrong.example.com"))
	wrongKind := secretRef("", "cert")
	wrongKind.Kind = new(gwv1.Kind("ConfigMap"))
	o.Gateways = []*gwv1.Gateway{
		gateway("app", "gw", httpsL("https", 443, "", secretRef("", "cert")),
			httpsL("second", 443, "second.example.org", secretRef("other", "second")),
			httpsL("denied", 443, "denied.example.org", secretRef("other", "private")),
			httpsL("partial", 443, "partial.example.org", secretRef("", "missing"), secretRef("", "cert")),
			httpL("plain", 443, "plain.example.org")),
		gateway("app", "bad", httpsL("missing", 443, "", secretRef("", "missing")),
			httpsL("malformed", 444, "", secretRef("", "malformed")),
			httpsL("group", 445, "", wrongGroup), httpsL("kind", 446, "", wrongKind)),
	}
	o.Secrets = []*corev1.Secret{
		tlsSecret("app", "cert", def.CertPEM, def.KeyPEM),
		tlsSecret("other", "second", second.CertPEM, second.KeyPEM),
		tlsSecret("other", "private", second.CertPEM, second.KeyPEM),
		tlsSecret("app", "malformed", []byte("Hello world\n"), []byte("Hello world\n")),
	}
	g := grant("other", "app", "Gateway", "second")
	g.Spec.To[0].Kind = "Secret"
	notForGateways := grant("other", "app", KindHTTPRoute, "private") // a grant to routes does not cover Gateways
	notForGateways.Name = "routes"
	notForGateways.Spec.To[0].Kind = "Secret"
	o.ReferenceGrants = []*gwv1.ReferenceGrant{g, notForGateways}
	o.HTTPRoutes = []*gwv1.HTTPRoute{
		hroute("app", "r", 0, parents(parent{name: "gw"}), []string{"example.org", "second.example.org"}, rule(ref("", "web", 80, -1))),
		hroute("app", "to-missing", 0, parents(parent{name: "bad", section: "missing"}), nil, rule(ref("", "web", 80, -1))),
	}
	p := params()
	p.Applied = map[string]error{"gw-app-gw-443": nil}
	res := Translate(o, p)

	if len(res.Listeners) != 1 {
		t.Fatalf("%d listeners, want gw's port 443 only: %+v", len(res.Listeners), res.Listeners)
	}
	l := res.Listeners[0]
	var hosts []string
	for _, c := range l.HTTP.TLS.Certificates {
		hosts = append(hosts, strings.Join(c.Hostnames, ","))
	}
	if !slices.Equal(hosts, []string{"", "second.example.org", "partial.example.org"}) {
		t.Errorf("certificate hostnames %q", hosts)
	}
	if c := l.HTTP.TLS.Certificates; len(c) == 3 && (c[0].CertPEM != string(def.CertPEM) || c[1].CertPEM != string(second.CertPEM) || c[2].CertPEM != string(def.CertPEM)) {
		t.Error("a listener serves another listener's certificate")
	}
	if err := validate(l); err != nil {
		t.Errorf("the HTTPS listener does not validate: %v", err)
	}

	programmed := want{"Programmed", metav1.ConditionTrue, "Programmed"}
	notProgrammed := want{"Programmed", metav1.ConditionFalse, "Invalid"}
	for _, c := range []struct {
		gw, listener string
		ws           []want
	}{
		{"gw", "https", []want{acc, programmed, {"ResolvedRefs", metav1.ConditionTrue, "ResolvedRefs"}}},
		{"gw", "second", []want{acc, programmed, {"ResolvedRefs", metav1.ConditionTrue, "ResolvedRefs"}}},
		{"gw", "denied", []want{acc, notProgrammed, {"ResolvedRefs", metav1.ConditionFalse, "RefNotPermitted"}}},
		{"gw", "partial", []want{acc, programmed, {"ResolvedRefs", metav1.ConditionFalse, "InvalidCertificateRef"}}},
		{"gw", "plain", []want{{"Accepted", metav1.ConditionFalse, "ProtocolConflict"}, {"Conflicted", metav1.ConditionTrue, "ProtocolConflict"}}},
		{"bad", "missing", []want{acc, notProgrammed, {"ResolvedRefs", metav1.ConditionFalse, "InvalidCertificateRef"}}},
		{"bad", "malformed", []want{acc, notProgrammed, {"ResolvedRefs", metav1.ConditionFalse, "InvalidCertificateRef"}}},
		{"bad", "group", []want{acc, notProgrammed, {"ResolvedRefs", metav1.ConditionFalse, "InvalidCertificateRef"}}},
		{"bad", "kind", []want{acc, notProgrammed, {"ResolvedRefs", metav1.ConditionFalse, "InvalidCertificateRef"}}},
	} {
		ls := listenerStatus(t, res, "app", c.gw, c.listener)
		if err := conditionsAreNoTime(ls.Conditions, 3, c.ws...); err != nil {
			t.Errorf("listener %s/%s: %v", c.gw, c.listener, err)
		}
		if c.listener != "plain" && !slices.ContainsFunc(ls.SupportedKinds, func(k gwv1.RouteGroupKind) bool { return k.Kind == KindHTTPRoute }) {
			t.Errorf("listener %s/%s: supportedKinds %+v", c.gw, c.listener, ls.SupportedKinds)
		}
	}
	if n := listenerStatus(t, res, "app", "gw", "second").AttachedRoutes; n != 1 {
		t.Errorf("second: attachedRoutes %d, want 1", n)
	}
	// A listener accepted without a certificate still takes routes.
	if n := listenerStatus(t, res, "app", "bad", "missing").AttachedRoutes; n != 1 {
		t.Errorf("missing: attachedRoutes %d, want 1", n)
	}
	if n := listenerStatus(t, res, "app", "gw", "denied").AttachedRoutes; n != 0 {
		t.Errorf("denied: attachedRoutes %d, want 0", n)
	}
	// A Gateway whose listeners are accepted but have no certificate is
	// accepted and not programmed.
	if err := conditionsAreNoTime(gwStatus(res, "app", "bad").Conditions, 3, acc, want{"Programmed", metav1.ConditionFalse, "Invalid"}); err != nil {
		t.Errorf("Gateway bad: %v", err)
	}
	if err := conditionsAreNoTime(gwStatus(res, "app", "gw").Conditions, 3, want{"Accepted", metav1.ConditionTrue, "ListenersNotValid"}); err != nil {
		t.Errorf("Gateway gw: %v", err)
	}
	ls := listenerStatus(t, res, "app", "gw", "denied")
	if i := slices.IndexFunc(ls.Conditions, func(c metav1.Condition) bool { return c.Type == "ResolvedRefs" }); !strings.Contains(ls.Conditions[i].Message, "no ReferenceGrant in other") {
		t.Errorf("denied: message %q", ls.Conditions[i].Message)
	}

	// The Secret rotated: the listener carries the new pair.
	rotated := testcert.New(t, "rotated", "example.org")
	o.Secrets[0] = tlsSecret("app", "cert", rotated.CertPEM, rotated.KeyPEM)
	if got := Translate(o, p).Listeners[0].HTTP.TLS.Certificates[0].CertPEM; got != string(rotated.CertPEM) {
		t.Error("a rotated Secret did not reach the listener")
	}
}
