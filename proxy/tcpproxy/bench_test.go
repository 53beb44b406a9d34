package tcpproxy

import (
	"io"
	"net"
	"testing"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/internal/proxytest"
)

// BenchmarkTCPSessionSetup measures a whole short TCP session through the
// listener: connect, pick, dial, relay one byte each way, close.
func BenchmarkTCPSessionSetup(b *testing.B) {
	backend := proxytest.StartServer(b, func(c *net.TCPConn) {
		var buf [1]byte
		if _, err := io.ReadFull(c, buf[:]); err == nil {
			c.Write(buf[:])
		}
	})
	p := startProxy(b, Config{}, balancer.Policy{Kind: balancer.LeastConnections}, backend.Addr())
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			b.Fatal(err)
		}
		var buf [1]byte
		c.Write([]byte{'x'})
		if _, err := io.ReadFull(c, buf[:]); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
