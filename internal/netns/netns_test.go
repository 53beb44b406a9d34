package netns

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/netip"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestCreateListenDelete: a host's listener is reached from this namespace
// at the host's address, from the caller's end of the veth; a failed Create
// leaves nothing; Delete removes the namespace and both links.
func TestCreateListenDelete(t *testing.T) {
	if err := Check(); err != nil {
		t.Skip(err)
	}
	var b [4]byte
	rand.Read(b[:])
	run := hex.EncodeToString(b[:2])
	subnet, err := FreeSubnet(uint16(b[2])<<8 | uint16(b[3]))
	if err != nil {
		t.Fatal(err)
	}
	hostIP, addr := Slot(subnet, 5)
	if want := subnet.Addr().As4(); hostIP.As4()[3] != 21 || addr.As4()[3] != 22 || hostIP.As4()[2] != want[2] {
		t.Fatalf("slot 5 of %v: %v and %v", subnet, hostIP, addr)
	}
	name, link := "netns-test-"+run, "nt"+run+"h"
	h, err := Create(name, link, "nt"+run+"n", hostIP, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Delete()

	// A second host whose link name is taken fails after making its
	// namespace, and removes it.
	if _, err := Create(name+"-b", link, "nt"+run+"y", hostIP, addr); err == nil {
		t.Error("a second veth of the same name was created")
	}
	if names, _ := List(name + "-b"); len(names) > 0 {
		t.Errorf("failed Create left namespaces %v", names)
	}

	ln, err := h.Listen(8080)
	if err != nil {
		t.Fatal(err)
	}
	peer := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			peer <- err.Error()
			return
		}
		peer <- c.RemoteAddr().(*net.TCPAddr).IP.String()
		c.Write([]byte("hi"))
		c.Close()
	}()
	c, err := net.Dial("tcp", netip.AddrPortFrom(addr, 8080).String())
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	c.Close()
	if err != nil || string(got) != "hi" {
		t.Errorf("read %q, %v", got, err)
	}
	if p := <-peer; p != hostIP.String() {
		t.Errorf("the host saw the connection from %s, want %v", p, hostIP)
	}
	ln.Close()

	if err := h.Delete(); err != nil {
		t.Fatal(err)
	}
	if names, err := List(name); err != nil || len(names) > 0 {
		t.Errorf("after Delete: namespaces %v (%v)", names, err)
	}
	if links, err := Links(link); err != nil || len(links) > 0 {
		t.Errorf("after Delete: links %v (%v)", links, err)
	}
}

func TestSlot(t *testing.T) {
	for _, c := range []struct {
		subnet     string
		i          int
		host, addr string
		slots      int
	}{
		{"198.18.7.0/24", 0, "198.18.7.1", "198.18.7.2", 63},
		{"198.18.7.0/24", 62, "198.18.7.249", "198.18.7.250", 63},
		{"198.18.4.0/22", 64, "198.18.5.1", "198.18.5.2", 255},
		{"198.19.255.0/24", 5, "198.19.255.21", "198.19.255.22", 63},
	} {
		p := netip.MustParsePrefix(c.subnet)
		h, a := Slot(p, c.i)
		if h.String() != c.host || a.String() != c.addr || SlotsIn(p) != c.slots {
			t.Errorf("Slot(%v, %d) = %v, %v; SlotsIn %d", p, c.i, h, a, SlotsIn(p))
		}
	}
	if SlotsIn(netip.MustParsePrefix("198.18.0.0/31")) != 0 {
		t.Error("a /31 has no slot")
	}
}
