package balancer

import (
	"net/netip"
	"testing"
)

// TestHashGolden freezes the key hashes: XXH64 with seed 0 (the first two
// rows are the reference vectors of XXH64), and the permutation hashes. A
// change of any of them remaps keys between replicas of different versions.
func TestHashGolden(t *testing.T) {
	tests := []struct {
		name string
		got  uint64
		want uint64
	}{
		{`HashString("")`, HashString(""), 0xef46db3751d8e999},
		{`HashString("abc")`, HashString("abc"), 0x44bc2cf5ad770999},
		{"HashAddr(192.0.2.1)", HashAddr(netip.MustParseAddr("192.0.2.1")), 0xde3cbbe5a2240bf0},
		{"HashAddr(2001:db8::1)", HashAddr(netip.MustParseAddr("2001:db8::1")), 0x97f11e0685f67ae8},
		{"HashAddrPort(192.0.2.1:443)", HashAddrPort(netip.MustParseAddrPort("192.0.2.1:443")), 0x7176068559997bc2},
		{"offset hash of 10.0.0.1:8080", seededHash("10.0.0.1:8080", offsetSeed), 0x6c75d270f44f5af9},
		{"skip hash of 10.0.0.1:8080", seededHash("10.0.0.1:8080", skipSeed), 0x849c285dcc17c7f0},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %#x, want %#x", tt.name, tt.got, tt.want)
		}
	}
}

// TestHashAddrForms checks that address forms of one client agree and that
// distinct clients differ.
func TestHashAddrForms(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.1")
	mapped := netip.MustParseAddr("::ffff:192.0.2.1")
	zoned := netip.MustParseAddr("fe80::1%eth0")
	tests := []struct {
		name      string
		a, b      uint64
		wantEqual bool
	}{
		{"v4 = v4-in-v6", HashAddr(v4), HashAddr(mapped), true},
		{"v4:port = v4-in-v6:port", HashAddrPort(netip.AddrPortFrom(v4, 80)), HashAddrPort(netip.AddrPortFrom(mapped, 80)), true},
		{"zone ignored", HashAddr(zoned), HashAddr(zoned.WithZone("")), true},
		{"ports differ", HashAddrPort(netip.AddrPortFrom(v4, 80)), HashAddrPort(netip.AddrPortFrom(v4, 81)), false},
		{"addresses differ", HashAddr(v4), HashAddr(v4.Next()), false},
		{"addr vs addr:port", HashAddr(v4), HashAddrPort(netip.AddrPortFrom(v4, 0)), false},
	}
	for _, tt := range tests {
		if got := tt.a == tt.b; got != tt.wantEqual {
			t.Errorf("%s: got equal %v, want %v", tt.name, got, tt.wantEqual)
		}
	}
}

func TestHashAllocs(t *testing.T) {
	a := netip.MustParseAddrPort("[2001:db8::1]:443")
	var sink uint64
	tests := []struct {
		name string
		f    func()
	}{
		{"HashString", func() { sink += HashString("session-cookie-value") }},
		{"HashAddr", func() { sink += HashAddr(a.Addr()) }},
		{"HashAddrPort", func() { sink += HashAddrPort(a) }},
	}
	for _, tt := range tests {
		if got := testing.AllocsPerRun(100, tt.f); got != 0 {
			t.Errorf("%s: got %v allocs, want 0", tt.name, got)
		}
	}
	_ = sink
}
