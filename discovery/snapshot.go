// Package discovery turns origins of endpoints (a static list, a watched file,
// Kubernetes EndpointSlices) into immutable per-service Snapshots.
//
// Discovery never touches a connection: it only publishes Snapshots, and the
// balancer and drain packages react to them.
package discovery

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"
)

// Endpoint is one backend address of a service with its conditions as the
// EndpointSlice API (KEP-1669) defines them, after defaults are applied:
// Ready absent means true, Serving absent means equal to Ready, Terminating
// absent means false. An Endpoint is a value; it is never shared mutably.
type Endpoint struct {
	// Address is "ip:port" in canonical form (netip.AddrPort.String), the
	// endpoint's identity across snapshots: load counters, drain and a
	// Snapshot's order and uniqueness go by it.
	Address string `json:"address"`
	// ID, when not empty, is the endpoint's hash identity: the Maglev
	// table is built from it instead of Address, so that a member replaced
	// under a new address but the same ID (a StatefulSet pod restarted
	// with a new IP) keeps its predecessor's place in the table and no key
	// moves. Empty means the address. It is 1 to MaxIDLength bytes of
	// printable ASCII without spaces (ValidID). IDs need not be unique in
	// a Snapshot (an old and a new pod may both be listed while one
	// replaces the other): the balancer gives an ID to one endpoint, the
	// most available (ready and not terminating, then serving), then the
	// lowest address, and hashes the others by their addresses.
	ID          string `json:"id,omitempty"`
	Ready       bool   `json:"ready"`
	Serving     bool   `json:"serving"`
	Terminating bool   `json:"terminating"`
	// Weight is relative, at least 1.
	Weight uint32 `json:"weight"`
	Zone   string `json:"zone,omitempty"`
	Node   string `json:"node,omitempty"`
	Pod    string `json:"pod,omitempty"`
	// Revision, when not empty, names the version of the workload the
	// endpoint runs (a Deployment pod's pod-template-hash, a StatefulSet
	// pod's controller-revision-hash, a file's revision field). Revisions
	// are compared only for equality: while an endpoint of revision R is
	// leaving (not eligible), new sessions prefer eligible endpoints of
	// another revision (Snapshot.Placement), so that a session moved off
	// an old pod goes to a new one and moves once per rollout. At most
	// MaxIDLength bytes of printable ASCII (ValidRevision).
	Revision string `json:"revision,omitempty"`
	// KillTime, when not zero, is when the endpoint's pod will be killed:
	// its metadata.deletionTimestamp, which a graceful delete sets to the
	// time of the delete plus the grace period. Only a terminating endpoint
	// whose pod could be read has one; drain keeps its deadlines before it.
	// NewSnapshot stores it in UTC without a monotonic reading, so that ==
	// on Endpoints compares instants.
	KillTime time.Time `json:"killTime,omitzero"`
}

// primary reports whether new sessions may go to e while some endpoint is
// ready: ready and not terminating.
func (e Endpoint) primary() bool { return e.Ready && !e.Terminating }

// fallback reports whether new sessions may go to e when no endpoint is
// primary: serving and terminating (a single-replica rollout is then not
// black-holed).
func (e Endpoint) fallback() bool { return e.Serving && e.Terminating }

// Snapshot is the set of endpoints of one service at one moment. It is never
// modified after it is published; a change produces a new Snapshot.
// Endpoints are sorted by Address and unique.
type Snapshot struct {
	// Service names what the endpoints belong to (a listener or a
	// Kubernetes namespace/name).
	Service string `json:"service"`
	// Endpoints is sorted by Address with no duplicates.
	Endpoints []Endpoint `json:"endpoints"`
}

// Conditions holds EndpointSlice conditions as optional values, before the
// API's defaults are applied.
type Conditions struct {
	Ready, Serving, Terminating *bool
}

// Resolve applies the EndpointSlice defaults: ready absent is true, serving
// absent equals ready, terminating absent is false.
func (c Conditions) Resolve() (ready, serving, terminating bool) {
	ready = c.Ready == nil || *c.Ready
	serving = ready
	if c.Serving != nil {
		serving = *c.Serving
	}
	terminating = c.Terminating != nil && *c.Terminating
	return ready, serving, terminating
}

