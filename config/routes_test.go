package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/longhaul-proxy/longhaul/proxy/route"
)

const routedYAML = `
listeners:
  - name: gw
    address: 127.0.0.1:8080
    protocol: http
    balance: {policy: least-connections}
    drain: {timeout: 10s}
    backends:
      - {name: cart, endpoints: {static: ["127.0.0.1:7101"]}}
      - {name: web, endpoints: {static: ["127.0.0.1:7201"]}, balance: {policy: maglev, key: "header:X-User"}, drain: {window: 2s}}
    routes:
      http:
        - name: shop
          hostnames: [shop.example.com, "*.shop.example.com"]
          rules:
            - matches: [{path: {type: PathPrefix, value: /cart}}]
              filters:
                - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Route, value: cart}], remove: [X-Debug]}}
                - {type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}
                - {type: RequestMirror, requestMirror: {backendRef: {name: web}, percent: 25}}
                - {type: RequestMirror, requestMirror: {backendRef: {name: cart}, fraction: {numerator: 1}}}
              backendRefs: [{name: cart}]
            - backendRefs: [{name: web, weight: 3}, {name: cart, weight: 0}]
            - matches: [{path: {type: Exact, value: /checkout}, method: POST}]
              backendRefs: [{name: cart}]
      grpc:
        - name: rpc
          rules:
            - matches: [{method: {service: shop.Cart}}]
              backendRefs: [{name: cart}]
`

func TestRoutesParse(t *testing.T) {
	c, err := Parse([]byte(routedYAML))
	if err != nil {
		t.Fatal(err)
	}
	l := c.Listeners[0]
	if !l.HasRoutes() || len(l.Backends) != 2 || len(l.Routes.HTTP) != 1 || len(l.Routes.GRPC) != 1 {
		t.Fatalf("listener %+v", l)
	}
	cart, web := l.Backends[0], l.Backends[1]
	// Backends start from the listener's balance and drain.
	if cart.Balance.Policy != "least-connections" || cart.Balance.BoundedLoad != 0 || cart.Drain.Timeout.String() != "10s" || cart.Drain.Rebalance.Factor != DefaultRebalanceFactor {
		t.Errorf("cart backend %+v, want the listener's balance and drain", cart)
	}
	if web.Balance.Policy != "maglev" || web.Balance.BoundedLoad != DefaultBoundedLoad || web.Balance.Key != "header:X-User" ||
		web.Drain.Window.String() != "2s" || web.Drain.Timeout.String() != "10s" || web.Drain.Rebalance.Factor != 0 {
		t.Errorf("web backend %+v, want maglev with its own defaults, its window and the listener's timeout", web)
	}
	spec := RouteSpec(&l, func(n string) string { return n })
	r := spec.HTTP[0].Rules
	if len(r) != 3 || r[0].Backends[0].Ref != "cart" || r[0].Backends[0].Weight != 1 || r[1].Backends[0].Weight != 3 || r[1].Backends[1].Weight != 0 {
		t.Errorf("rules %+v", r)
	}
	if f := r[0].Filters[1].URLRewrite; f == nil || f.Path.Value != "/" {
		t.Errorf("rewrite %+v", f)
	}
	if m := r[0].Filters[2].RequestMirror; m == nil || m.Backend != "web" || m.Percent == nil || *m.Percent != 25 || m.Fraction != nil {
		t.Errorf("first mirror %+v", m)
	}
	// The fraction's denominator defaults to 100, as the API's does.
	if m := r[0].Filters[3].RequestMirror; m == nil || m.Backend != "cart" || m.Percent != nil || m.Fraction == nil || *m.Fraction != (route.Fraction{Numerator: 1, Denominator: 100}) {
		t.Errorf("second mirror %+v", m)
	}
}

