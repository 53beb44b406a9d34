package app

import (
	"net"
	"slices"
	"sync"
	"time"

	"github.com/longhaul-proxy/longhaul/admin"
	"github.com/longhaul-proxy/longhaul/drain"
	"github.com/longhaul-proxy/longhaul/proxy/upstream"
)

// status is the admin address's live view (admin.Status): every listener,
// its backends' endpoints with their conditions and sessions, their drains,
// and the recent migrations. It reads each session's Info once, to count
// them and to match migrations to the clients' next sessions.
func (a *App) status() *admin.Status {
	now := time.Now()
	infos := a.sessions.Infos()
	type count struct{ live, migrating int }
	perEP := map[uint64]map[string]*count{} // upstream ID -> endpoint -> sessions
	perUp := map[uint64]int{}
	for _, in := range infos {
		m := perEP[in.UpstreamID]
		if m == nil {
			m = map[string]*count{}
			perEP[in.UpstreamID] = m
		}
		c := m[in.Endpoint]
		if c == nil {
			c = &count{}
			m[in.Endpoint] = c
		}
		c.live++
		if in.Migrating {
			c.migrating++
		}
		perUp[in.UpstreamID]++
	}
	st := &admin.Status{At: now, Listeners: []admin.StatusListener{}}
	byListener := map[*listener]int{}
	a.each(func(l *listener, b *backend) {
		i, ok := byListener[l]
		if !ok {
			i = len(st.Listeners)
			byListener[l] = i
			proto := l.cfg.Protocol
			if proto == "" {
				proto = "tcp"
			}
			st.Listeners = append(st.Listeners, admin.StatusListener{Name: l.cfg.Name, Protocol: proto,
				Address: l.ln.Addr().String(), Backends: []admin.StatusBackend{}})
		}
		id := b.up.ID()
		v := admin.StatusBackend{Name: b.name, Sessions: perUp[id], Endpoints: []admin.StatusEndpoint{},
			Drains: []admin.StatusDrain{}}
		p, s := b.up.State() // a matching pair
		v.Fingerprint = fingerprintHex(p)
		targets := map[string]bool{}
		outgoing := map[string]bool{}
		if p != nil {
			for _, t := range p.Targets() {
				targets[t.Endpoint.Address] = true
				outgoing[t.Endpoint.Address] = t.Outgoing()
			}
		}
		counts := perEP[id]
		listed := map[string]bool{}
		if s != nil {
			for _, e := range s.Endpoints {
				listed[e.Address] = true
				se := admin.StatusEndpoint{Address: e.Address, Pod: e.Pod, Zone: e.Zone, Revision: e.Revision,
					Ready: e.Ready, Serving: e.Serving, Terminating: e.Terminating,
					Eligible: targets[e.Address], Outgoing: outgoing[e.Address]}
				if !e.KillTime.IsZero() {
					k := e.KillTime
					se.KillTime = &k
				}
				if c := counts[e.Address]; c != nil {
					se.Sessions, se.Migrating = c.live, c.migrating
				}
				v.Endpoints = append(v.Endpoints, se)
			}
		}
		var gone []string
		for ep := range counts {
			if !listed[ep] {
				gone = append(gone, ep)
			}
		}
		slices.Sort(gone)
		for _, ep := range gone {
			c := counts[ep]
			v.Endpoints = append(v.Endpoints, admin.StatusEndpoint{Address: ep, Gone: true,
				Sessions: c.live, Migrating: c.migrating})
		}
		ds := b.drain.Drains()
		if len(ds) > maxDebugDrains {
			ds = ds[:maxDebugDrains]
		}
		for _, d := range ds {
			v.Drains = append(v.Drains, d)
		}
		st.Listeners[i].Backends = append(st.Listeners[i].Backends, v)
	})
	st.Migrations = a.migrations.recent(infos, now)
	return st
}

// matchWindow is how long after a migration ended a session of the same
// client may be taken for the client's next one (its To).
const matchWindow = 30 * time.Second

// maxAskedReasons bounds migrationLog.reasons: past it, the reasons of
// sessions no longer live are forgotten.
const maxAskedReasons = 1 << 16

