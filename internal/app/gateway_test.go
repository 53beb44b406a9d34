package app

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/gateway"
	"github.com/longhaul-proxy/longhaul/internal/testnet"
)

// TestGatewayTranslationServes runs the listeners gateway.Translate makes
// of Gateway API objects (their Kubernetes endpoints replaced by static
// ones on loopback) and sends requests through them: routes narrowed to
// their Gateway listener's hostname, a route whose Service is missing
// answered 500, a host no route serves 404, and a Gateway without routes
// listening and answering 404.
func TestGatewayTranslationServes(t *testing.T) {
	web, other := routeBackend(t, "web-0"), routeBackend(t, "other-0")
	portOf := func(addr string) gwv1.PortNumber {
		_, p, _ := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(p)
		return gwv1.PortNumber(n)
	}
	p1, p2 := portOf(testnet.FreeAddr(t)), portOf(testnet.FreeAddr(t))
	meta := func(ns, name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: ns, Name: name, Generation: 1}
	}
	listener := func(name string, port gwv1.PortNumber, host string) gwv1.Listener {
		l := gwv1.Listener{Name: gwv1.SectionName(name), Port: port, Protocol: gwv1.HTTPProtocolType}
		if host != "" {
			h := gwv1.Hostname(host)
			l.Hostname = &h
		}
		return l
	}
	route := func(name, section string, hosts []gwv1.Hostname, svc string) *gwv1.HTTPRoute {
		port := gwv1.PortNumber(80)
		ref := gwv1.ParentReference{Name: "gw"}
		if section != "" {
			s := gwv1.SectionName(section)
			ref.SectionName = &s
		}
		return &gwv1.HTTPRoute{ObjectMeta: meta("app", name), Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{ref}},
			Hostnames:       hosts,
			Rules: []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{
				BackendObjectReference: gwv1.BackendObjectReference{Name: gwv1.ObjectName(svc), Port: &port}}}}}},
		}}
	}
	svc := func(name string) *corev1.Service {
		return &corev1.Service{ObjectMeta: meta("app", name), Spec: corev1.ServiceSpec{
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}}}
	}
	objs := gateway.Objects{
		Classes: []*gwv1.GatewayClass{{ObjectMeta: metav1.ObjectMeta{Name: "lh"}, Spec: gwv1.GatewayClassSpec{ControllerName: "longhaul.dev/gateway"}}},
		Gateways: []*gwv1.Gateway{
			{ObjectMeta: meta("app", "gw"), Spec: gwv1.GatewaySpec{GatewayClassName: "lh", Listeners: []gwv1.Listener{
				listener("foo", p1, "foo.example.com"), listener("wild", p1, "*.example.com")}}},
			{ObjectMeta: meta("app", "empty"), Spec: gwv1.GatewaySpec{GatewayClassName: "lh", Listeners: []gwv1.Listener{listener("http", p2, "")}}},
		},
		HTTPRoutes: []*gwv1.HTTPRoute{
			route("foo-only", "foo", nil, "web"),
			route("bar", "wild", []gwv1.Hostname{"bar.example.com", "bar.example.org"}, "other"),
			route("broken", "wild", []gwv1.Hostname{"broken.example.com"}, "absent"),
		},
		Services: []*corev1.Service{svc("web"), svc("other")},
	}
	res := gateway.Translate(objs, gateway.Params{
		ControllerName: "longhaul.dev/gateway",
		Address:        func(*gwv1.Gateway) string { return "127.0.0.1" },
		Template:       gateway.DefaultTemplate(),
	})
	if len(res.Listeners) != 2 {
		t.Fatalf("%d listeners, want 2", len(res.Listeners))
	}
	static := map[string]string{"web": web, "other": other}
	for i := range res.Listeners {
		for j := range res.Listeners[i].Backends {
			b := &res.Listeners[i].Backends[j]
			if k := b.Endpoints.Kubernetes; k != nil {
				b.Endpoints = config.Endpoints{Static: []string{static[k.Service]}}
			}
		}
	}
	cfg := config.Default()
	cfg.Admin.Address = testnet.FreeAddr(t)
	cfg.Log.Level = "warn"
	cfg.Listeners = res.Listeners
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("Run did not return")
		}
	})
	waitReady(t, a)

	client := &http.Client{Timeout: 5 * time.Second}
	t.Cleanup(client.CloseIdleConnections)
	for _, c := range []struct {
		port gwv1.PortNumber
		host string
		code int
		body string
	}{
		{p1, "foo.example.com", 200, "web-0 / "},
		{p1, "bar.example.com", 200, "other-0 / "},
		{p1, "bar.example.org", 404, ""}, // outside its listener's *.example.com
		{p1, "baz.example.com", 404, ""},
		{p1, "broken.example.com", 500, ""},
		{p2, "any.example.com", 404, ""},
		{p2, "no-route.invalid", 500, ""}, // the placeholder: weight 0, never dialled
	} {
		req, _ := http.NewRequest("GET", "http://127.0.0.1:"+strconv.Itoa(int(c.port))+"/", nil)
		req.Host = c.host
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", c.host, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.code || (c.body != "" && string(b) != c.body) {
			t.Errorf("GET %s on port %d: %d %q, want %d %q", c.host, c.port, resp.StatusCode, b, c.code, c.body)
		}
	}
}
