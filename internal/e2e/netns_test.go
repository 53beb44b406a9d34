package e2e

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// netnsHosts are test hosts, each a network namespace joined to the test's
// own namespace by a veth pair with a /30 from 198.18.0.0/15 (RFC 2544's
// benchmark range): the host end gets .1 of its /30, the namespace end .2.
// Names carry a random run id so that parallel runs never collide.
type netnsHosts struct {
	run    string       // random id in every name
	subnet netip.Prefix // the run's /24
}

// requireNetns fails the test (it does not skip) unless it can create
// network namespaces: root and iproute2's ip.
func requireNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("this end-to-end test creates network namespaces and veth pairs: it must run as root (CI does); "+
			"euid is %d. Run it as root, or set LONGHAUL_SKIP_KUBE=1 to skip the Kubernetes tier", os.Geteuid())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("this end-to-end test needs iproute2's `ip` (apt-get install iproute2; `make deps` does it): %v", err)
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
	used, err := exec.Command("ip", "-o", "-4", "addr", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip addr show: %v\n%s", err, used)
	}
	n := int(b[2])<<8 | int(b[3])
	for range 512 {
		n = (n + 1) % 512 // 198.18.0.0/24 .. 198.19.255.0/24
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18 + byte(n/256), byte(n % 256), 0}), 24)
		if !strings.Contains(string(used), " "+strings.TrimSuffix(p.Addr().String(), "0")) {
			h.subnet = p
			return h
		}
	}
	t.Fatal("every /24 of 198.18.0.0/15 is in use on this machine")
	return nil
}

// host is one test host: a network namespace with one address.
type host struct {
	Name   string     // network namespace name
	Addr   netip.Addr // its address, reachable from the test's namespace
	HostIP netip.Addr // the address of the test's end of the veth
	nsPath string
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// add creates host i (0-62) and removes it when the test ends.
func (h *netnsHosts) add(t *testing.T, i int) *host {
	t.Helper()
	if i < 0 || i > 62 {
		t.Fatalf("host index %d out of 0-62", i)
	}
	base := h.subnet.Addr().As4()
	at := func(n int) netip.Addr { b := base; b[3] = byte(4*i + n); return netip.AddrFrom4(b) }
	hs := &host{
		Name:   fmt.Sprintf("longhaul-e2e-%s-%d", h.run, i),
		Addr:   at(2),
		HostIP: at(1),
	}
	hs.nsPath = "/var/run/netns/" + hs.Name
	out, in := fmt.Sprintf("lh%sh%d", h.run, i), fmt.Sprintf("lh%sn%d", h.run, i) // <= 15 bytes
	if err := ipCmd("netns", "add", hs.Name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Deleting the namespace destroys its veth end, and with it the
		// pair; delete our end too in case the kernel is slow about it.
		if err := ipCmd("netns", "delete", hs.Name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		_ = ipCmd("link", "delete", out)
	})
	for _, args := range [][]string{
		{"link", "add", out, "type", "veth", "peer", "name", in},
		{"link", "set", in, "netns", hs.Name},
		{"addr", "add", hs.HostIP.String() + "/30", "dev", out},
		{"link", "set", out, "up"},
		{"-n", hs.Name, "addr", "add", hs.Addr.String() + "/30", "dev", in},
		{"-n", hs.Name, "link", "set", in, "up"},
		{"-n", hs.Name, "link", "set", "lo", "up"},
	} {
		if err := ipCmd(args...); err != nil {
			t.Fatal(err)
		}
	}
	return hs
}

// Listen opens a TCP listener inside the host's network namespace. The
// socket stays in that namespace whatever thread later uses it: only the
// thread that creates it switches, and back.
func (hs *host) Listen(port int) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// If switching back fails, the goroutine ends with its thread
		// still locked, and the runtime then retires that thread rather
		// than reuse it in the wrong namespace.
		runtime.LockOSThread()
		ln, err, back := listenInNetns(hs.nsPath, net.JoinHostPort(hs.Addr.String(), fmt.Sprint(port)))
		ch <- result{ln, err}
		if back {
			runtime.UnlockOSThread()
		}
	}()
	r := <-ch
	return r.ln, r.err
}

func listenInNetns(nsPath, addr string) (ln net.Listener, err error, back bool) {
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, err, false
	}
	defer self.Close()
	target, err := os.Open(nsPath)
	if err != nil {
		return nil, err, true
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("setns %s: %w", nsPath, err), true
	}
	ln, err = net.Listen("tcp", addr)
	if berr := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); berr != nil {
		if ln != nil {
			ln.Close()
		}
		return nil, errors.Join(err, fmt.Errorf("setns back: %w", berr)), false
	}
	return ln, err, true
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
