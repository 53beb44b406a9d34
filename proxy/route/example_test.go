package route_test

import (
	"fmt"
	"math/rand/v2"
	"net/http/httptest"

	"github.com/longhaul-proxy/longhaul/proxy/route"
)

// A listener's handler: match, answer what the API answers without a
// backend, else apply the filters and forward to the picked backend.
func Example() {
	tb, err := route.New(route.Spec[string]{HTTP: []route.HTTPRoute[string]{{
		Meta:      route.Meta{Namespace: "shop", Name: "api"},
		Hostnames: []string{"*.example.com"},
		Rules: []route.HTTPRule[string]{
			{
				Matches:  []route.HTTPMatch{{Path: route.PathMatch{Type: route.PathPrefix, Value: "/v1"}}},
				Backends: []route.Backend[string]{{Ref: "api-v1", Weight: 1}},
				Filters: []route.HTTPFilter[string]{{Type: route.URLRewrite, URLRewrite: &route.Rewrite{
					Path: &route.PathModifier{Type: route.ReplacePrefixMatch, Value: "/"},
				}}},
			},
			{
				Matches: []route.HTTPMatch{{Path: route.PathMatch{Type: route.PathExact, Value: "/old"}}},
				Filters: []route.HTTPFilter[string]{{Type: route.RequestRedirect, RequestRedirect: &route.Redirect{
					Scheme: "https", Path: &route.PathModifier{Type: route.ReplaceFullPath, Value: "/new"},
				}}},
			},
		},
	}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, target := range []string{"http://shop.example.com/v1/items?id=7", "http://shop.example.com:8080/old", "http://other.org/"} {
		r := httptest.NewRequest("GET", target, nil)
		res := tb.MatchHTTP(r.Host, r.Method, r.URL.Path, r.Header, r.URL.RawQuery, rand.Uint64())
		switch status := res.Status(); {
		case status == 0:
			res.Action.RequestHeaders.Apply(r.Header)
			res.Action.Rewrite.Apply(r, res.MatchedPrefix)
			fmt.Println(target, "->", res.Backend, r.URL.RequestURI())
		case res.Action != nil && res.Action.Redirect != nil:
			fmt.Println(target, "->", status, res.Action.Redirect.Location("http", r.Host, 8080, r.URL.Path, r.URL.RawQuery, res.MatchedPrefix))
		default:
			fmt.Println(target, "->", status)
		}
	}
	// Output:
	// http://shop.example.com/v1/items?id=7 -> api-v1 /items?id=7
	// http://shop.example.com:8080/old -> 302 https://shop.example.com/new
	// http://other.org/ -> 404
}
