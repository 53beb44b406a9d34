package upstream

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/proxy/metrics"
)

// ErrNoEndpoint means no endpoint may take new work: none is known, none is
// eligible, or every eligible one was tried.
var ErrNoEndpoint = errors.New("no eligible endpoint")

// ErrLeaving turns an attempt away whose endpoint was asked to let go of
// its sessions while it was being connected: nothing was relayed yet, so
// the next endpoint is tried instead.
var ErrLeaving = errors.New("endpoint is leaving")

// Lease is one claim on an endpoint, made by Upstream.Lease: the pick that
// chose it, the load it counts (Target acquired) and, for a session, its
// registration under the endpoint in the Registry, all made together and
// ordered against picker swaps (see Upstream). A request's lease counts
// but is not registered: requests are moved by their connection's drain.
//
// A session's lease is registered before the session exists (its endpoint
// is still being dialled, its handshake answered): the lease stands for it
// in the Registry, answers Info from what it was given, and keeps a request
// to migrate or close until Attach hands it the session. Release, once,
// gives everything back.
//
// Lock order: a Lease's mu is innermost and held for no call out; the
// attached Session is called (Migrate, Close, Info) with it let go, so a
// session may hold its own lock while it leases, and the Registry may list
// leases while sessions are being attached.
type Lease struct {
	// Target is the endpoint leased, acquired until Release.
	Target *balancer.Target

	up  *Upstream // leased from
	key uint64    // the key it was picked by

	registered bool
	info       SessionInfo
	remove     func()
	released   atomic.Bool
	metrics    *metrics.Metrics // of a registered lease
	active     interface{ Dec() }

	mu       sync.Mutex
	s        Session   // attached session; nil before Attach
	asked    bool      // Migrate was called
	deadline time.Time // of that Migrate
	closed   bool      // Close was called before Attach
	reason   string    // why it was asked to move (SetMigrationReason)
}

// SetMigrationReason records why the lease's session is asked to move
// (drain's reasons: endpoint, rebalance, shutdown), for the access log;
// drain calls it before Migrate. The first reason stays.
func (l *Lease) SetMigrationReason(reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.reason == "" {
		l.reason = reason
	}
}

// MigrationReason returns what SetMigrationReason recorded, "" if nothing.
func (l *Lease) MigrationReason() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reason
}

// Base returns what a registered lease was given, with its id, endpoint
// and start filled in: the SessionInfo of the session it stands for.
func (l *Lease) Base() SessionInfo { return l.info }

// Misplaced reports whether a new session of the lease's client would be
// placed on another endpoint now: always under least-connections (any
// session may go elsewhere) or with keys per connection (a reconnect
// brings a new key: SetKeysPerConnection), and otherwise when the key's
// pick (with bounded loads, at the current loads) is not the leased
// endpoint.
// Rebalancing moves only misplaced sessions (drain.Misplaced): moving one
// that its key sends straight back would churn without evening anything.
func (l *Lease) Misplaced() bool {
	st := l.up.state.Load()
	if st == nil || st.leastConn || l.up.perConn.Load() {
		return true
	}
	t := st.picker.Pick(l.key, nil)
	return t == nil || t.Endpoint.Address != l.Addr()
}

// Addr returns the leased endpoint's address.
func (l *Lease) Addr() string { return l.Target.Endpoint.Address }

// Lease picks an endpoint for key, other than those tried (addresses), and
// leases it.
// With prefer set and nothing tried yet, the endpoint at that address is
// leased instead while new work may go there (connection affinity). With
// info, the lease is registered as a session (info.ID, Endpoint and Started
// are filled in); without, it only counts as load. It never blocks for
// long, so the HTTP/2 relay's reader may call it.
//
// The error is ErrNoEndpoint when nothing can be leased.
func (u *Upstream) Lease(key uint64, prefer string, tried []string, info *SessionInfo) (*Lease, error) {
	u.leaseMu.RLock()
	defer u.leaseMu.RUnlock()
	st := u.state.Load()
	if st == nil {
		return nil, ErrNoEndpoint
	}
	var t *balancer.Target
	if prefer != "" && len(tried) == 0 {
		t = findTarget(st.picker, prefer)
	}
	if t == nil {
		t = st.picker.Pick(key, targetsAt(st.picker, tried))
	}
	if t == nil {
		return nil, ErrNoEndpoint
	}
	t.Acquire() // counted now, so that concurrent bounded picks see it
	l := &Lease{Target: t, up: u, key: key}
	if info != nil {
		l.registered = true
		l.info = *info
		l.info.ID = u.reg.NewID()
		l.info.Endpoint = t.Endpoint.Address
		if l.info.Started.IsZero() {
			l.info.Started = time.Now()
		}
		if l.info.Listener == "" {
			l.info.Listener = u.name
		}
		l.info.Upstream, l.info.UpstreamID = u.name, u.id
		l.remove = u.reg.Register(u.id, l.info.Endpoint, l.info.ID, l)
		l.metrics = u.metrics
		if !u.leaving.IsZero() {
			l.asked, l.deadline = true, u.leaving
		}
	}
	return l, nil
}