func TestRoutesValidate(t *testing.T) {
	for name, c := range map[string]struct {
		edit string // replaced in routedYAML
		with string
		want []string
	}{
		"unknown backend": {"backendRefs: [{name: cart}]\n            - backendRefs", "backendRefs: [{name: carts}]\n            - backendRefs",
			[]string{`listeners[0].routes.http[0].rules[0].backendRefs[0].name: "carts": names no backend of the listener`}},
		"duplicate backend": {"{name: web, endpoints", "{name: cart, endpoints", []string{`listeners[0].backends[1].name: "cart": duplicate backend name`}},
		"backend without endpoints": {`{name: cart, endpoints: {static: ["127.0.0.1:7101"]}}`, `{name: cart}`,
			[]string{"listeners[0].backends[0].endpoints: must set one of static, file, kubernetes"}},
		"listener endpoints too": {"protocol: http\n", "protocol: http\n    endpoints: {static: [\"127.0.0.1:1\"]}\n",
			[]string{"listeners[0].endpoints: must be left out with routes: each backend has its own"}},
		"tcp":        {"protocol: http\n", "protocol: tcp\n", []string{"listeners[0].routes: need protocol http or grpc"}},
		"bad weight": {"weight: 3", "weight: -2", []string{"listeners[0].routes.http[0].rules[1].backendRefs[0].weight: -2: must be from 0 to 1000000"}},
		"bad path and regex": {"{path: {type: Exact, value: /checkout}, method: POST}", "{path: {type: RegularExpression, value: \"(\"}, method: FETCH}",
			[]string{"regular expression", `method "FETCH"`}},
		"mirror": {"{backendRef: {name: web}, percent: 25}", "{backendRef: {name: webs}, percent: 101, fraction: {numerator: 3, denominator: 0}}",
			[]string{
				`listeners[0].routes.http[0].rules[0].filters[2].requestMirror.backendRef.name: "webs": names no backend of the listener`,
				"listeners[0].routes.http[0].rules[0].filters[2].requestMirror.percent: 101: must be from 0 to 100",
				"listeners[0].routes.http[0].rules[0].filters[2].requestMirror: percent and fraction exclude each other",
				"listeners[0].routes.http[0].rules[0].filters[2].requestMirror.fraction.denominator: 0: must be above 0",
			}},
		"mirror fraction": {"{backendRef: {name: cart}, fraction: {numerator: 1}}", "{backendRef: {}, fraction: {numerator: 101}}",
			[]string{
				"listeners[0].routes.http[0].rules[0].filters[3].requestMirror.backendRef.name: is required",
				"listeners[0].routes.http[0].rules[0].filters[3].requestMirror.fraction.numerator: 101: must be from 0 to the denominator (100)",
			}},
		"mirror on a relayed listener": {"protocol: http\n", "protocol: grpc\n",
			[]string{"listeners[0].routes.http[0].rules[0].filters: are not supported yet on a listener that relays HTTP/2 (protocol grpc or http.upstream h2c), RequestMirror included"}},
		"mirror on a gRPC rule": {"- matches: [{method: {service: shop.Cart}}]\n", "- matches: [{method: {service: shop.Cart}}]\n              filters: [{type: RequestMirror}]\n",
			[]string{`listeners[0].routes.grpc[0].rules[0].filters[0].type: "RequestMirror": is not supported on gRPC routes: gRPC calls are not mirrored`}},
		"affinity": {"protocol: http\n", "protocol: http\n    http: {affinity: connection}\n",
			[]string{`listeners[0].http.affinity: "connection": is not supported with routes yet`}},
	} {
		t.Run(name, func(t *testing.T) { checkEdit(t, routedYAML, c.edit, c.with, c.want) })
	}
}

func TestGatewayConfig(t *testing.T) {
	c, err := Parse([]byte("gateway: {class: longhaul, address: 127.0.0.9, statusAddresses: [gw.example.com]}\n"))
	if err != nil {
		t.Fatalf("gateway without listeners: %v", err)
	}
	if c.Gateway.Class != "longhaul" || c.Gateway.Address != "127.0.0.9" || len(c.Listeners) != 0 {
		t.Errorf("gateway %+v", c.Gateway)
	}
	_, err = Parse([]byte("gateway: {class: Bad_Class, address: nowhere}\n"))
	if _, err := Parse([]byte("gateway: {class: longhaul, address: 127.1.0.0/16}\n")); err != nil {
		t.Errorf("a prefix: %v", err)
	}
	if _, err := Parse([]byte(`gateway: {class: "*"}` + "\n")); err != nil {
		t.Errorf("every class: %v", err)
	}
	if _, err := Parse([]byte("gateway: {class: longhaul, address: 127.1.0.1/32}\n")); err == nil {
		t.Error("a /32 accepted as a prefix")
	}
	for _, want := range []string{`gateway.class: "Bad_Class": must be a GatewayClass name`, `gateway.address: "nowhere": must be an IP address`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad gateway: %v, want %q", err, want)
		}
	}
}

const streamYAML = `
listeners:
  - name: edge
    address: 127.0.0.1:8443
    protocol: tcp
    balance: {key: client-ip-port}
    drain: {tcp: immediate}
    backends:
      - {name: shop, endpoints: {static: ["127.0.0.1:7301"]}}
      - {name: blog, endpoints: {static: ["127.0.0.1:7401"]}, balance: {policy: least-connections}}
    routes:
      tls:
        - name: shop
          hostnames: [shop.example.com, "*.shop.example.com"]
          rules: [{backendRefs: [{name: shop}]}]
        - name: rest
          rules: [{backendRefs: [{name: blog, weight: 2}, {name: shop, weight: 0}]}]
  - name: db
    address: 127.0.0.1:5432
    protocol: tcp
    backends:
      - {name: primary, endpoints: {static: ["127.0.0.1:7501"]}}
      - {name: canary, endpoints: {static: ["127.0.0.1:7601"]}}
    routes:
      tcp:
        - name: db
          rules: [{backendRefs: [{name: primary, weight: 3}, {name: canary, weight: 1}]}]
`

