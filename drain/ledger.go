package drain

import (
	"slices"
	"strings"
	"time"

	"github.com/longhaul-proxy/longhaul/internal/guard"
)

// LedgerKeep is how long an endpoint's drain stays in the ledger after it
// finished, so that Drains still shows how it ended.
const LedgerKeep = time.Minute

// Outcomes of a session asked to move, as MigrationEnded takes them.
const (
	OutcomeMoved  = "moved"  // it ended before its deadline
	OutcomeForced = "forced" // its deadline closed it
	OutcomeClosed = "closed" // it was closed at once by policy
)

// EndpointDrain is the ledger of one endpoint's drain, as Drains reports
// it: from when the endpoint left (it stopped being eligible with sessions
// on it, or its pools started draining) until its last session ended and
// its pools' drain returned, and LedgerKeep more.
//
// ProjectedFinish is the later of the last start planned for its sessions
// (Started when none was) and, while more sessions are live than wait for
// their start (some asked to move are still open), the latest deadline a
// session was given (Deadline before any was asked), and, while its pools
// drain, their deadline: what was asked to leave leaves at once at best
// and at its deadline at worst. Once finished it is Finished. Late is whether it was ever past KillTime.
type EndpointDrain struct {
	Endpoint string    `json:"endpoint"`
	Started  time.Time `json:"started"`
	// KillTime is the endpoint's kill time (discovery.Endpoint.KillTime),
	// nil when no snapshot gave one.
	KillTime *time.Time `json:"killTime,omitempty"`
	// Deadline is when its sessions must be gone (see Controller).
	Deadline time.Time `json:"deadline"`
	// AtStart counts the sessions live when it started; Asked those asked
	// to move so far; Moved, Forced and Closed those that ended after they
	// were asked, by outcome (see MigrationEnded); Left those live now.
	AtStart int `json:"atStart"`
	Asked   int `json:"asked"`
	Moved   int `json:"moved"`
	Forced  int `json:"forced"`
	Closed  int `json:"closed"`
	Left    int `json:"left"`
	// Planned counts the migrations planned and not started yet.
	Planned         int       `json:"planned"`
	ProjectedFinish time.Time `json:"projectedFinish"`
	Late            bool      `json:"late"`
	// Finished is when it finished; nil while it drains.
	Finished *time.Time `json:"finished,omitempty"`
	// At is when this view was taken, on the Controller's clock.
	At time.Time `json:"at"`
}

// ledgerEntry is one endpoint's drain. Its fields are guarded by c.mu.
type ledgerEntry struct {
	ep            string
	started, base time.Time // base: the deadline without kill times
	atStart       int
	asked         int
	moved         int
	forced        int
	closed        int
	ended         int       // MigrationEnded calls, whatever the outcome
	planned       int       // pending migrations of ReasonEndpoint pointing here
	lastPlanned   time.Time // the latest start planned
	lastDeadline  time.Time // the latest deadline given to a session asked
	kill          time.Time // the last kill time known; zero if none
	deadline      time.Time // the deadline, as last computed
	finished      time.Time // zero while it drains
	late, warned  bool
	drop          *timer // drops the entry LedgerKeep after it finished
}

// ledgerFor returns ep's drain in progress, starting one with atStart
// sessions if there is none (a finished one is replaced). Called with c.mu
// held.
func (c *Controller) ledgerFor(ep string, now, base time.Time, atStart int) *ledgerEntry {
	if e := c.ledger[ep]; e != nil && e.finished.IsZero() {
		return e
	} else if e != nil {
		c.stop(e.drop)
	}
	e := &ledgerEntry{ep: ep, started: now, base: base, atStart: atStart}
	e.deadline = c.deadline(ep, base, now)
	c.ledger[ep] = e
	return e
}

// planned records that p was planned at its start. Called with c.mu held.
func (c *Controller) planned(p *pending) {
	if p.reason != ReasonEndpoint || p.down {
		return
	}
	e := c.ledger[p.ep]
	if e == nil || !e.finished.IsZero() {
		return
	}
	p.led = e
	e.planned++
	if p.start.After(e.lastPlanned) {
		e.lastPlanned = p.start
	}
}

// unplanned records that p is no longer pending: started (asked, with its
// deadline) or dropped (deadline zero). Called with c.mu held.
func (c *Controller) unplanned(p *pending, asked bool, deadline time.Time) {
	e := p.led
	if e == nil {
		return
	}
	p.led = nil
	e.planned--
	if asked {
		e.asked++
		if deadline.After(e.lastDeadline) {
			e.lastDeadline = deadline
		}
	}
}