// migrationLog keeps the recent migrations that ended, for the live view:
// at most admin.MaxStatusMigrations, with why each was asked and where its
// client went next.
//
// A migration's To is the endpoint of the earliest session, seen live by a
// status call, that was leased after the migrated session was asked to move
// (and within matchWindow of its end) on the same
// upstream from the same client IP, and that no other
// migration took: the client's reconnect, as far as longhaul can tell (two
// clients behind one address may swap; per-request HTTP/2 balancing has no
// client session to follow, so no To). It is fixed once found.
//
// A session's drain asks it to move (asked, with the reason) just after
// Migrate, so a session closed at once may end (ended) before its reason is
// known: whichever comes second completes the entry. Safe for concurrent
// use.
type migrationLog struct {
	mu      sync.Mutex
	reasons map[uint64]string // session ID -> reason: asked, not ended yet
	ring    []*migrationEntry // oldest first
	byID    map[uint64]*migrationEntry
	claimed map[uint64]bool // session IDs taken as a To
}

type migrationEntry struct {
	v        admin.StatusMigration
	id       uint64 // the migrated session's
	upstream uint64
	clientIP string
	asked    time.Time // when it was asked to move
	toID     uint64    // the session taken as To; 0 before
}

// asked records why session s was asked to move.
func (m *migrationLog) asked(s drain.Session, reason string, live func() []upstream.SessionInfo) {
	us, ok := s.(upstream.Session)
	if !ok {
		return // a downstream connection: no endpoint to come from
	}
	id := us.Info().ID
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.byID[id]; e != nil {
		e.v.Reason = reason // it ended first
		return
	}
	if m.reasons == nil {
		m.reasons = map[uint64]string{}
	}
	if len(m.reasons) >= maxAskedReasons {
		// Sessions that ended without being reported (before Migrate).
		ids := map[uint64]bool{}
		for _, in := range live() {
			ids[in.ID] = true
		}
		for id := range m.reasons {
			if !ids[id] {
				delete(m.reasons, id)
			}
		}
	}
	if len(m.reasons) < maxAskedReasons {
		m.reasons[id] = reason
	}
}

// ended records a migration's end.
func (m *migrationLog) ended(e upstream.MigrationEnd, at time.Time) {
	in := e.Info
	ent := &migrationEntry{id: in.ID, upstream: in.UpstreamID, clientIP: clientIP(in.Client), asked: at.Add(-e.Took),
		v: admin.StatusMigration{Ended: at, Backend: in.Upstream, Protocol: in.Protocol, Outcome: e.Outcome,
			From: in.Endpoint, Took: e.Took.Seconds()}}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.byID == nil {
		m.byID, m.claimed = map[uint64]*migrationEntry{}, map[uint64]bool{}
	}
	ent.v.Reason = m.reasons[in.ID]
	delete(m.reasons, in.ID)
	m.ring = append(m.ring, ent)
	m.byID[in.ID] = ent
	if len(m.ring) > admin.MaxStatusMigrations {
		old := m.ring[0]
		m.ring = slices.Delete(m.ring, 0, 1)
		delete(m.byID, old.id)
		delete(m.claimed, old.toID)
	}
}

// recent matches the migrations without a To against the live sessions
// (see migrationLog) and returns them, newest first.
func (m *migrationLog) recent(live []upstream.SessionInfo, now time.Time) []admin.StatusMigration {
	unmatched := func(e *migrationEntry) bool {
		return e.toID == 0 && e.clientIP != "" && now.Sub(e.v.Ended) < matchWindow+time.Second
	}
	m.mu.Lock()
	todo := slices.ContainsFunc(m.ring, unmatched)
	m.mu.Unlock()
	var byStart []upstream.SessionInfo
	if todo {
		byStart = slices.Clone(live)
		slices.SortFunc(byStart, func(a, b upstream.SessionInfo) int { return a.Started.Compare(b.Started) })
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]admin.StatusMigration, 0, len(m.ring))
	for _, e := range m.ring { // oldest first: it takes the earliest reconnect
		if unmatched(e) {
			for _, in := range byStart {
				if in.UpstreamID == e.upstream && !m.claimed[in.ID] && in.ID != e.id &&
					!in.Started.Before(e.asked) && in.Started.Sub(e.v.Ended) < matchWindow &&
					clientIP(in.Client) == e.clientIP {
					e.toID, e.v.To = in.ID, in.Endpoint
					m.claimed[in.ID] = true
					break
				}
			}
		}
	}
	for i := len(m.ring) - 1; i >= 0; i-- {
		out = append(out, m.ring[i].v)
	}
	return out
}

// clientIP returns the host of a client address "ip:port", "" if none.
func clientIP(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return host
}
