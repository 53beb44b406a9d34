package balancer

import (
	"fmt"
	"testing"

	"github.com/longhaul-proxy/longhaul/discovery"
)

// identified returns n ready endpoints of weight 1 with IDs "db-0".."db-(n-1)"
// and addresses addrOf(0..n-1).
func identified(n int) []discovery.Endpoint {
	eps := readyEndpoints(n)
	for i := range eps {
		eps[i].ID = fmt.Sprintf("db-%d", i)
	}
	return eps
}

// ids returns the ID of the endpoint each key maps to under p ("" for no
// ID, "nil" for no target).
func ids(p Picker, keys []uint64) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = "nil"
		if t := p.Pick(k, nil); t != nil {
			out[i] = t.Endpoint.ID
		}
	}
	return out
}

// moved counts the positions where a and b differ.
func moved(a, b []string) int {
	n := 0
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

// TestIdentitySameIDNewAddress: one of 5 endpoints replaced under a new
// address (sorting elsewhere among the addresses) but the same ID moves
// none of 10,000 keys: each key goes to the same identity, the replaced
// one's keys to the new address. Replaced under a new ID, keys move as when
// an address replaces another without IDs: those of the old member, those
// the new one takes, and few others.
func TestIdentitySameIDNewAddress(t *testing.T) {
	keys := keyPool(10_000)
	for _, pol := range []Policy{{}, {TableSize: 1009}} {
		before := identified(5)
		pb := mustBuild(t, before, pol, nil)
		same := identified(5)
		same[2].Address = "10.9.9.9:8080" // last in address order now
		pa := mustBuild(t, same, pol, nil)
		if n := moved(ids(pb, keys), ids(pa, keys)); n != 0 {
			t.Errorf("%+v: same ID, new address: %d of %d keys moved, want 0", pol, n, len(keys))
		}
		got := addresses(pa, keys)
		for i, id := range ids(pb, keys) {
			if id == "db-2" && got[i] != "10.9.9.9:8080" {
				t.Fatalf("%+v: key %d of db-2 went to %s, want the new address", pol, i, got[i])
			}
		}
		if pa.Fingerprint() == pb.Fingerprint() {
			t.Errorf("%+v: fingerprints equal over different addresses", pol)
		}

		renamed := identified(5)
		renamed[2].Address, renamed[2].ID = "10.9.9.9:8080", "db-7"
		pr := mustBuild(t, renamed, pol, nil)
		b, a := ids(pb, keys), ids(pr, keys)
		n, collateral := moved(b, a), 0
		for i := range b {
			if b[i] != a[i] && b[i] != "db-2" && a[i] != "db-7" {
				collateral++ // between members that stayed: Maglev's small disruption
			}
		}
		// Its share is 2,000: the old member's keys leave it and the new
		// member takes a share from all, db-2's former slots among them,
		// so between 1.2 and 2 shares move (as when an address replaces
		// another without IDs), nearly all to or from those two.
		if n < 2400 || n > 4000 || collateral > len(keys)/50 {
			t.Errorf("%+v: new ID: %d of %d keys moved (%d between other members), want 2400 to 4000 (at most %d between others)",
				pol, n, len(keys), collateral, len(keys)/50)
		}
		plainB, plainA := readyEndpoints(5), readyEndpoints(5)
		plainA[2].Address = "10.9.9.9:8080"
		if np := moved(addresses(mustBuild(t, plainB, pol, nil), keys), addresses(mustBuild(t, plainA, pol, nil), keys)); np < n*8/10 || np > n*12/10 {
			t.Errorf("%+v: new ID moved %d keys, a new address without IDs %d: want within 20%%", pol, n, np)
		}
		t.Logf("%+v: same ID 0 moved; new ID %d of %d moved, %d of them between other members", pol, n, len(keys), collateral)
	}
}

// TestIdentityWithoutIDs: endpoints without IDs hash by address exactly as
// before IDs existed (TestGoldenKeys pins that), and an endpoint whose ID is
// its own address still hashes apart from the address (the ID namespace is
// separate), deterministically.
func TestIdentityWithoutIDs(t *testing.T) {
	eps := readyEndpoints(5)
	keys, has := hashKeys(mustBuild(t, eps, Policy{}, nil).(*maglevPicker).targets)
	if has {
		t.Errorf("no IDs: hashKeys reports IDs")
	}
	for i, k := range keys {
		if k != eps[i].Address {
			t.Errorf("key %d: %q, want the address %q", i, k, eps[i].Address)
		}
	}
	eps[0].ID = eps[0].Address
	keys, _ = hashKeys(mustBuild(t, eps, Policy{}, nil).(*maglevPicker).targets)
	if want := idKeyPrefix + eps[0].Address; keys[0] != want {
		t.Errorf("ID equal to the address: key %q, want %q", keys[0], want)
	}
}

// TestIdentityShared: two endpoints with one ID. The more available holds
// it (a ready replacement over its terminating predecessor, when both are
// targets), else the lower address; the other hashes by its address. The
// outcome does not depend on the order the endpoints are listed in, and it
// is the same as when the loser has no ID.
func TestIdentityShared(t *testing.T) {
	keys := keyPool(10_000)
	base := identified(5)
	ref := mustBuild(t, base, Policy{}, nil)

	// Both ready: the lower address, addrOf(2), holds db-2.
	dup := append(identified(5), discovery.Endpoint{Address: "10.9.9.9:8080", ID: "db-2", Ready: true, Serving: true, Weight: 1})
	p := mustBuild(t, dup, Policy{}, nil)
	hk, _ := hashKeys(p.(*maglevPicker).targets)
	for i, tg := range p.(*maglevPicker).targets {
		want := idKeyPrefix + tg.Endpoint.ID
		if tg.Endpoint.Address == "10.9.9.9:8080" {
			want = "10.9.9.9:8080"
		}
		if hk[i] != want {
			t.Errorf("both ready: %s hashes by %q, want %q", tg.Endpoint.Address, hk[i], want)
		}
	}
	noID := append(identified(5), discovery.Endpoint{Address: "10.9.9.9:8080", Ready: true, Serving: true, Weight: 1})
	if a, b := addresses(p, keys), addresses(mustBuild(t, noID, Policy{}, nil), keys); moved(a, b) != 0 {
		t.Errorf("the loser of a shared ID maps keys unlike an endpoint without ID: %d keys differ", moved(a, b))
	}
	rev := make([]discovery.Endpoint, len(dup))
	for i, e := range dup {
		rev[len(dup)-1-i] = e
	}
	pr := mustBuild(t, rev, Policy{}, nil)
	if moved(addresses(p, keys), addresses(pr, keys)) != 0 || p.Fingerprint() != pr.Fingerprint() {
		t.Errorf("a shared ID resolved differently for another listing order")
	}

	// Rank first: a ready endpoint holds the ID over a terminating one of
	// lower address (both are targets together only in a hand-built set).
	old := discovery.Endpoint{Address: addrOf(0), ID: "db-0", Serving: false, Terminating: true}
	repl := discovery.Endpoint{Address: "10.9.9.9:8080", ID: "db-0", Ready: true, Serving: true}
	if !holds(&repl, &old) || holds(&old, &repl) {
		t.Errorf("a ready endpoint does not hold the ID over a terminating one of lower address")
	}

	// A replacement listed beside its terminating predecessor: the
	// predecessor is no target while the replacement is ready, so the
	// replacement holds the ID and no key of the others moves.
	rollout := identified(5)
	rollout[2].Ready, rollout[2].Terminating = false, true
	rollout = append(rollout, discovery.Endpoint{Address: "10.9.9.9:8080", ID: "db-2", Ready: true, Serving: true, Weight: 1})
	if n := moved(ids(ref, keys), ids(mustBuild(t, rollout, Policy{}, nil), keys)); n != 0 {
		t.Errorf("replacement beside its terminating predecessor: %d keys moved, want 0", n)
	}
}

// TestIdentityFingerprint: IDs count in fingerprints (both kinds), and
// pickers without IDs keep the fingerprints pinned by TestFingerprintSame.
func TestIdentityFingerprint(t *testing.T) {
	for _, pol := range []Policy{{}, {Kind: LeastConnections}} {
		plain := mustBuild(t, readyEndpoints(5), pol, nil).Fingerprint()
		a := mustBuild(t, identified(5), pol, nil).Fingerprint()
		other := identified(5)
		other[3].ID = "db-9"
		b := mustBuild(t, other, pol, nil).Fingerprint()
		if a == plain || b == plain || a == b {
			t.Errorf("%v: fingerprints %#x (no IDs), %#x, %#x (one other ID): want all different", pol.Kind, plain, a, b)
		}
		if again := mustBuild(t, identified(5), pol, nil).Fingerprint(); again != a {
			t.Errorf("%v: fingerprint %#x then %#x over the same IDs", pol.Kind, a, again)
		}
	}
}

// TestIdentityLeastConnections: least-connections ignores IDs: load
// counters stay keyed by address, and two endpoints sharing an ID are both
// picked.
func TestIdentityLeastConnections(t *testing.T) {
	eps := identified(2)
	eps[1].ID = eps[0].ID
	loads := NewLoads()
	p := mustBuild(t, eps, Policy{Kind: LeastConnections}, loads)
	seen := map[string]bool{}
	for k := range uint64(200) {
		tg := p.Pick(HashString(fmt.Sprint(k)), nil)
		tg.Acquire()
		seen[tg.Endpoint.Address] = true
	}
	if len(seen) != 2 {
		t.Errorf("least-connections over two endpoints sharing an ID picked %d of them", len(seen))
	}
	for _, tg := range p.Targets() {
		if tg.Active() == 0 {
			t.Errorf("%s: no active session counted by address", tg.Endpoint.Address)
		}
	}
}
