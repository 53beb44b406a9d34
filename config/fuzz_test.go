package config

import (
	"errors"
	"os"
	"testing"
)

// FuzzParse checks that Parse never panics, that whatever it accepts passes
// Validate, and that whatever it refuses comes with a message (and, for a
// *ValidationError, a path for every problem).
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		string(example),
		routedYAML, // routes and their filters, mirrors among them
		"",
		"listeners: [",
		"- a\n- b\n",
		"admin: 5\nlog: [x]\nlisteners: {a: b}",
		"listeners:\n  -\n  - name: a\n",
		`listeners: [{name: a, address: ":1", endpoints: {file: f}, balance: {policy: least-connections}}]`,
		`listeners: [{name: a, address: ":1", protocol: grpc, endpoints: {kubernetes: {namespace: n, service: s, port: 80}}, balance: {key: "grpc-metadata:x"}, http: {upstream: h2c, webSocket: {closeCode: 1001}}}]`,
		`listeners: [{name: a, address: ":1", endpoints: {static: "10.0.0.1:80, 10.0.0.2:80"}, timeouts: {connect: 0, idle: 1e3}, maxConnections: 1e30}]`,
		`listeners: [{name: a, address: ":1", endpoints: {static: [{x: 1}, null, 5]}, balance: {boundedLoad: .nan, tableSize: 1e400}}]`,
		"{\"a.b\": 1, \"log.level\": debug, ? [a, b] : c, 1: 2, listeners: [&x {name: a}, *x]}",
		"log: &l {level: info}\nadmin: *l\nlisteners: !!binary aGVsbG8=",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if c != nil {
				t.Fatalf("got config %+v with error %v", c, err)
			}
			if err.Error() == "" {
				t.Fatal("error with an empty message")
			}
			var ve *ValidationError
			if errors.As(err, &ve) {
				if len(ve.Problems) == 0 {
					t.Fatal("*ValidationError without problems")
				}
				for _, p := range ve.Problems {
					if p.Path == "" || p.Message == "" {
						t.Fatalf("problem without path or message: %#v", p)
					}
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a configuration that Validate refuses: %v", err)
		}
		if len(c.Listeners) == 0 {
			t.Fatal("Parse accepted a configuration without listeners")
		}
	})
}