// NewSnapshot validates, canonicalises, sorts and de-duplicates eps into a
// Snapshot. eps is not retained. An address given twice with identical
// attributes is kept once (an endpoint may appear in two EndpointSlices while
// they are rewritten); given twice with different attributes, the more
// available copy wins (ready over serving over neither), so that a rewrite
// never hides a ready endpoint.
func NewSnapshot(service string, eps []Endpoint) (*Snapshot, error) {
	out := make([]Endpoint, 0, len(eps))
	for i, e := range eps {
		addr, err := CanonicalAddress(e.Address)
		if err != nil {
			return nil, fmt.Errorf("endpoint %d: %w", i, err)
		}
		e.Address = addr
		if e.ID != "" {
			if err := ValidID(e.ID); err != nil {
				return nil, fmt.Errorf("endpoint %d (%s): %w", i, addr, err)
			}
		}
		if err := ValidRevision(e.Revision); err != nil {
			return nil, fmt.Errorf("endpoint %d (%s): %w", i, addr, err)
		}
		if !e.KillTime.IsZero() {
			e.KillTime = e.KillTime.UTC().Round(0)
		}
		if e.Weight == 0 {
			e.Weight = 1
		}
		out = append(out, e)
	}
	slices.SortStableFunc(out, func(a, b Endpoint) int {
		if c := cmp.Compare(a.Address, b.Address); c != 0 {
			return c
		}
		return cmp.Compare(rank(b), rank(a)) // most available first
	})
	out = slices.CompactFunc(out, func(a, b Endpoint) bool { return a.Address == b.Address })
	return &Snapshot{Service: service, Endpoints: slices.Clip(out)}, nil
}

// MaxIDLength bounds Endpoint.ID: the length of a Kubernetes object name.
const MaxIDLength = 253

// ValidID returns nil when id may be an Endpoint.ID: 1 to MaxIDLength bytes
// of printable ASCII (0x21 to 0x7e, so no space or control character),
// and otherwise an error that names id and says why.
func ValidID(id string) error {
	if id == "" {
		return errors.New("id is empty (leave it out to hash by the address)")
	}
	return validToken("id", id)
}

// ValidRevision returns nil when r may be an Endpoint.Revision: empty (no
// revision), or 1 to MaxIDLength bytes of printable ASCII without spaces.
func ValidRevision(r string) error {
	if r == "" {
		return nil
	}
	return validToken("revision", r)
}

// validToken checks the shape IDs and revisions share, naming what s is.
func validToken(what, s string) error {
	if len(s) > MaxIDLength {
		return fmt.Errorf("%s %.20q...: %d bytes, want at most %d", what, s, len(s), MaxIDLength)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e {
			return fmt.Errorf("%s %q: byte %d is %q, want printable ASCII without spaces", what, s, i, c)
		}
	}
	return nil
}

// Rank orders endpoints by availability: 2 for ready and not terminating,
// 1 for serving, 0 otherwise. A higher rank wins an address given twice to
// NewSnapshot, and an ID shared by two endpoints in the balancer.
func Rank(e Endpoint) int { return rank(e) }

func rank(e Endpoint) int {
	switch {
	case e.Ready && !e.Terminating:
		return 2
	case e.Serving:
		return 1
	}
	return 0
}

// CanonicalAddress parses "ip:port" (IPv6 in brackets) and returns it in
// canonical form. Host names are refused: endpoints are addresses.
func CanonicalAddress(s string) (string, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		host, port, serr := net.SplitHostPort(s)
		if serr != nil {
			return "", fmt.Errorf("address %q: want ip:port: %w", s, serr)
		}
		if _, perr := strconv.ParseUint(port, 10, 16); perr != nil {
			return "", fmt.Errorf("address %q: bad port %q", s, port)
		}
		return "", fmt.Errorf("address %q: %q is not an IP address", s, host)
	}
	if ap.Port() == 0 {
		return "", fmt.Errorf("address %q: port 0", s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port()).String(), nil
}

// Eligible returns the endpoints new sessions may use, in s's order: the
// ready, non-terminating ones or, when there are none, the serving and
// terminating ones (so that a single-replica rollout is not black-holed).
// This is the one statement of the rule: the balancer builds its targets
// from it and drain moves sessions off every endpoint it leaves out. It
// returns nil for a nil s or when no endpoint qualifies, and otherwise a new
// slice each call that the caller may keep or modify.
func (s *Snapshot) Eligible() []Endpoint {
	if s == nil {
		return nil
	}
	var primary, fallback []Endpoint
	for _, e := range s.Endpoints {
		switch {
		case e.primary():
			primary = append(primary, e)
		case primary == nil && e.fallback():
			fallback = append(fallback, e)
		}
	}
	if primary != nil {
		return primary
	}
	return fallback
}

