package e2e

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/longhaul-proxy/longhaul/internal/netns"
)

// netnsHosts are test hosts (internal/netns): network namespaces joined to
// the test's own namespace by a veth pair with a /30 of a /24 from
// 198.18.0.0/15. Names carry a random run id so that parallel runs never
// collide.
type netnsHosts struct {
	run    string       // random id in every name
	subnet netip.Prefix // the run's /24
}

// requireNetns fails the test (it does not skip) unless it can create
// network namespaces: root and iproute2's ip.
func requireNetns(t *testing.T) {
	t.Helper()
	if err := netns.Check(); err != nil {
		t.Fatalf("this end-to-end test creates network namespaces and veth pairs: %v. Run it as root with "+
			"iproute2 (CI does; `make deps` installs it), or set LONGHAUL_SKIP_KUBE=1 to skip the Kubernetes tier", err)
	}
}

// newNetnsHosts picks a run id and a /24 of 198.18.0.0/15 that no interface
// of this namespace uses yet.
func newNetnsHosts(t *testing.T) *netnsHosts {
	t.Helper()
	if os.Getenv("LONGHAUL_SKIP_KUBE") == "1" {
		t.Skip("LONGHAUL_SKIP_KUBE=1: skipping the Kubernetes tier")
	}
	requireNetns(t)
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	h := &netnsHosts{run: hex.EncodeToString(b[:2])}
	subnet, err := netns.FreeSubnet(uint16(b[2])<<8 | uint16(b[3]))
	if err != nil {
		t.Fatal(err)
	}
	h.subnet = subnet
	return h
}

// host is one test host: a network namespace with one address.
type host = netns.Host

// add creates host i (0-62) and removes it when the test ends.
func (h *netnsHosts) add(t *testing.T, i int) *host {
	t.Helper()
	if i < 0 || i >= netns.Slots {
		t.Fatalf("host index %d out of 0-%d", i, netns.Slots-1)
	}
	hostIP, addr := netns.Slot(h.subnet, i)
	out, in := fmt.Sprintf("lh%sh%d", h.run, i), fmt.Sprintf("lh%sn%d", h.run, i) // <= 15 bytes
	hs, err := netns.Create(fmt.Sprintf("longhaul-e2e-%s-%d", h.run, i), out, in, hostIP, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := hs.Delete(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return hs
}

// backend is an echo server in a test host. Each connection first gets a
// line with the backend's name, then its bytes echoed back.
type backend struct {
	Name string
	Host *host
	Port int
	ln   net.Listener

	mu      sync.Mutex
	conns   map[net.Conn]bool
	peers   map[string]int // remote address IP -> connections
	total   int
	wg      sync.WaitGroup
	stopped bool
}

func startBackend(t *testing.T, name string, hs *host, port int) *backend {
	t.Helper()
	ln, err := hs.Listen(port)
	if err != nil {
		t.Fatalf("backend %s: listen in %s: %v", name, hs.Name, err)
	}
	b := &backend{Name: name, Host: hs, Port: port, ln: ln, conns: map[net.Conn]bool{}, peers: map[string]int{}}
	b.wg.Go(b.serve)
	t.Cleanup(b.stop)
	return b
}

// Addr is the backend's ip:port, as an EndpointSlice would carry it.
func (b *backend) Addr() string {
	return netip.AddrPortFrom(b.Host.Addr, uint16(b.Port)).String()
}

func (b *backend) serve() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		if b.stopped {
			b.mu.Unlock()
			c.Close()
			return
		}
		b.conns[c] = true
		b.total++
		b.peers[c.RemoteAddr().(*net.TCPAddr).IP.String()]++
		b.mu.Unlock()
		b.wg.Go(func() {
			defer func() {
				b.mu.Lock()
				delete(b.conns, c)
				b.mu.Unlock()
				c.Close()
			}()
			if _, err := fmt.Fprintf(c, "%s\n", b.Name); err != nil {
				return
			}
			io.Copy(c, c)
		})
	}
}

// Accepted returns how many connections the backend accepted, and from
// which source addresses.
func (b *backend) Accepted() (int, map[string]int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	peers := make(map[string]int, len(b.peers))
	for k, v := range b.peers {
		peers[k] = v
	}
	return b.total, peers
}

func (b *backend) stop() {
	b.mu.Lock()
	b.stopped = true
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.ln.Close()
	b.wg.Wait()
}

// greeting reads the backend's name line from a fresh connection.
func greeting(c net.Conn) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(c, 64)).ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(line, "\n"), nil
}
