package upstream

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/longhaul-proxy/longhaul/internal/guard"
)

// Migration outcomes, for metrics.
const (
	OutcomeMoved  = "moved"  // the session ended before its deadline
	OutcomeForced = "forced" // the deadline came first and closed it
	OutcomeClosed = "closed" // closed at once by policy (raw TCP, drain mode immediate)
)

// migration records a session's move off its endpoint: when it was asked,
// by when, and how it ended. The zero value is a session not asked to move.
type Migration struct {
	mu       sync.Mutex
	asked    time.Time
	deadline time.Time
	timer    *time.Timer
	outcome  atomic.Value // string, set once when the session is closed by policy
}

// begin records a request to move by deadline and arms force to run then.
// It reports false, doing nothing, if the session was asked already.
func (m *Migration) Begin(deadline time.Time, force func()) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.asked.IsZero() {
		return false
	}
	m.asked = time.Now()
	m.deadline = deadline
	if force != nil {
		m.timer = time.AfterFunc(time.Until(deadline), func() {
			defer guard.Recover("drain", nil)
			m.outcome.CompareAndSwap(nil, OutcomeForced)
			force()
		})
	}
	return true
}

// forced marks a session whose deadline closed it, for sessions whose
// protocol enforces the deadline itself (begin was given no force).
func (m *Migration) Forced() { m.outcome.CompareAndSwap(nil, OutcomeForced) }

// closedByPolicy marks a session that longhaul closed at once on purpose.
func (m *Migration) ClosedByPolicy() { m.outcome.CompareAndSwap(nil, OutcomeClosed) }

// end stops the deadline timer; the session is over.
func (m *Migration) End() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.timer != nil {
		m.timer.Stop()
	}
}

// state returns when the session was asked to move (zero if never) and its
// deadline.
func (m *Migration) State() (asked, deadline time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.asked, m.deadline
}

// result returns how the migration ended; call it after the session ended.
func (m *Migration) Result() string {
	if o, ok := m.outcome.Load().(string); ok {
		return o
	}
	return OutcomeMoved
}

// migrationResult is what the registry reads of a session that ends.
type migrationReporter interface {
	MigrationResult() (asked time.Time, outcome string)
}
