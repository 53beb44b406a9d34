package config

import (
	"errors"
	"strings"
	"testing"
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
		"affinity": {"protocol: http\n", "protocol: http\n    http: {affinity: connection}\n",
			[]string{`listeners[0].http.affinity: "connection": is not supported with routes yet`}},
	} {
		t.Run(name, func(t *testing.T) {
			in := strings.Replace(routedYAML, c.edit, c.with, 1)
			if in == routedYAML {
				t.Fatalf("edit %q not found", c.edit)
			}
			_, err := Parse([]byte(in))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse: %v, want a ValidationError", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
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
	if _, err := Parse([]byte("gateway: {class: longhaul, address: 127.1.0.1/32}\n")); err == nil {
		t.Error("a /32 accepted as a prefix")
	}
	for _, want := range []string{`gateway.class: "Bad_Class": must be a GatewayClass name`, `gateway.address: "nowhere": must be an IP address`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad gateway: %v, want %q", err, want)
		}
	}
}
