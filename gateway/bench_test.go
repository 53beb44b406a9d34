package gateway

import (
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// BenchmarkTranslate translates one Gateway with n HTTPRoutes, each to a
// Service of its own: the cost of one change, off the data path.
func BenchmarkTranslate(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			objs := base()
			objs.Gateways = []*gwv1.Gateway{gateway("app", "gw", httpL("http", 80, ""))}
			for i := range n {
				name := fmt.Sprintf("svc-%d", i)
				objs.Services = append(objs.Services, svc("app", name, port("http", 80, intstr.FromInt32(8080))))
				r := rule(ref("", name, 80, -1))
				r.Matches = []gwv1.HTTPRouteMatch{{Path: &gwv1.HTTPPathMatch{Type: new(gwv1.PathMatchPathPrefix), Value: new(fmt.Sprintf("/p%d", i))}}}
				objs.HTTPRoutes = append(objs.HTTPRoutes, hroute("app", fmt.Sprintf("r%d", i), i, parents(parent{name: "gw"}), []string{fmt.Sprintf("h%d.example.com", i%10)}, r))
			}
			p := params()
			b.ReportAllocs()
			for b.Loop() {
				res := Translate(objs, p)
				if len(res.Listeners) != 1 || len(res.Listeners[0].Routes.HTTP) != n {
					b.Fatalf("%d listeners", len(res.Listeners))
				}
			}
		})
	}
}