// Placement says where new sessions go. Eligible is Snapshot.Eligible:
// the endpoints that may take new sessions and keep theirs (drain moves
// sessions off every other one).
//
// While a rollout is under way, some eligible endpoints are on their way
// out too: they run the revision of an endpoint that is leaving. A session
// sent to one of them would move again when its turn comes, so new
// sessions prefer the others. The rule is active when some terminating
// endpoint that is not eligible runs a revision R (Endpoint.Revision) and
// some eligible endpoint runs a known revision that no such endpoint runs;
// then Outgoing[i] reports whether Eligible[i] runs a leaving revision, and
// Leaving lists, in snapshot order, the terminating endpoints that are not
// eligible and run a revision (a hash policy keeps their places in its
// table, so that only their keys go to the preferred endpoints). Otherwise
// (no revisions known, a pod deleted without a rollout, a rollout whose new
// pods are not ready yet) Outgoing and Leaving are nil and every eligible
// endpoint is preferred alike.
//
// Outgoing endpoints stay eligible: their sessions stay, sessions pinned to
// them still go there, and they take new ones when no preferred endpoint
// is left to try.
type Placement struct {
	Eligible []Endpoint
	Outgoing []bool
	Leaving  []Endpoint
}

// Active reports whether some eligible endpoint is outgoing.
func (p Placement) Active() bool { return p.Outgoing != nil }

// Preferred reports whether Eligible[i] is preferred for new sessions.
func (p Placement) Preferred(i int) bool { return p.Outgoing == nil || !p.Outgoing[i] }

// Placement returns the placement of new sessions on s; see Placement.
// This is the one statement of the revision rule: the balancer builds its
// pickers from it. The slices are new on each call.
func (s *Snapshot) Placement() Placement {
	pl := Placement{Eligible: s.Eligible()}
	if s == nil {
		return pl
	}
	var leaving map[string]bool // revisions of leaving endpoints
	for _, e := range s.Endpoints {
		if e.Terminating && e.Revision != "" && !pl.contains(e.Address) {
			if leaving == nil {
				leaving = make(map[string]bool)
			}
			leaving[e.Revision] = true
			pl.Leaving = append(pl.Leaving, e)
		}
	}
	if leaving == nil {
		return pl
	}
	outgoing := make([]bool, len(pl.Eligible))
	newer := false
	for i, e := range pl.Eligible {
		outgoing[i] = leaving[e.Revision]
		newer = newer || (e.Revision != "" && !outgoing[i])
	}
	if !newer || !slices.Contains(outgoing, true) {
		pl.Leaving = nil
		return pl
	}
	pl.Outgoing = outgoing
	return pl
}

// contains reports whether addr is one of p.Eligible (a subsequence of a
// Snapshot, so sorted by address).
func (p Placement) contains(addr string) bool {
	_, ok := slices.BinarySearchFunc(p.Eligible, addr, func(e Endpoint, a string) int { return cmp.Compare(e.Address, a) })
	return ok
}

// Find returns the endpoint with the given canonical address.
func (s *Snapshot) Find(addr string) (Endpoint, bool) {
	i, ok := slices.BinarySearchFunc(s.Endpoints, addr, func(e Endpoint, a string) int { return cmp.Compare(e.Address, a) })
	if !ok {
		return Endpoint{}, false
	}
	return s.Endpoints[i], true
}

// Equal reports whether s and o hold the same endpoints with the same
// attributes; kill times are equal when they are the same instant (a kill
// time that appears or moves is a change).
func (s *Snapshot) Equal(o *Snapshot) bool {
	if s == nil || o == nil {
		return s == o
	}
	return s.Service == o.Service && slices.EqualFunc(s.Endpoints, o.Endpoints, Endpoint.Equal)
}

// Equal reports whether e and o have the same attributes, kill times
// compared as instants.
func (e Endpoint) Equal(o Endpoint) bool {
	if !e.KillTime.Equal(o.KillTime) {
		return false
	}
	e.KillTime, o.KillTime = time.Time{}, time.Time{}
	return e == o
}
