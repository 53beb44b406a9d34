// Package drain decides which sessions must leave their endpoint, when, and
// at what pace. It never touches a connection itself: it asks sessions to
// migrate through the small interface they register.
package drain

import (
	"math/rand/v2"
	"time"

	"github.com/longhaul-proxy/longhaul/discovery"
)

// Session is what drain needs of a live session.
type Session interface {
	// Migrate asks the session to leave its endpoint by deadline.
	Migrate(deadline time.Time)
}

// Lister lists the live sessions of one listener on one endpoint, and the
// endpoints that have live sessions.
type Lister interface {
	Endpoints() []string
	Sessions(endpoint string) []Session
}

// Controller moves sessions off endpoints that new sessions may no longer
// use: terminating, not ready, or gone. Each session's deadline is spread
// over the last Window of Timeout with jitter, so that the remaining
// endpoints do not take every reconnect in the same instant.
type Controller struct {
	Timeout time.Duration // time a session has to leave; 0 means at once
	Window  time.Duration // spread of deadlines; 0 means Timeout/2
	Lister  Lister
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// OnMigrate, if set, is called once for each session asked to move.
	OnMigrate func(endpoint string)
}

// Update compares the sessions' endpoints with next and asks the sessions of
// every endpoint that is no longer eligible to migrate. Sessions already
// asked are asked again with an equal or later deadline, which they ignore.
func (c *Controller) Update(next *discovery.Snapshot) int {
	eligible := Eligible(next)
	now := time.Now()
	if c.Now != nil {
		now = c.Now()
	}
	window := c.Window
	if window <= 0 || window > c.Timeout {
		window = c.Timeout / 2
	}
	moved := 0
	for _, ep := range c.Lister.Endpoints() {
		if eligible[ep] {
			continue
		}
		for _, s := range c.Lister.Sessions(ep) {
			d := c.Timeout - window
			if window > 0 {
				d += rand.N(window)
			}
			s.Migrate(now.Add(d))
			if c.OnMigrate != nil {
				c.OnMigrate(ep)
			}
			moved++
		}
	}
	return moved
}

// Eligible returns the addresses that new sessions may use: the ready,
// non-terminating endpoints, or, when there are none, the serving and
// terminating ones (so that a single-replica rollout is not black-holed).
func Eligible(s *discovery.Snapshot) map[string]bool {
	primary := make(map[string]bool)
	fallback := make(map[string]bool)
	if s == nil {
		return primary
	}
	for _, e := range s.Endpoints {
		p, f := e.Eligible()
		if p {
			primary[e.Address] = true
		} else if f {
			fallback[e.Address] = true
		}
	}
	if len(primary) > 0 {
		return primary
	}
	return fallback
}
