package tcpproxy

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/internal/proxytest"
)

// TestHalfClosedTimeout: once one side of a TCP session half-closed,
// nothing moving for HalfClosedTimeout ends it (idle is an hour here): an
// endpoint that never reads nor answers, and one whose client stopped
// reading what it sends; a session still moving bytes after the
// half-close is not cut.
func TestHalfClosedTimeout(t *testing.T) {
	cfg := Config{IdleTimeout: time.Hour, HalfClosedTimeout: proxytest.ShortTimeout}
	t.Run("endpoint never reads", func(t *testing.T) {
		hold := make(chan struct{})
		mute := proxytest.StartServer(t, func(c *net.TCPConn) { <-hold })
		t.Cleanup(func() { close(hold) }) // before the server's cleanup waits
		p := startProxy(t, cfg, balancer.Policy{Kind: balancer.Maglev}, mute.Addr())
		c := proxytest.Dial(t, p.addr)
		io.WriteString(c, "hello")
		c.CloseWrite()
		left := time.Now()
		proxytest.AssertWithin(t, "session ended", proxytest.WaitClosed(t, c, c, left), proxytest.ShortTimeout, proxytest.ShortTimeout+proxytest.Slack)
	})
	t.Run("client never reads", func(t *testing.T) {
		// The endpoint streams until its writes fail; the client sent
		// FIN and reads nothing, so the proxy's writes block.
		var ended = make(chan time.Time, 1)
		flood := proxytest.StartServer(t, func(c *net.TCPConn) {
			buf := make([]byte, 64<<10)
			for {
				if _, err := c.Write(buf); err != nil {
					ended <- time.Now()
					return
				}
			}
		})
		p := startProxy(t, Config{Name: "flood", IdleTimeout: time.Hour, HalfClosedTimeout: proxytest.ShortTimeout}, balancer.Policy{Kind: balancer.Maglev}, flood.Addr())
		c := proxytest.Dial(t, p.addr)
		c.SetReadBuffer(4 << 10)
		c.CloseWrite()
		left := time.Now()
		select {
		case at := <-ended:
			// The check runs every HalfClosedTimeout: nothing moved for
			// one to two of them.
			proxytest.AssertWithin(t, "blocked session ended", at.Sub(left), proxytest.ShortTimeout, 3*proxytest.ShortTimeout+proxytest.Slack)
		case <-time.After(10 * time.Second):
			t.Fatal("the session is still open 10s after the client half-closed")
		}
	})
	t.Run("still moving", func(t *testing.T) {
		// After the client's FIN the endpoint answers a byte every
		// HalfClosedTimeout/3 for 4 timeouts: all of it arrives.
		const n = 12
		talker := proxytest.StartServer(t, func(c *net.TCPConn) {
			io.Copy(io.Discard, c) // until the client's FIN
			for range n {
				if _, err := c.Write([]byte("t")); err != nil {
					return
				}
				time.Sleep(proxytest.ShortTimeout / 3)
			}
		})
		p := startProxy(t, Config{Name: "talker", IdleTimeout: time.Hour, HalfClosedTimeout: proxytest.ShortTimeout}, balancer.Policy{Kind: balancer.Maglev}, talker.Addr())
		c := proxytest.Dial(t, p.addr)
		io.WriteString(c, "request")
		c.CloseWrite()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil || string(b) != strings.Repeat("t", n) {
			t.Errorf("got %q, %v; want %d bytes then EOF", b, err, n)
		}
	})
}