func TestStreamRoutesParse(t *testing.T) {
	c, err := Parse([]byte(streamYAML))
	if err != nil {
		t.Fatal(err)
	}
	edge, db := c.Listeners[0], c.Listeners[1]
	if !edge.HasRoutes() || !db.HasRoutes() || len(edge.Routes.TLS) != 2 || len(db.Routes.TCP) != 1 {
		t.Fatalf("listeners %+v\n%+v", edge, db)
	}
	if b := edge.Backends[1]; b.Balance.Policy != "least-connections" || b.Balance.Key != "client-ip-port" || b.Drain.TCP != "immediate" {
		t.Errorf("blog backend %+v, want the listener's key and drain with its own policy", b)
	}
	spec := RouteSpec(&edge, func(n string) string { return n })
	if len(spec.TLS) != 2 || spec.TLS[0].Name != "shop" || spec.TLS[0].Namespace != "edge" || len(spec.TLS[0].Hostnames) != 2 ||
		spec.TLS[1].Rules[0].Backends[0].Weight != 2 || spec.TLS[1].Rules[0].Backends[1].Weight != 0 {
		t.Errorf("tls spec %+v", spec.TLS)
	}
	spec = RouteSpec(&db, func(n string) string { return n })
	if len(spec.TCP) != 1 || len(spec.TCP[0].Rules[0].Backends) != 2 || spec.TCP[0].Rules[0].Backends[0].Weight != 3 {
		t.Errorf("tcp spec %+v", spec.TCP)
	}
}

// TestStreamRoutesValidate: each problem of TCP and TLS routes is named,
// all of them at once.
func TestStreamRoutesValidate(t *testing.T) {
	for name, c := range map[string]struct {
		edit, with string // replaced in streamYAML
		want       []string
	}{
		"protocol": {"8443\n    protocol: tcp", "8443\n    protocol: http",
			[]string{"listeners[0].routes: tcp and tls routes need protocol tcp"}},
		"two tcp routes": {"        - name: db\n", "        - name: other\n          rules: [{backendRefs: [{name: primary}]}]\n        - name: db\n",
			[]string{`listeners[1].routes: tcproute "db/db": a listener takes one TCPRoute, and "db/other" is attached to it already`}},
		"tcp and tls": {"      tcp:\n", "      tls: [{name: t, rules: [{backendRefs: [{name: canary}]}]}]\n      tcp:\n",
			[]string{`listeners[1].routes: tcproute "db/db" and tlsroute "db/t": a listener takes TCPRoutes or TLSRoutes, not both`}},
		"http beside": {"      tcp:\n", "      http: [{name: h, rules: [{backendRefs: [{name: canary}]}]}]\n      tcp:\n",
			[]string{"listeners[1].routes: need protocol http or grpc", "listeners[1].routes: a listener of TCPRoutes or TLSRoutes (connections) takes no HTTPRoute or GRPCRoute"}},
		"refs, weights, hostnames": {"[{name: primary, weight: 3}, {name: canary, weight: 1}]", "[{name: primry, weight: 3}, {name: canary, weight: -1}]",
			[]string{`listeners[1].routes.tcp[0].rules[0].backendRefs[0].name: "primry": names no backend of the listener`,
				"listeners[1].routes.tcp[0].rules[0].backendRefs[1].weight: -1: must be from 0 to 1000000"}},
		"tls hostname and ref": {`[shop.example.com, "*.shop.example.com"]`, `[Shop.Example.com, "*.shop.example.com"]`,
			[]string{`listeners[0].routes: tlsroute "edge/shop": hostname "Shop.Example.com"`}},
		"http key": {"balance: {key: client-ip-port}", "balance: {key: \"header:X-User\"}",
			[]string{`listeners[0].backends[0].balance.key: "header:X-User": must be one of client-ip, client-ip-port`}},
	} {
		t.Run(name, func(t *testing.T) { checkEdit(t, streamYAML, c.edit, c.with, c.want) })
	}
	// Problems of both listeners, reported together.
	in := strings.Replace(strings.Replace(streamYAML, "name: primary, weight: 3", "name: primry, weight: 3", 1), "rules: [{backendRefs: [{name: shop}]}]", "rules: [{backendRefs: [{name: shops}]}]", 1)
	_, err := Parse([]byte(in))
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 2 {
		t.Errorf("Parse: %v, want 2 problems", err)
	}
}

// checkEdit replaces edit with with in base (once, and it must be there)
// and wants Parse to refuse the result with a ValidationError naming each
// of want.
func checkEdit(t *testing.T, base, edit, with string, want []string) {
	t.Helper()
	in := strings.Replace(base, edit, with, 1)
	if in == base {
		t.Fatalf("edit %q not found", edit)
	}
	_, err := Parse([]byte(in))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Parse: %v, want a ValidationError", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q\nlacks %q", err, w)
		}
	}
}
