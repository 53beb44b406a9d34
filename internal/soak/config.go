package soak

import (
	"fmt"
	"strings"
)

// Config renders longhaul's configuration for a soak: the admin server on
// admin and one listener per lane, named after it, on listen[lane] in
// front of backends[lane]. Every timeout and limit is left at its default:
// the soak is about the timers users get.
func Config(admin string, listen, backends Addrs) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "admin: {address: %q}\nlog: {level: warn, format: json}\nlisteners:\n", admin)
	for _, l := range Lanes {
		var proto string
		switch l {
		case GRPC, GRPCQuiet:
			proto = "grpc"
		case HTTP2, HTTP2Quiet:
			proto = "http\n    http: {upstream: h2c}"
		case HTTP1, HTTP1Quiet, WebSocket:
			proto = "http"
		case TCP:
			proto = "tcp"
		}
		fmt.Fprintf(&b, "  - name: %s\n    address: %q\n    endpoints: {static: [%q]}\n    protocol: %s\n", l, listen[l], backends[l], proto)
	}
	return []byte(b.String())
}
