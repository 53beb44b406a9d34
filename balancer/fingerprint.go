package balancer

import (
	"cmp"
	"encoding/binary"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// fingerprinter hashes what a picker decides by into Picker.Fingerprint:
// XXH64 (seed 0) of fixed-width little-endian fields and length-prefixed
// strings, so that the value is the same on every replica and build.
type fingerprinter struct {
	d   *xxhash.Digest
	buf [8]byte
}

// fingerprintVersion changes whenever the fields hashed change, so that
// replicas of different versions do not report equal fingerprints by
// chance of layout.
const fingerprintVersion = 1

func newFingerprinter(k Kind) *fingerprinter {
	f := &fingerprinter{d: xxhash.New()}
	f.u64(fingerprintVersion)
	f.u64(uint64(k))
	return f
}

func (f *fingerprinter) u64(v uint64) {
	binary.LittleEndian.PutUint64(f.buf[:], v)
	f.d.Write(f.buf[:])
}

func (f *fingerprinter) u32(v uint32) {
	binary.LittleEndian.PutUint32(f.buf[:4], v)
	f.d.Write(f.buf[:4])
}

// str hashes s, length first.
func (f *fingerprinter) str(s string) {
	f.u64(uint64(len(s)))
	f.d.WriteString(s)
}

// target hashes t's address and weight.
func (f *fingerprinter) target(t *Target) {
	f.str(t.Endpoint.Address)
	f.u32(t.Endpoint.Weight)
}

// identitiesMark starts the section of endpoint identities, hashed after
// the rest only when some target has an ID, so that fingerprints of
// pickers without IDs did not change when IDs came.
const identitiesMark uint64 = 0x6964656e74697479 // "identity"

func (f *fingerprinter) sum() uint64 { return f.d.Sum64() }

// outgoingMark starts the section of outgoing marks, hashed only while a
// rollout makes some targets outgoing (discovery.Placement), so that
// fingerprints outside rollouts did not change when revisions came.
const outgoingMark uint64 = 0x6f7574676f696e67 // "outgoing"

// outgoing hashes the section of outgoing and leaving marks of ts, in
// their order.
func (f *fingerprinter) outgoing(ts []*Target) {
	f.u64(outgoingMark)
	for _, t := range ts {
		f.u32(uint32(b2i(t.outgoing) | b2i(t.leaving)<<1))
	}
}

// targetsFingerprint hashes kind and the targets, address and weight, in
// address order, then, when some target has an ID, the IDs in that order
// (LeastConnections ignores them, but replicas that see other IDs got
// other snapshots), then, when some target is outgoing (a rollout), which
// are, in that order.
func targetsFingerprint(k Kind, ts []Target) uint64 {
	sorted := pointers(ts)
	slices.SortStableFunc(sorted, func(a, b *Target) int { return cmp.Compare(a.Endpoint.Address, b.Endpoint.Address) })
	f := newFingerprinter(k)
	ids, outgoing := false, false
	for _, t := range sorted {
		f.target(t)
		ids = ids || t.Endpoint.ID != ""
		outgoing = outgoing || t.outgoing
	}
	if ids {
		f.u64(identitiesMark)
		for _, t := range sorted {
			f.str(t.Endpoint.ID)
		}
	}
	if outgoing {
		f.outgoing(sorted)
	}
	return f.sum()
}