// MigrationEnded records that a session of endpoint asked to move has
// ended, with its outcome: OutcomeMoved, OutcomeForced or OutcomeClosed
// (others count as ended, under no outcome). Only the drain of endpoint in progress counts it.
// Safe for concurrent use. Once as many have ended as were asked and none
// waits for its start, it asks the Lister whether the drain has finished.
func (c *Controller) MigrationEnded(endpoint, outcome string) {
	c.mu.Lock()
	c.init()
	check := false
	if e := c.ledger[endpoint]; e != nil && e.finished.IsZero() {
		switch outcome {
		case OutcomeMoved:
			e.moved++
		case OutcomeForced:
			e.forced++
		case OutcomeClosed:
			e.closed++
		}
		e.ended++
		check = e.planned == 0 && e.ended >= e.asked
	}
	c.mu.Unlock()
	if check {
		c.settleLive(endpoint)
	}
}

// settleLive settles ep's drain with its live sessions. Called without
// c.mu.
func (c *Controller) settleLive(ep string) {
	left := len(c.Lister.Sessions(ep))
	c.mu.Lock()
	d, late := c.settle(ep, left)
	c.mu.Unlock()
	if late {
		c.late(d)
	}
}

// settle brings ep's drain up to date with left sessions live: its kill
// time and deadline, whether it finished (nothing planned, no pool drain
// running, and no session left or the endpoint eligible again), and
// whether its projected finish is past its kill time. It returns its view
// and whether that is the first time it is late. Called with c.mu held.
func (c *Controller) settle(ep string, left int) (EndpointDrain, bool) {
	e := c.ledger[ep]
	if e == nil {
		return EndpointDrain{}, false
	}
	now := c.clock().Now()
	if e.finished.IsZero() {
		if k, ok := c.killAt[ep]; ok {
			e.kill = k
		}
		e.deadline = c.deadline(ep, e.base, e.started)
		if e.planned == 0 && c.poolEnd[ep] == nil && (left == 0 || c.eligible[ep]) {
			e.finished = now
			e.drop = c.arm(now.Add(LedgerKeep), func() {
				c.mu.Lock()
				defer c.mu.Unlock()
				if c.ledger[ep] == e {
					delete(c.ledger, ep)
				}
			})
		}
	}
	var pools time.Time
	if pd := c.poolEnd[ep]; pd != nil {
		pools = pd.deadline
	}
	d := e.view(left, now, pools)
	first := false
	if d.ProjectedFinish.After(e.kill) && !e.kill.IsZero() && e.finished.IsZero() {
		e.late = true
		d.Late = true
		first = !e.warned
		e.warned = true
	}
	return d, first
}

// view returns e as Drains reports it, with left sessions live and its
// pools draining by pools (zero when they are not). Called with c.mu held.
func (e *ledgerEntry) view(left int, now, pools time.Time) EndpointDrain {
	d := EndpointDrain{Endpoint: e.ep, Started: e.started, Deadline: e.deadline, AtStart: e.atStart,
		Asked: e.asked, Moved: e.moved, Forced: e.forced, Closed: e.closed, Left: left,
		Planned: e.planned, Late: e.late, At: now}
	if !e.kill.IsZero() {
		k := e.kill
		d.KillTime = &k
	}
	if !e.finished.IsZero() {
		f := e.finished
		d.Finished = &f
		d.ProjectedFinish = f
		return d
	}
	p := e.started
	if e.lastPlanned.After(p) {
		p = e.lastPlanned
	}
	if left > e.planned {
		dl := e.lastDeadline
		if dl.IsZero() {
			dl = e.deadline
		}
		if dl.After(p) {
			p = dl
		}
	}
	if pools.After(p) {
		p = pools
	}
	d.ProjectedFinish = p
	return d
}

// late reports d's late projection to OnLate. Called without c.mu.
func (c *Controller) late(d EndpointDrain) {
	if c.OnLate != nil {
		defer guard.Recover("drain", nil)
		c.OnLate(d)
	}
}

// Drains returns the ledger: every endpoint draining, or finished less
// than LedgerKeep ago, sorted by endpoint. Safe for concurrent use; it
// calls the Lister, and OnLate for a projection found late.
func (c *Controller) Drains() []EndpointDrain {
	c.mu.Lock()
	c.init()
	eps := make([]string, 0, len(c.ledger))
	for ep := range c.ledger {
		eps = append(eps, ep)
	}
	c.mu.Unlock()
	slices.Sort(eps)
	left := make([]int, len(eps))
	for i, ep := range eps {
		left[i] = len(c.Lister.Sessions(ep))
	}
	out := make([]EndpointDrain, 0, len(eps))
	var lates []EndpointDrain
	c.mu.Lock()
	for i, ep := range eps {
		if c.ledger[ep] == nil {
			continue // dropped meanwhile
		}
		d, late := c.settle(ep, left[i])
		out = append(out, d)
		if late {
			lates = append(lates, d)
		}
	}
	c.mu.Unlock()
	for _, d := range lates {
		c.late(d)
	}
	slices.SortFunc(out, func(a, b EndpointDrain) int { return strings.Compare(a.Endpoint, b.Endpoint) })
	return out
}
