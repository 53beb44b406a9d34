package balancer

import (
	"encoding/binary"
	"net/netip"

	"github.com/cespare/xxhash/v2"
)

// Key hashes are XXH64 with seed 0: fixed, so that every replica (and any
// other XXH64 implementation) maps a key to the same hash. Changing them
// moves every key; TestGoldenKeys guards against that.

// HashString returns the key hash of s (XXH64, seed 0). It does not
// allocate.
func HashString(s string) uint64 { return xxhash.Sum64String(s) }

// HashAddr returns the key hash of a client IP: XXH64 of its 16-byte form, so
// that an IPv4 address and its IPv4-mapped IPv6 form agree. The zone is
// ignored. It does not allocate.
func HashAddr(a netip.Addr) uint64 {
	b := a.As16()
	return xxhash.Sum64(b[:])
}

// HashAddrPort returns the key hash of a client IP and port: XXH64 of the
// 16-byte address followed by the port in big-endian order, so that IPv4 and
// IPv4-mapped IPv6 agree. It does not allocate.
func HashAddrPort(a netip.AddrPort) uint64 {
	var b [18]byte
	a16 := a.Addr().As16()
	copy(b[:16], a16[:])
	binary.BigEndian.PutUint16(b[16:], a.Port())
	return xxhash.Sum64(b[:])
}

// Maglev permutation seeds: fixed, so that every replica builds the same
// table. Changing them reshuffles every table; TestGoldenKeys guards them.
const (
	offsetSeed uint64 = 0x6c6f6e6768617531 // "longhau1"
	skipSeed   uint64 = 0x6c6f6e6768617532 // "longhau2"
)

// seededHash returns XXH64 of s with the given seed.
func seededHash(s string, seed uint64) uint64 {
	var d xxhash.Digest
	d.ResetWithSeed(seed)
	d.WriteString(s)
	return d.Sum64()
}
