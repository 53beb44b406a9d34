package listen

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
)

// PROXY protocol (HAProxy's spec, versions 1 and 2): a front load balancer
// prepends the original client and destination addresses to a connection.

var v2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

const (
	v1MaxLen = 107 // the longest v1 line, CRLF included
	// v2MaxExtra bounds the address block (and TLVs) that we accept.
	v2MaxExtra = 1024
)

// ErrProxyHeader reports a missing or malformed PROXY protocol header.
var ErrProxyHeader = errors.New("bad PROXY protocol header")

// ProxyHeader is a decoded PROXY protocol header. Local is true for a v2
// LOCAL command or a v1 "UNKNOWN" line (health checks from the balancer): the
// connection's own addresses then apply.
type ProxyHeader struct {
	Version     int
	Local       bool
	Source, Dst netip.AddrPort
}

// ReadProxyHeader reads exactly one PROXY header from r, and not one byte
// more, so that the connection underneath can still be relayed with splice.
// It reads v1 a byte at a time (at most 107 bytes); callers set a read
// deadline against slow clients.
func ReadProxyHeader(r io.Reader) (ProxyHeader, error) {
	var buf [16 + v2MaxExtra]byte
	if _, err := io.ReadFull(r, buf[:6]); err != nil {
		return ProxyHeader{}, fmt.Errorf("%w: %w", ErrProxyHeader, err)
	}
	switch {
	case bytes.Equal(buf[:6], v2Sig[:6]):
		if _, err := io.ReadFull(r, buf[6:16]); err != nil {
			return ProxyHeader{}, fmt.Errorf("%w: %w", ErrProxyHeader, err)
		}
		n := int(binary.BigEndian.Uint16(buf[14:16]))
		if n > v2MaxExtra {
			return ProxyHeader{}, fmt.Errorf("%w: v2 address block of %d bytes", ErrProxyHeader, n)
		}
		if _, err := io.ReadFull(r, buf[16:16+n]); err != nil {
			return ProxyHeader{}, fmt.Errorf("%w: %w", ErrProxyHeader, err)
		}
		return parseV2(buf[:16+n])
	case string(buf[:6]) == "PROXY ":
		line := buf[:6]
		for len(line) < v1MaxLen {
			if _, err := io.ReadFull(r, buf[len(line):len(line)+1]); err != nil {
				return ProxyHeader{}, fmt.Errorf("%w: %w", ErrProxyHeader, err)
			}
			line = buf[:len(line)+1]
			if bytes.HasSuffix(line, []byte("\r\n")) {
				return parseV1(line)
			}
		}
		return ProxyHeader{}, fmt.Errorf("%w: v1 line longer than %d bytes", ErrProxyHeader, v1MaxLen)
	}
	return ProxyHeader{}, fmt.Errorf("%w: no signature", ErrProxyHeader)
}

func parseV1(line []byte) (ProxyHeader, error) {
	f := bytes.Split(bytes.TrimSuffix(line, []byte("\r\n")), []byte(" "))
	if len(f) >= 2 && string(f[1]) == "UNKNOWN" {
		return ProxyHeader{Version: 1, Local: true}, nil
	}
	if len(f) != 6 || (string(f[1]) != "TCP4" && string(f[1]) != "TCP6") {
		return ProxyHeader{}, fmt.Errorf("%w: v1 line %q", ErrProxyHeader, line)
	}
	src, err1 := netip.ParseAddr(string(f[2]))
	dst, err2 := netip.ParseAddr(string(f[3]))
	sp, err3 := strconv.ParseUint(string(f[4]), 10, 16)
	dp, err4 := strconv.ParseUint(string(f[5]), 10, 16)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return ProxyHeader{}, fmt.Errorf("%w: v1 line %q: %w", ErrProxyHeader, line, err)
	}
	if src.Is4() != (string(f[1]) == "TCP4") || dst.Is4() != src.Is4() {
		return ProxyHeader{}, fmt.Errorf("%w: v1 family does not match %q", ErrProxyHeader, line)
	}
	return ProxyHeader{Version: 1, Source: netip.AddrPortFrom(src, uint16(sp)), Dst: netip.AddrPortFrom(dst, uint16(dp))}, nil
}

func parseV2(b []byte) (ProxyHeader, error) {
	if !bytes.Equal(b[:12], v2Sig) {
		return ProxyHeader{}, fmt.Errorf("%w: v2 signature", ErrProxyHeader)
	}
	if b[12]>>4 != 2 {
		return ProxyHeader{}, fmt.Errorf("%w: version %d", ErrProxyHeader, b[12]>>4)
	}
	h := ProxyHeader{Version: 2}
	switch b[12] & 0xf {
	case 0: // LOCAL
		h.Local = true
		return h, nil
	case 1: // PROXY
	default:
		return ProxyHeader{}, fmt.Errorf("%w: command %d", ErrProxyHeader, b[12]&0xf)
	}
	body := b[16:]
	switch b[13] {
	case 0x11: // TCP over IPv4
		if len(body) < 12 {
			return ProxyHeader{}, fmt.Errorf("%w: short IPv4 block", ErrProxyHeader)
		}
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[0:4])), binary.BigEndian.Uint16(body[8:10]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[4:8])), binary.BigEndian.Uint16(body[10:12]))
	case 0x21: // TCP over IPv6
		if len(body) < 36 {
			return ProxyHeader{}, fmt.Errorf("%w: short IPv6 block", ErrProxyHeader)
		}
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[0:16])), binary.BigEndian.Uint16(body[32:34]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[16:32])), binary.BigEndian.Uint16(body[34:36]))
	default: // UNSPEC or not TCP: the connection's own addresses apply
		h.Local = true
	}
	return h, nil
}

// AppendProxyV2 appends a v2 PROXY header for a TCP connection from src to
// dst. Both must be of one family (an IPv4-mapped address counts as IPv4).
func AppendProxyV2(b []byte, src, dst netip.AddrPort) []byte {
	b = append(b, v2Sig...)
	b = append(b, 0x21) // version 2, PROXY
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	if s.Is4() && d.Is4() {
		b = append(b, 0x11, 0, 12)
		a4, d4 := s.As4(), d.As4()
		b = append(b, a4[:]...)
		b = append(b, d4[:]...)
	} else {
		b = append(b, 0x21, 0, 36)
		a16, d16 := s.As16(), d.As16()
		b = append(b, a16[:]...)
		b = append(b, d16[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}
