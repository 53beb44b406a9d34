// Package k6 holds k6 scripts for load against a longhaul listener
// (WebSocket and gRPC sessions held through rollouts; see README.md) and
// the tests that keep them loadable: every script parses as an ES module,
// its imports resolve, it exports what k6 runs, and the .proto it loads
// matches the gRPC service it calls. k6 itself is not a dependency and the
// tests do not run it. It has no Go API.
package k6
