// Package netns makes test hosts: network namespaces, each joined to the
// caller's namespace by a veth pair with a /30 from 198.18.0.0/15 (RFC 2544's
// benchmark range, never routed on the Internet). The caller's end of the
// pair gets the /30's first address, the namespace's end the second, and the
// namespace routes everything through the caller's end.
//
// It needs root and iproute2's ip (Check says whether both are there). It is
// test support: tests of several packages (end-to-end tests, the pod runner)
// share it.
package netns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Benchmark is 198.18.0.0/15, where every address of this package comes
// from.
var Benchmark = netip.MustParsePrefix("198.18.0.0/15")

// Check returns nil when this process can make network namespaces: it runs
// as root and finds ip.
func Check() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("network namespaces and veth pairs need root; euid is %d", os.Geteuid())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("iproute2's ip is missing (apt-get install iproute2): %w", err)
	}
	return nil
}

// FreeSubnet returns a /24 of 198.18.0.0/15 that no interface of this
// namespace has an address in, starting the search at seed so that
// concurrent runs with random seeds rarely race for the same one.
func FreeSubnet(seed uint16) (netip.Prefix, error) {
	out, err := exec.Command("ip", "-o", "-4", "addr", "show").CombinedOutput()
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("ip addr show: %v: %s", err, out)
	}
	n := int(seed)
	for range 512 {
		n = (n + 1) % 512 // 198.18.0.0/24 .. 198.19.255.0/24
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18 + byte(n/256), byte(n % 256), 0}), 24)
		if !strings.Contains(string(out), " "+strings.TrimSuffix(p.Addr().String(), "0")) {
			return p, nil
		}
	}
	return netip.Prefix{}, errors.New("every /24 of 198.18.0.0/15 is in use on this machine")
}

// Slots is how many hosts fit in a /24: one /30 each (SlotsIn).
const Slots = 63

// SlotsIn is how many hosts Slot numbers in subnet, an IPv4 prefix of at
// most 30 bits: one /30 each, the last /30 left out.
func SlotsIn(subnet netip.Prefix) int {
	if !subnet.Addr().Is4() || subnet.Bits() > 30 {
		return 0
	}
	return 1<<(32-subnet.Bits())/4 - 1
}

// Slot returns the addresses of host i (0 to SlotsIn(subnet)-1) of
// subnet: the caller's end of the veth and the namespace's, the first and
// second addresses of the i-th /30.
func Slot(subnet netip.Prefix, i int) (hostIP, addr netip.Addr) {
	b := subnet.Masked().Addr().As4()
	n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	at := func(v uint32) netip.Addr {
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	n += uint32(4 * i)
	return at(n + 1), at(n + 2)
}

// Host is one network namespace with one address.
type Host struct {
	Name   string     // the namespace's name (ip netns)
	Addr   netip.Addr // its address, reachable from the caller's namespace
	HostIP netip.Addr // the caller's end of the veth
	Link   string     // the name of the caller's end of the veth
	nsPath string
}

// Create makes namespace name with a veth pair hostLink (kept in the
// caller's namespace, address hostIP) and nsLink (moved into the namespace,
// address addr), both in the /30 holding them, and a default route through
// hostIP. Link names are at most 15 bytes. On error nothing is left behind.
func Create(name, hostLink, nsLink string, hostIP, addr netip.Addr) (*Host, error) {
	h := &Host{Name: name, Addr: addr, HostIP: hostIP, Link: hostLink, nsPath: "/var/run/netns/" + name}
	if err := ip("netns", "add", name); err != nil {
		return nil, err
	}
	if err := ip("link", "add", hostLink, "type", "veth", "peer", "name", nsLink); err != nil {
		// The link may be someone else's: remove only the namespace.
		return nil, errors.Join(err, ip("netns", "delete", name))
	}
	for _, args := range [][]string{
		{"link", "set", nsLink, "netns", name},
		{"addr", "add", hostIP.String() + "/30", "dev", hostLink},
		{"link", "set", hostLink, "up"},
		{"-n", name, "addr", "add", addr.String() + "/30", "dev", nsLink},
		{"-n", name, "link", "set", nsLink, "up"},
		{"-n", name, "link", "set", "lo", "up"},
		{"-n", name, "route", "add", "default", "via", hostIP.String()},
	} {
		if err := ip(args...); err != nil {
			return nil, errors.Join(err, h.Delete())
		}
	}
	return h, nil
}

// Delete removes the namespace and the veth pair. Sockets still open in
// the namespace keep it alive in the kernel until they close, but its name
// and the pair are gone when Delete returns.
func (h *Host) Delete() error {
	// Deleting the namespace destroys its veth end, and with it the pair;
	// delete our end too in case the kernel is slow about it.
	err := ip("netns", "delete", h.Name)
	if lerr := ip("link", "delete", h.Link); lerr != nil && !strings.Contains(lerr.Error(), "Cannot find device") {
		err = errors.Join(err, lerr)
	}
	return err
}

// Listen opens a TCP listener on the host's address inside its namespace.
// The socket stays in that namespace whatever thread later uses it: only
// the thread that creates it switches, and back.
func (h *Host) Listen(port int) (net.Listener, error) {
	var ln net.Listener
	err := h.in(func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(h.Addr.String(), fmt.Sprint(port)))
		return err
	})
	if err != nil && ln != nil { // opened, but the thread could not switch back
		ln.Close()
		ln = nil
	}
	return ln, err
}

// ListenUDP opens a UDP socket on the host's address inside its namespace,
// as Listen does for TCP.
func (h *Host) ListenUDP(port int) (net.PacketConn, error) {
	var pc net.PacketConn
	err := h.in(func() (err error) {
		pc, err = net.ListenPacket("udp", net.JoinHostPort(h.Addr.String(), fmt.Sprint(port)))
		return err
	})
	if err != nil && pc != nil {
		pc.Close()
		pc = nil
	}
	return pc, err
}

// in runs open on a thread switched into the namespace, then switches the
// thread back. open must only create sockets: they stay in the namespace.
func (h *Host) in(open func() error) error {
	ch := make(chan error, 1)
	go func() {
		// If switching back fails, the goroutine ends with its thread
		// still locked, and the runtime then retires that thread rather
		// than reuse it in the wrong namespace.
		runtime.LockOSThread()
		err, back := inNetns(h.nsPath, open)
		ch <- err
		if back {
			runtime.UnlockOSThread()
		}
	}()
	return <-ch
}

// inNetns runs open with the calling (locked) thread in the namespace at
// nsPath; back reports whether the thread is in its own namespace again.
func inNetns(nsPath string, open func() error) (err error, back bool) {
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return err, false
	}
	defer self.Close()
	target, err := os.Open(nsPath)
	if err != nil {
		return err, true
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("setns %s: %w", nsPath, err), true
	}
	err = open()
	if berr := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); berr != nil {
		return errors.Join(err, fmt.Errorf("setns back: %w", berr)), false
	}
	return err, true
}

// List returns the names of the network namespaces that start with prefix.
func List(prefix string) ([]string, error) {
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ip netns list: %v: %s", err, out)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// Links returns the names of this namespace's network interfaces that
// start with prefix.
func Links(prefix string) ([]string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	var names []string
	for _, i := range ifs {
		if strings.HasPrefix(i.Name, prefix) {
			names = append(names, i.Name)
		}
	}
	return names, nil
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
