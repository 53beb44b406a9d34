package proxy

import (
	"context"
	"net"
)

// Listen opens a listener's socket. Accepted connections get no TCP
// keep-alive probes: Go would otherwise set four socket options on every
// connection (a fifth of a short session's system calls), and longhaul
// ends dead sessions by its idle timeout instead, as HAProxy and NGINX do
// by default. Endpoint connections are dialled without probes too.
func Listen(address string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(context.Background(), "tcp", address)
}
