package gateway_test

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/longhaul-proxy/longhaul/gateway"
)

// A Gateway with one HTTP listener and an HTTPRoute to a Service become
// one listener with a backend of the Service's endpoints.
func ExampleTranslate() {
	port := gwv1.PortNumber(80)
	objs := gateway.Objects{
		Classes: []*gwv1.GatewayClass{{ObjectMeta: metav1.ObjectMeta{Name: "longhaul"},
			Spec: gwv1.GatewayClassSpec{ControllerName: "longhaul.dev/gateway"}}},
		Gateways: []*gwv1.Gateway{{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
			Spec: gwv1.GatewaySpec{GatewayClassName: "longhaul", Listeners: []gwv1.Listener{
				{Name: "http", Port: 8080, Protocol: gwv1.HTTPProtocolType}}}}},
		HTTPRoutes: []*gwv1.HTTPRoute{{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"},
			Spec: gwv1.HTTPRouteSpec{
				CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: "web"}}},
				Hostnames:       []gwv1.Hostname{"shop.example.com"},
				Rules: []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{
					BackendObjectReference: gwv1.BackendObjectReference{Name: "cart", Port: &port}}}}}},
			}}},
		Services: []*corev1.Service{{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "grpc", Port: 80}}}}},
	}
	res := gateway.Translate(objs, gateway.Params{
		ControllerName: "longhaul.dev/gateway",
		Address:        func(*gwv1.Gateway) string { return "127.0.0.1" },
		Template:       gateway.DefaultTemplate(),
	})
	for _, l := range res.Listeners {
		fmt.Println(l.Name, l.Address, l.Protocol)
		for _, b := range l.Backends {
			k := b.Endpoints.Kubernetes
			fmt.Printf("  backend %s: %s/%s port %s\n", b.Name, k.Namespace, k.Service, k.Port)
		}
		for _, r := range l.Routes.HTTP {
			fmt.Printf("  route %s %v -> %s\n", r.Name, r.Hostnames, r.Rules[0].Backends[0].Name)
		}
	}
	for _, p := range res.Routes[gateway.KindHTTPRoute][types.NamespacedName{Namespace: "shop", Name: "cart"}] {
		for _, c := range p.Conditions {
			fmt.Printf("route shop/cart on %s: %s %s (%s)\n", p.ParentRef.Name, c.Type, c.Status, c.Reason)
		}
	}
	// Output:
	// gw-shop-web-8080 127.0.0.1:8080 http
	//   backend shop-cart-80: shop/cart port grpc
	//   route 000001-shop-cart-http [shop.example.com] -> shop-cart-80
	// route shop/cart on web: Accepted True (Accepted)
	// route shop/cart on web: ResolvedRefs True (ResolvedRefs)
}