// Attach hands a registered lease its session: a Migrate or Close that
// came before is passed on now. It reports whether the lease was asked to
// migrate already. Call it once.
func (l *Lease) Attach(s Session) (asked bool) {
	if !l.registered {
		panic("upstream: Attach on a request's lease")
	}
	// The session starts now: counted under its endpoint (after its
	// registration, which EndpointSeries relies on).
	g := l.metrics.SessionsActive.WithLabelValues(l.info.Listener, l.info.Endpoint)
	g.Inc()
	l.metrics.SessionsTotal.WithLabelValues(l.info.Listener, l.info.Endpoint).Inc()
	l.mu.Lock()
	l.s = s
	l.active = g
	asked, deadline, closed := l.asked, l.deadline, l.closed
	l.mu.Unlock()
	if closed {
		s.Close()
	} else if asked {
		s.Migrate(deadline)
	}
	return asked
}

// Asked reports whether the lease was asked to migrate.
func (l *Lease) Asked() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.asked
}

// Release gives the endpoint back: the load is no longer counted and the
// session is unregistered. Only the first call counts.
func (l *Lease) Release() {
	if l == nil || !l.released.CompareAndSwap(false, true) {
		return
	}
	l.Target.Release()
	l.mu.Lock()
	active := l.active
	l.mu.Unlock()
	if active != nil {
		active.Dec()
	}
	if l.remove != nil {
		l.remove()
	}
}

// Info implements Session: the attached session's, or what the lease was
// given while there is none.
func (l *Lease) Info() SessionInfo {
	l.mu.Lock()
	s, asked, deadline := l.s, l.asked, l.deadline
	l.mu.Unlock()
	if s != nil {
		return s.Info()
	}
	i := l.info
	i.Migrating, i.Deadline = asked, deadline
	return i
}

// Migrate implements Session: passed on to the session, or kept until it
// is attached.
func (l *Lease) Migrate(deadline time.Time) {
	l.mu.Lock()
	s := l.s
	if !l.asked {
		l.asked, l.deadline = true, deadline
	}
	l.mu.Unlock()
	if s != nil {
		s.Migrate(deadline)
	}
}

// Close implements Session: passed on to the session, or kept until it is
// attached.
func (l *Lease) Close() {
	l.mu.Lock()
	s := l.s
	l.closed = s == nil
	l.mu.Unlock()
	if s != nil {
		s.Close()
	}
}

// migrationResult passes on the attached session's.
func (l *Lease) MigrationResult() (time.Time, string) {
	l.mu.Lock()
	s := l.s
	l.mu.Unlock()
	if mr, ok := s.(migrationReporter); ok {
		return mr.MigrationResult()
	}
	return time.Time{}, ""
}

// Route leases an endpoint for one request of a caller that retries by
// itself (the HTTP/2 relay's streams), counting the pick as Try does; see
// Lease. ok is false when nothing can be leased.
func (u *Upstream) Route(key uint64, prefer string, tried []string) (l *Lease, ok bool) {
	l, err := u.Lease(key, prefer, tried, nil)
	if err != nil {
		u.picksNone.Inc()
		return nil, false
	}
	u.picksOK.Inc()
	return l, true
}

// maxAttempts bounds Attempt.Max.
const maxAttempts = 8

// Attempt describes the use of an endpoint that Try makes.
type Attempt struct {
	Key    uint64
	Prefer string       // see Upstream.Lease
	Info   *SessionInfo // non-nil: a session, registered (see Upstream.Lease)
	// Max bounds the endpoints tried; 0 means 3, and never more than 8.
	Max int
}

// Try is the one pick, lease and retry loop of every protocol: it leases an
// endpoint for a and runs use on it; when use fails with an error retry
// accepts (the endpoint did not process anything: a failed dial, a refused
// stream), the lease is released and the next choice is tried, at most
// a.Max times. On success the lease is returned, still held: the caller
// releases it when done. On failure every lease was released and the error
// is the last attempt's, or ErrNoEndpoint. A DialError is counted in the
// endpoint's dial errors; the pick, in the listener's picks.
func (u *Upstream) Try(a Attempt, use func(*Lease) error, retry func(error) bool) (*Lease, error) {
	n := a.Max
	if n <= 0 {
		n = 3
	}
	n = min(n, maxAttempts)
	var triedBuf [maxAttempts]string
	tried := triedBuf[:0]
	var last error
	for range n {
		l, err := u.Lease(a.Key, a.Prefer, tried, a.Info)
		if err != nil {
			break
		}
		err = use(l)
		if err == nil {
			u.picksOK.Inc()
			return l, nil
		}
		l.Release()
		last = err
		var de *DialError
		if errors.As(err, &de) {
			u.metrics.DialErrors.WithLabelValues(u.name, l.Addr()).Inc()
		}
		if errors.Is(err, ErrLeaving) {
			if u.isLeaving() {
				break // every endpoint is: longhaul is shutting down
			}
		} else if retry == nil || !retry(err) {
			break
		}
		tried = append(tried, l.Addr())
	}
	u.picksNone.Inc()
	if last == nil {
		last = ErrNoEndpoint
	}
	return nil, last
}

// RetryDial is a Try retry rule: only a failed dial is retried.
func RetryDial(err error) bool {
	var de *DialError
	return errors.As(err, &de)
}

// targetsAt returns p's targets at the addresses in tried: what Pick is to
// skip. Nothing is allocated when nothing was tried.
func targetsAt(p balancer.Picker, tried []string) []*balancer.Target {
	if len(tried) == 0 {
		return nil
	}
	out := make([]*balancer.Target, 0, len(tried))
	for _, a := range tried {
		if t := findTarget(p, a); t != nil {
			out = append(out, t)
		}
	}
	return out
}
