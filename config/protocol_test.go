package config

import (
	"errors"
	"strings"
	"testing"
)

// TestBackendProtocol: a backend's protocol says how its endpoints are
// reached (default: the listener's upstream); http1 backends are refused
// where the listener relays HTTP/2 frame by frame.
func TestBackendProtocol(t *testing.T) {
	const mixed = `
listeners:
  - name: gw
    address: 127.0.0.1:8080
    protocol: PROTO
    httpUPSTREAM
    backends:
      - {name: web, endpoints: {static: ["127.0.0.1:7101"]}WEB}
      - {name: rpc, endpoints: {static: ["127.0.0.1:7201"]}, protocol: h2c}
      - {name: plain, endpoints: {static: ["127.0.0.1:7301"]}}
    routes:
      http: [{name: site, rules: [{backendRefs: [{name: web}, {name: plain}]}]}]
      grpc: [{name: rpc, rules: [{backendRefs: [{name: rpc}]}]}]
`
	yaml := func(proto, upstream, web string) string {
		r := strings.NewReplacer("PROTO", proto, "UPSTREAM", upstream, "WEB", web)
		return r.Replace(mixed)
	}
	t.Run("mixed on an http listener", func(t *testing.T) {
		c, err := Parse([]byte(yaml("http", ": {upstream: http1}", ", protocol: http1")))
		if err != nil {
			t.Fatal(err)
		}
		l := &c.Listeners[0]
		for i, want := range []bool{false, true, false} {
			if b := &l.Backends[i]; b.H2(l) != want {
				t.Errorf("backend %s (protocol %q): H2 %v, want %v", b.Name, b.Protocol, b.H2(l), want)
			}
		}
	})
	t.Run("default follows the listener", func(t *testing.T) {
		c, err := Parse([]byte(yaml("http", ": {upstream: h2c}", "")))
		if err != nil {
			t.Fatal(err)
		}
		l := &c.Listeners[0]
		for _, b := range l.Backends {
			if !b.H2(l) {
				t.Errorf("backend %s on an h2c listener: not H2", b.Name)
			}
		}
	})
	for name, c := range map[string]struct{ proto, upstream, web, want string }{
		"unknown": {"http", ": {}", ", protocol: h2", `listeners[0].backends[0].protocol: "h2": must be one of , http1, h2c`},
		"http1 on grpc": {"grpc", ": {}", ", protocol: http1",
			`listeners[0].backends[0].protocol: "http1": is refused on a listener whose upstream is h2c`},
		"http1 on h2c upstream": {"http", ": {upstream: h2c}", ", protocol: http1",
			`listeners[0].backends[0].protocol: "http1": is refused on a listener whose upstream is h2c`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(yaml(c.proto, c.upstream, c.web)))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse: %v, want a ValidationError", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q lacks %q", err, c.want)
			}
			if n := strings.Count(err.Error(), "protocol"); n > 2 {
				t.Errorf("error %q: more than the one problem", err)
			}
		})
	}
}
