package app

import (
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/admin"
	"github.com/longhaul-proxy/longhaul/drain"
	"github.com/longhaul-proxy/longhaul/proxy/upstream"
)

// fakeSession is an upstream.Session known by its Info only.
type fakeSession struct{ info upstream.SessionInfo }

func (f fakeSession) Info() upstream.SessionInfo { return f.info }
func (fakeSession) Migrate(time.Time)            {}
func (fakeSession) Close()                       {}

var _ drain.Session = fakeSession{}

// TestMigrationLog: a migration's reason is kept whether it is asked before
// or after the session ended; its To is the earliest later session of the
// same client IP on the same upstream, each session taken once; the log
// keeps the newest admin.MaxStatusMigrations, newest first.
func TestMigrationLog(t *testing.T) {
	var m migrationLog
	t0 := time.Now()
	none := func() []upstream.SessionInfo { return nil }
	info := func(id uint64, ep, client string, started time.Time) upstream.SessionInfo {
		return upstream.SessionInfo{ID: id, UpstreamID: 1, Upstream: "echo", Protocol: "tcp", Endpoint: ep, Client: client, Started: started}
	}
	a := info(1, "10.0.0.2:80", "192.0.2.1:1000", t0.Add(-time.Minute))
	b := info(2, "10.0.0.2:80", "192.0.2.1:1001", t0.Add(-time.Minute))
	m.asked(fakeSession{a}, drain.ReasonEndpoint, none)
	m.ended(upstream.MigrationEnd{Info: a, Took: time.Second, Outcome: upstream.OutcomeMoved}, t0.Add(time.Second))
	m.ended(upstream.MigrationEnd{Info: b, Took: 0, Outcome: upstream.OutcomeClosed}, t0.Add(2*time.Second))
	m.asked(fakeSession{b}, drain.ReasonRebalance, none) // after its end
	live := []upstream.SessionInfo{
		info(5, "10.0.0.9:80", "198.51.100.7:5", t0.Add(time.Second)), // another client
		info(4, "10.0.0.4:80", "192.0.2.1:2001", t0.Add(3*time.Second)),
		info(3, "10.0.0.3:80", "192.0.2.1:2000", t0.Add(1500*time.Millisecond)),
	}
	got := m.recent(live, t0.Add(4*time.Second))
	want := []admin.StatusMigration{
		{Ended: t0.Add(2 * time.Second), Backend: "echo", Protocol: "tcp", Reason: "rebalance", Outcome: "closed", From: "10.0.0.2:80", To: "10.0.0.4:80"},
		{Ended: t0.Add(time.Second), Backend: "echo", Protocol: "tcp", Reason: "endpoint", Outcome: "moved", From: "10.0.0.2:80", To: "10.0.0.3:80", Took: 1},
	}
	if len(got) != len(want) {
		t.Fatalf("recent: %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("recent[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	for i := range admin.MaxStatusMigrations + 5 {
		s := info(uint64(100+i), "10.0.0.2:80", "", t0)
		m.ended(upstream.MigrationEnd{Info: s, Outcome: upstream.OutcomeForced}, t0.Add(time.Duration(10+i)*time.Second))
	}
	got = m.recent(nil, t0)
	if len(got) != admin.MaxStatusMigrations || !got[0].Ended.Equal(t0.Add(time.Duration(10+admin.MaxStatusMigrations+4)*time.Second)) {
		t.Errorf("after %d more: %d kept, newest %v", admin.MaxStatusMigrations+5, len(got), got[0].Ended)
	}
	if len(m.byID) != admin.MaxStatusMigrations || len(m.claimed) != 0 {
		t.Errorf("%d entries by id, %d claimed, want %d and 0", len(m.byID), len(m.claimed), admin.MaxStatusMigrations)
	}
}
