package discovery

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ptr(b bool) *bool { return &b }

func TestConditionsResolve(t *testing.T) {
	cases := []struct {
		name    string
		c       Conditions
		r, s, x bool
	}{
		{"all absent", Conditions{}, true, true, false},
		{"not ready, serving absent", Conditions{Ready: ptr(false)}, false, false, false},
		{"terminating serving", Conditions{Ready: ptr(false), Serving: ptr(true), Terminating: ptr(true)}, false, true, true},
		{"terminating not serving", Conditions{Ready: ptr(false), Serving: ptr(false), Terminating: ptr(true)}, false, false, true},
		{"ready, serving absent", Conditions{Ready: ptr(true)}, true, true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, s, x := c.c.Resolve()
			if r != c.r || s != c.s || x != c.x {
				t.Errorf("got ready=%v serving=%v terminating=%v, want %v %v %v", r, s, x, c.r, c.s, c.x)
			}
		})
	}
}

func TestNewSnapshotSortsDedupsCanonicalises(t *testing.T) {
	s, err := NewSnapshot("svc", []Endpoint{
		{Address: "10.0.0.2:80", Ready: true, Serving: true},
		{Address: "[::ffff:10.0.0.1]:80", Ready: true, Serving: true},
		{Address: "10.0.0.2:80", Ready: false, Serving: true, Terminating: true}, // a stale copy from another slice
		{Address: "[2001:db8::1]:80"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.1:80", "10.0.0.2:80", "[2001:db8::1]:80"}
	if len(s.Endpoints) != len(want) {
		t.Fatalf("got %d endpoints %+v, want %v", len(s.Endpoints), s.Endpoints, want)
	}
	for i, w := range want {
		if s.Endpoints[i].Address != w {
			t.Errorf("endpoint %d: got %s, want %s", i, s.Endpoints[i].Address, w)
		}
		if s.Endpoints[i].Weight != 1 {
			t.Errorf("endpoint %d: weight %d, want default 1", i, s.Endpoints[i].Weight)
		}
	}
	if e, _ := s.Find("10.0.0.2:80"); !e.Ready || e.Terminating {
		t.Errorf("duplicate resolved to %+v, want the ready copy", e)
	}
	for _, bad := range []string{"localhost:80", "10.0.0.1", "10.0.0.1:0", "10.0.0.1:99999", ""} {
		if _, err := NewSnapshot("svc", []Endpoint{{Address: bad}}); err == nil {
			t.Errorf("address %q accepted, want an error", bad)
		}
	}
}

// TestSnapshotEligible: the ready, non-terminating endpoints; failing
// those, the serving and terminating ones; in snapshot order.
func TestSnapshotEligible(t *testing.T) {
	ready := func(a string) Endpoint { return Endpoint{Address: a, Ready: true, Serving: true} }
	term := func(a string) Endpoint { return Endpoint{Address: a, Serving: true, Terminating: true} }
	gone := func(a string) Endpoint { return Endpoint{Address: a, Terminating: true} }
	cases := []struct {
		name string
		eps  []Endpoint
		want []string
	}{
		{"ready only", []Endpoint{ready("10.0.0.1:80"), ready("10.0.0.2:80")}, []string{"10.0.0.1:80", "10.0.0.2:80"}},
		{"ready beats terminating", []Endpoint{term("10.0.0.1:80"), ready("10.0.0.2:80"), gone("10.0.0.3:80")}, []string{"10.0.0.2:80"}},
		{"fallback to serving terminating", []Endpoint{term("10.0.0.1:80"), gone("10.0.0.2:80"), term("10.0.0.3:80")}, []string{"10.0.0.1:80", "10.0.0.3:80"}},
		{"not ready, not terminating", []Endpoint{{Address: "10.0.0.1:80", Serving: true}, term("10.0.0.2:80")}, []string{"10.0.0.2:80"}},
		{"ready and terminating is not primary", []Endpoint{{Address: "10.0.0.1:80", Ready: true, Serving: true, Terminating: true}}, []string{"10.0.0.1:80"}},
		{"none", []Endpoint{gone("10.0.0.1:80"), {Address: "10.0.0.2:80"}}, nil},
		{"empty", nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := NewSnapshot("svc", c.eps)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range s.Eligible() {
				got = append(got, e.Address)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
	if got := (*Snapshot)(nil).Eligible(); got != nil {
		t.Errorf("nil snapshot: got %v, want nil", got)
	}
	// A new slice each call: modifying one does not touch the snapshot.
	s, _ := NewSnapshot("svc", []Endpoint{ready("10.0.0.1:80")})
	s.Eligible()[0].Address = "changed"
	if s.Endpoints[0].Address != "10.0.0.1:80" || s.Eligible()[0].Address != "10.0.0.1:80" {
		t.Error("modifying Eligible's result changed the snapshot")
	}
}

func TestParseEndpointsFile(t *testing.T) {
	s, err := ParseEndpointsFile("f", []byte(`
endpoints:
  - {address: "127.0.0.1:7101", zone: a, weight: 3}
  - {address: "127.0.0.1:7102", ready: false, serving: true, terminating: true, pod: p2, revision: 5d8f9c}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Endpoints) != 2 || s.Endpoints[0].Weight != 3 || s.Endpoints[0].Zone != "a" || !s.Endpoints[0].Ready {
		t.Errorf("got %+v", s.Endpoints)
	}
	if e := s.Endpoints[1]; e.Ready || !e.Serving || !e.Terminating || e.Pod != "p2" || e.Revision != "5d8f9c" {
		t.Errorf("got %+v, want terminating and serving", e)
	}
	if _, err := ParseEndpointsFile("f", []byte("- {address: 127.0.0.1:1}\n")); err != nil {
		t.Errorf("plain list refused: %v", err)
	}
	for name, in := range map[string]string{
		"unknown field":             "endpoints:\n  - {address: 127.0.0.1:1, raedy: true}\n",
		"bad address":               "endpoints:\n  - {address: nowhere}\n",
		"not yaml":                  "endpoints: [",
		"killTime, not terminating": "- {address: 127.0.0.1:1, killTime: \"2030-06-01T12:00:00Z\"}\n",
		"killTime not RFC 3339":     "- {address: 127.0.0.1:1, terminating: true, killTime: \"2030-06-01\"}\n",
		"killTime a number":         "- {address: 127.0.0.1:1, terminating: true, killTime: 12}\n",
		"revision with a space":     "- {address: 127.0.0.1:1, revision: \"a b\"}\n",
	} {
		if _, err := ParseEndpointsFile("f", []byte(in)); err == nil {
			t.Errorf("%s: accepted, want an error", name)
		}
	}
}

func TestFileSourceFollowsEditsAndKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "eps.yaml")
	write := func(s string) {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write("- {address: 127.0.0.1:1}\n")
	got := make(chan *Snapshot, 10)
	errs := make(chan error, 10)
	src := &File{Service: "f", Path: path, Poll: time.Hour, OnError: func(err error) { errs <- err }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, func(s *Snapshot) { got <- s }) }()
	defer func() { cancel(); <-done }()

	next := func() *Snapshot {
		select {
		case s := <-got:
			return s
		case <-time.After(5 * time.Second):
			t.Fatal("no snapshot published")
			return nil
		}
	}
	if s := next(); len(s.Endpoints) != 1 {
		t.Fatalf("first snapshot: %+v", s.Endpoints)
	}
	write("- {address: 127.0.0.1:1, ready: false, serving: true, terminating: true}\n- {address: 127.0.0.1:2}\n")
	if s := next(); len(s.Endpoints) != 2 || !s.Endpoints[0].Terminating {
		t.Fatalf("after edit: %+v", s.Endpoints)
	}
	write("- {address: 127.0.0.1:1, bogus: 1}\n")
	select {
	case err := <-errs:
		t.Logf("bad edit rejected: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("bad edit not reported")
	}
	select {
	case s := <-got:
		t.Fatalf("bad edit published %+v", s)
	case <-time.After(200 * time.Millisecond):
	}
	write("- {address: 127.0.0.1:3}\n")
	if s := next(); len(s.Endpoints) != 1 || s.Endpoints[0].Address != "127.0.0.1:3" {
		t.Fatalf("after recovery: %+v", s.Endpoints)
	}
}

func TestFileSourceRefusesBadStart(t *testing.T) {
	src := &File{Service: "f", Path: filepath.Join(t.TempDir(), "missing.yaml")}
	if err := src.Run(context.Background(), func(*Snapshot) {}); err == nil {
		t.Fatal("missing file accepted")
	}
}

func FuzzParseEndpointsFile(f *testing.F) {
	f.Add([]byte("- {address: 127.0.0.1:1}\n"))
	f.Add([]byte("endpoints:\n  - {address: \"[::1]:8080\", ready: false, weight: 2}\n"))
	f.Add([]byte(""))
	f.Add([]byte("# nothing\n"))
	f.Add([]byte("endpoints: []\nallowEmpty: true\n"))
	f.Add([]byte("- {address: 10.0.0.1:80, ready: false, serving: true, terminating: true, killTime: \"2030-01-01T00:00:00.5+02:00\"}\n"))
	f.Add([]byte("- {address: 10.0.0.1:80, killTime: 2030-01-01T00:00:00Z}\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		s, err := ParseEndpointsFile("f", in)
		if err != nil {
			return
		}
		if len(s.Endpoints) == 0 && !bytes.Contains(in, []byte("allowEmpty")) {
			t.Fatalf("%q: an empty snapshot without allowEmpty", in)
		}
		for i, e := range s.Endpoints {
			if i > 0 && s.Endpoints[i-1].Address >= e.Address {
				t.Fatalf("not sorted and unique: %+v", s.Endpoints)
			}
			if e.Weight == 0 {
				t.Fatalf("weight 0 in %+v", e)
			}
			if !e.KillTime.IsZero() && (!e.Terminating || e.KillTime.Location() != time.UTC) {
				t.Fatalf("kill time on %+v: want only on terminating endpoints, in UTC", e)
			}
		}
	})
}

// TestKillTimeIsPartOfEquality: a kill time that appears or moves makes a
// new snapshot differ; the same instant in another location or with a
// monotonic reading does not.
func TestKillTimeIsPartOfEquality(t *testing.T) {
	at := time.Now() // carries a monotonic reading
	mk := func(kill time.Time) *Snapshot {
		t.Helper()
		s, err := NewSnapshot("svc", []Endpoint{{Address: "192.0.2.1:80", Serving: true, Terminating: true, KillTime: kill}})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	none, kill := mk(time.Time{}), mk(at)
	if none.Equal(kill) {
		t.Error("a kill time that appears is no change")
	}
	if kill.Equal(mk(at.Add(-time.Second))) {
		t.Error("a kill time that moves is no change")
	}
	same := mk(at.In(time.FixedZone("x", 3600)).Round(0))
	if !kill.Equal(same) || kill.Endpoints[0] != same.Endpoints[0] {
		t.Errorf("the same instant differs: %#v vs %#v", kill.Endpoints[0].KillTime, same.Endpoints[0].KillTime)
	}
	if got := kill.Endpoints[0].KillTime; got.Location() != time.UTC || !got.Equal(at) {
		t.Errorf("kill time stored as %v, want %v in UTC", got, at)
	}
	// Snapshots built by hand (not through NewSnapshot) still compare
	// instants.
	a := &Snapshot{Service: "s", Endpoints: []Endpoint{{Address: "192.0.2.1:80", KillTime: at}}}
	b := &Snapshot{Service: "s", Endpoints: []Endpoint{{Address: "192.0.2.1:80", KillTime: at.UTC()}}}
	if !a.Equal(b) {
		t.Error("hand-built snapshots with the same kill instant differ")
	}
}

// TestSnapshotPlacement: while an endpoint of revision R is leaving, the
// eligible endpoints of R are outgoing and the others preferred; without a
// known newer revision, or without a leaving one, every eligible endpoint
// is preferred alike.
func TestSnapshotPlacement(t *testing.T) {
	ep := func(a, rev string, ready, term bool) Endpoint {
		return Endpoint{Address: a, Revision: rev, Ready: ready, Serving: ready || term, Terminating: term}
	}
	cases := []struct {
		name     string
		eps      []Endpoint
		outgoing []string // eligible addresses marked outgoing; nil: inactive
		leaving  []string
	}{
		{"steady, one revision", []Endpoint{ep("10.0.0.1:80", "r1", true, false), ep("10.0.0.2:80", "r1", true, false)}, nil, nil},
		{"first pod of a rollout leaves", []Endpoint{
			ep("10.0.0.1:80", "r1", false, true), ep("10.0.0.2:80", "r1", true, false),
			ep("10.0.0.3:80", "r1", true, false), ep("10.0.0.4:80", "r2", true, false),
		}, []string{"10.0.0.2:80", "10.0.0.3:80"}, []string{"10.0.0.1:80"}},
		{"new pod not ready yet", []Endpoint{
			ep("10.0.0.1:80", "r1", false, true), ep("10.0.0.2:80", "r1", true, false), ep("10.0.0.4:80", "r2", false, false),
		}, nil, nil},
		{"a pod deleted, no rollout", []Endpoint{
			ep("10.0.0.1:80", "r1", false, true), ep("10.0.0.2:80", "r1", true, false), ep("10.0.0.3:80", "r1", true, false),
		}, nil, nil},
		{"last old pod leaves", []Endpoint{
			ep("10.0.0.3:80", "r1", false, true), ep("10.0.0.4:80", "r2", true, false), ep("10.0.0.5:80", "r2", true, false),
		}, nil, nil},
		{"revisions unknown", []Endpoint{
			ep("10.0.0.1:80", "", false, true), ep("10.0.0.2:80", "", true, false), ep("10.0.0.3:80", "", true, false),
		}, nil, nil},
		{"unknown revision is not newer", []Endpoint{
			ep("10.0.0.1:80", "r1", false, true), ep("10.0.0.2:80", "r1", true, false), ep("10.0.0.3:80", "", true, false),
		}, nil, nil},
		{"two old revisions leave", []Endpoint{
			ep("10.0.0.1:80", "r1", false, true), ep("10.0.0.2:80", "r2", false, true), ep("10.0.0.3:80", "r2", true, false),
			ep("10.0.0.4:80", "r3", true, false), ep("10.0.0.5:80", "r1", true, false),
		}, []string{"10.0.0.3:80", "10.0.0.5:80"}, []string{"10.0.0.1:80", "10.0.0.2:80"}},
		{"only terminating left (fallback)", []Endpoint{
			ep("10.0.0.1:80", "r1", false, true), ep("10.0.0.2:80", "r2", false, true),
		}, nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := NewSnapshot("svc", c.eps)
			if err != nil {
				t.Fatal(err)
			}
			pl := s.Placement()
			if !slices.EqualFunc(pl.Eligible, s.Eligible(), Endpoint.Equal) {
				t.Fatalf("Eligible %v, want Snapshot.Eligible %v", pl.Eligible, s.Eligible())
			}
			var out, leaving []string
			for i, e := range pl.Eligible {
				if !pl.Preferred(i) {
					out = append(out, e.Address)
				}
			}
			for _, e := range pl.Leaving {
				leaving = append(leaving, e.Address)
			}
			if pl.Active() != (c.outgoing != nil) || !slices.Equal(out, c.outgoing) || !slices.Equal(leaving, c.leaving) {
				t.Errorf("active %v, outgoing %v, leaving %v; want outgoing %v, leaving %v", pl.Active(), out, leaving, c.outgoing, c.leaving)
			}
		})
	}
	if pl := (*Snapshot)(nil).Placement(); pl.Eligible != nil || pl.Active() {
		t.Errorf("nil snapshot: %+v", pl)
	}
}
