package listen

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"testing"
)

func TestProxyHeaderRoundTripV2(t *testing.T) {
	cases := []struct{ src, dst string }{
		{"192.0.2.1:5555", "198.18.0.1:80"},
		{"[2001:db8::1]:5555", "[2001:db8::2]:443"},
		{"[::ffff:192.0.2.1]:1", "192.0.2.2:2"},
	}
	for _, c := range cases {
		t.Run(c.src, func(t *testing.T) {
			src, dst := netip.MustParseAddrPort(c.src), netip.MustParseAddrPort(c.dst)
			hdr := AppendProxyV2(nil, src, dst)
			r := bytes.NewReader(append(hdr, "payload"...))
			h, err := ReadProxyHeader(r)
			if err != nil {
				t.Fatal(err)
			}
			if h.Version != 2 || h.Local {
				t.Fatalf("got version %d local %v, want 2 false", h.Version, h.Local)
			}
			if h.Source.Addr().Unmap() != src.Addr().Unmap() || h.Source.Port() != src.Port() {
				t.Errorf("source: got %v, want %v", h.Source, src)
			}
			if h.Dst.Port() != dst.Port() {
				t.Errorf("dst: got %v, want %v", h.Dst, dst)
			}
			rest, _ := io.ReadAll(r)
			if string(rest) != "payload" {
				t.Errorf("read past the header: rest %q, want %q", rest, "payload")
			}
		})
	}
}

func TestProxyHeaderV1(t *testing.T) {
	cases := []struct {
		name, in string
		want     ProxyHeader
		err      bool
	}{
		{"tcp4", "PROXY TCP4 192.0.2.1 192.0.2.2 5555 80\r\nx", ProxyHeader{Version: 1,
			Source: netip.MustParseAddrPort("192.0.2.1:5555"), Dst: netip.MustParseAddrPort("192.0.2.2:80")}, false},
		{"tcp6", "PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n", ProxyHeader{Version: 1,
			Source: netip.MustParseAddrPort("[2001:db8::1]:1"), Dst: netip.MustParseAddrPort("[2001:db8::2]:2")}, false},
		{"unknown", "PROXY UNKNOWN\r\n", ProxyHeader{Version: 1, Local: true}, false},
		{"family mismatch", "PROXY TCP6 192.0.2.1 192.0.2.2 1 2\r\n", ProxyHeader{}, true},
		{"bad port", "PROXY TCP4 192.0.2.1 192.0.2.2 70000 2\r\n", ProxyHeader{}, true},
		{"no CRLF", "PROXY TCP4 192.0.2.1 192.0.2.2 1 2" + string(bytes.Repeat([]byte(" "), 200)), ProxyHeader{}, true},
		{"no signature", "GET / HTTP/1.1\r\n", ProxyHeader{}, true},
		{"short", "PRO", ProxyHeader{}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, err := ReadProxyHeader(bytes.NewReader([]byte(c.in)))
			if (err != nil) != c.err {
				t.Fatalf("got err %v, want error %v", err, c.err)
			}
			if err != nil && !errors.Is(err, ErrProxyHeader) {
				t.Errorf("got %v, want it to wrap ErrProxyHeader", err)
			}
			if err == nil && h != c.want {
				t.Errorf("got %+v, want %+v", h, c.want)
			}
		})
	}
}

func TestProxyHeaderV2Malformed(t *testing.T) {
	good := AppendProxyV2(nil, netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("192.0.2.2:2"))
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := map[string][]byte{
		"version 3":   mut(func(b []byte) []byte { b[12] = 0x31; return b }),
		"command 5":   mut(func(b []byte) []byte { b[12] = 0x25; return b }),
		"short block": mut(func(b []byte) []byte { b[15] = 4; return b[:20] }),
		"huge length": mut(func(b []byte) []byte { b[14], b[15] = 0xff, 0xff; return b }),
		"truncated":   good[:len(good)-3],
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := ReadProxyHeader(bytes.NewReader(in)); !errors.Is(err, ErrProxyHeader) {
				t.Fatalf("got %v, want ErrProxyHeader", err)
			}
		})
	}
}

// FuzzReadProxyHeader checks that no input panics, that a header is never
// read past its end, and that a decoded v2 PROXY header re-encodes to the
// same addresses.
func FuzzReadProxyHeader(f *testing.F) {
	f.Add(AppendProxyV2(nil, netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("192.0.2.2:2")))
	f.Add(AppendProxyV2(nil, netip.MustParseAddrPort("[2001:db8::1]:1"), netip.MustParseAddrPort("[2001:db8::2]:2")))
	f.Add([]byte("PROXY TCP4 192.0.2.1 192.0.2.2 5555 80\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		h, err := ReadProxyHeader(r)
		if err != nil {
			return
		}
		used := len(in) - r.Len()
		if h.Version == 2 && !h.Local {
			again, err := ReadProxyHeader(bytes.NewReader(AppendProxyV2(nil, h.Source, h.Dst)))
			if err != nil || again.Source != h.Source || again.Dst != h.Dst {
				t.Fatalf("re-encode of %+v: got %+v, %v", h, again, err)
			}
		}
		if h.Version == 1 && !bytes.HasSuffix(in[:used], []byte("\r\n")) {
			t.Fatalf("v1 header accepted without CRLF: %q", in[:used])
		}
	})
}
