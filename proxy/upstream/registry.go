package upstream

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Session is a relayed connection (or an upgraded stream) that is registered
// under the endpoint it talks to, so that drain can find it. Implementations
// are safe for concurrent use.
type Session interface {
	Info() SessionInfo
	// Migrate asks the session to leave its endpoint no later than deadline,
	// by whatever means its protocol has. It returns at once; the session
	// ends itself and is then removed from the registry.
	Migrate(deadline time.Time)
	// Close ends the session now, delivering the bytes already read.
	Close()
}

// SessionInfo describes a session for /debug/sessions and drain decisions.
type SessionInfo struct {
	ID       uint64 `json:"id"`
	Listener string `json:"listener"`
	// Upstream names the upstream the session was leased from: the
	// listener's name, or for a listener with routes "listener/backend".
	// Drain goes by it.
	Upstream string `json:"upstream"`
	// UpstreamID is the upstream's Upstream.ID.
	UpstreamID uint64    `json:"-"`
	Protocol   string    `json:"protocol"`
	Endpoint   string    `json:"endpoint"`
	Client     string    `json:"client"`
	Started    time.Time `json:"started"`
	// Migrating is set once Migrate was called; Deadline is then when the
	// session will be closed if it has not left by itself.
	Migrating bool      `json:"migrating"`
	Deadline  time.Time `json:"deadline,omitzero"`
}

// MigrationEnd describes a session that ended after it was asked to move.
type MigrationEnd struct {
	Info    SessionInfo
	Took    time.Duration // from the request to move to the session's end
	Outcome string        // OutcomeMoved, OutcomeForced or OutcomeClosed
}

// Registry holds the live sessions by endpoint address. A session is
// registered by its Lease, at pick time, before its endpoint is dialled, and
// removed when it ends; leases are ordered against picker swaps (see
// Upstream), so a drain that lists an endpoint's sessions after the picker
// that excludes it was swapped in never misses one.
//
// Lock order: the Registry's lock is the innermost. No Session method and
// no callback (OnMigrationEnd, OnEndpointIdle) is called with it held, but
// WhenIdle's fn, which must not call the Registry or a Session.
type Registry struct {
	mu     sync.Mutex
	byEP   map[string]map[uint64]Session
	n      atomic.Int64
	nextID atomic.Uint64
	// changed is closed and replaced whenever a session is removed, so that
	// Wait can sleep without polling.
	changed chan struct{}
	// perUpstream counts the live sessions of each upstream (WaitUpstream).
	perUpstream map[uint64]int

	// OnMigrationEnd, if set before the first Register, is called when a
	// session that was asked to move ends.
	OnMigrationEnd func(MigrationEnd)
	// OnEndpointIdle, if set before the first Register, is called when the
	// last live session of an endpoint ends (see WhenIdle).
	OnEndpointIdle func(addr string)
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry {
	return &Registry{byEP: make(map[string]map[uint64]Session), changed: make(chan struct{}),
		perUpstream: make(map[uint64]int)}
}

// NewID returns a process-unique session id.
func (r *Registry) NewID() uint64 { return r.nextID.Add(1) }

// Register adds s, a session leased from the upstream of that ID, under
// endpoint addr and returns the function that removes it; the caller
// defers that function.
func (r *Registry) Register(upstream uint64, addr string, id uint64, s Session) (remove func()) {
	r.mu.Lock()
	m := r.byEP[addr]
	if m == nil {
		m = make(map[uint64]Session)
		r.byEP[addr] = m
	}
	m[id] = s
	r.perUpstream[upstream]++
	r.n.Add(1) // under mu: Len agrees with what Wait and All see
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		delete(m, id)
		if r.perUpstream[upstream]--; r.perUpstream[upstream] == 0 {
			delete(r.perUpstream, upstream)
		}
		idle := r.byEP[addr] != nil && len(r.byEP[addr]) == 0
		if idle {
			delete(r.byEP, addr)
		}
		r.n.Add(-1)
		close(r.changed)
		r.changed = make(chan struct{})
		r.mu.Unlock()
		if idle && r.OnEndpointIdle != nil {
			r.OnEndpointIdle(addr)
		}
		if mr, ok := s.(migrationReporter); ok && r.OnMigrationEnd != nil {
			if asked, outcome := mr.MigrationResult(); !asked.IsZero() {
				r.OnMigrationEnd(MigrationEnd{Info: s.Info(), Took: time.Since(asked), Outcome: outcome})
			}
		}
	}
}

// WhenIdle runs fn if no live session is registered under addr, and
// reports whether it did. fn runs under the registry's lock, so no session
// registers under addr meanwhile; it must not call the Registry.
func (r *Registry) WhenIdle(addr string, fn func()) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.byEP[addr]) > 0 {
		return false
	}
	fn()
	return true
}

// Len returns the number of live sessions.
func (r *Registry) Len() int { return int(r.n.Load()) }

// Endpoint returns the live sessions of one endpoint.
func (r *Registry) Endpoint(addr string) []Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Session, 0, len(r.byEP[addr]))
	for _, s := range r.byEP[addr] {
		out = append(out, s)
	}
	return out
}

// All returns every live session.
func (r *Registry) All() []Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Session
	for _, m := range r.byEP {
		for _, s := range m {
			out = append(out, s)
		}
	}
	return out
}

// Infos describes every live session, sorted by endpoint then id.
func (r *Registry) Infos() []SessionInfo {
	all := r.All()
	out := make([]SessionInfo, 0, len(all))
	for _, s := range all {
		out = append(out, s.Info())
	}
	slices.SortFunc(out, func(a, b SessionInfo) int {
		if a.Endpoint != b.Endpoint {
			if a.Endpoint < b.Endpoint {
				return -1
			}
			return 1
		}
		return int(a.ID) - int(b.ID)
	})
	return out
}

// Wait blocks until no session matching keep is live, or ctx ends. A nil keep
// matches every session. keep runs with no lock held.
func (r *Registry) Wait(ctx context.Context, keep func(SessionInfo) bool) error {
	for {
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		live := false
		for _, s := range r.All() {
			if keep == nil || keep(s.Info()) {
				live = true
				break
			}
		}
		if !live {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// WaitUpstream blocks until no session of the upstream (its Upstream.ID)
// is live, or ctx ends.
// It reads counts only: no Session is called.
func (r *Registry) WaitUpstream(ctx context.Context, upstream uint64) error {
	for {
		r.mu.Lock()
		n, ch := r.perUpstream[upstream], r.changed
		r.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}
