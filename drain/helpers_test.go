package drain

import (
	"context"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/discovery"
)

// fakeSession records when (on the fake clock) it was asked to move, and
// with which deadline; onMigrate, if set, runs after (to end it).
type fakeSession struct {
	clk       *fakeClock
	onMigrate func(*fakeSession)

	mu    sync.Mutex
	calls []time.Time
	dl    time.Time
	// reason is what SetMigrationReason was given; early whether that came
	// before the first Migrate, as it must.
	reason string
	early  bool
}

func (s *fakeSession) SetMigrationReason(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reason == "" {
		s.reason, s.early = reason, len(s.calls) == 0
	}
}

func (s *fakeSession) Migrate(deadline time.Time) {
	s.mu.Lock()
	s.calls = append(s.calls, s.clk.Now())
	s.dl = deadline
	f := s.onMigrate
	s.mu.Unlock()
	if f != nil {
		f(s)
	}
}

// migrated returns how many times s was asked to move, when first, and the
// deadline it was given.
func (s *fakeSession) migrated() (n int, at, deadline time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.calls) == 0 {
		return 0, time.Time{}, time.Time{}
	}
	return len(s.calls), s.calls[0], s.dl
}

func sessions(clk *fakeClock, n int) []*fakeSession {
	out := make([]*fakeSession, n)
	for i := range out {
		out[i] = &fakeSession{clk: clk}
	}
	return out
}

// fakeLister holds sessions by endpoint; end removes one, as a session
// that closed. Wait waits for changes; waiting is closed at its first call.
type fakeLister struct {
	mu      sync.Mutex
	eps     map[string][]*fakeSession
	changed chan struct{}
	once    sync.Once
	waiting chan struct{}
}

func newLister(eps map[string][]*fakeSession) *fakeLister {
	l := &fakeLister{eps: map[string][]*fakeSession{}, changed: make(chan struct{}), waiting: make(chan struct{})}
	for ep, ss := range eps {
		l.eps[ep] = slices.Clone(ss)
	}
	return l
}

// endOnMigrate makes every session of l end as soon as it is asked to move.
func (l *fakeLister) endOnMigrate() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ss := range l.eps {
		for _, s := range ss {
			s.onMigrate = l.end
		}
	}
}

func (l *fakeLister) end(s *fakeSession) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ep, ss := range l.eps {
		if i := slices.Index(ss, s); i >= 0 {
			l.eps[ep] = slices.Delete(ss, i, i+1)
			if len(l.eps[ep]) == 0 {
				delete(l.eps, ep)
			}
		}
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *fakeLister) Endpoints() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for k := range l.eps {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (l *fakeLister) Sessions(ep string) []Session {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Session
	for _, s := range l.eps[ep] {
		out = append(out, s)
	}
	return out
}

func (l *fakeLister) Wait(ctx context.Context) error {
	l.once.Do(func() { close(l.waiting) })
	for {
		l.mu.Lock()
		empty, ch := len(l.eps) == 0, l.changed
		l.mu.Unlock()
		if empty {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// fakeDown is a Downstream: a fakeLister whose conns are on one key.
type fakeDown struct{ *fakeLister }

const downKey = "downstream"

func newDown(conns []*fakeSession) fakeDown {
	return fakeDown{newLister(map[string][]*fakeSession{downKey: conns})}
}

func (d fakeDown) Conns() []Session { return d.Sessions(downKey) }

// fakePools records each drain with its context; with block, a drain lasts
// until its context ends. called gets the address of each drain started.
type fakePools struct {
	block  bool
	called chan string

	mu      sync.Mutex
	drained map[string]int
	ctxs    map[string][]context.Context
	plans   map[string][]StreamPlan
}

func newPools(block bool) *fakePools {
	return &fakePools{block: block, called: make(chan string, 100), drained: map[string]int{}, ctxs: map[string][]context.Context{}, plans: map[string][]StreamPlan{}}
}

func (p *fakePools) DrainEndpoint(ctx context.Context, addr string, plan StreamPlan) {
	p.mu.Lock()
	p.drained[addr]++
	p.ctxs[addr] = append(p.ctxs[addr], ctx)
	p.plans[addr] = append(p.plans[addr], plan)
	p.mu.Unlock()
	p.called <- addr
	if p.block {
		<-ctx.Done()
	}
}

func (p *fakePools) count(addr string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.drained[addr]
}

func (p *fakePools) ctx(t *testing.T, addr string) context.Context {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	cs := p.ctxs[addr]
	if len(cs) == 0 {
		t.Fatalf("pools of %s never drained", addr)
	}
	return cs[len(cs)-1]
}

// await receives the addresses of n drains started.
func (p *fakePools) await(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for range n {
		select {
		case a := <-p.called:
			out = append(out, a)
		case <-time.After(10 * time.Second):
			t.Fatalf("%d pool drains started, want %d", len(out), n)
		}
	}
	sort.Strings(out)
	return out
}

// recorder keeps OnMigrate's reports.
type recorder struct {
	mu      sync.Mutex
	reasons map[Session]string
	eps     map[Session]string
}

func (r *recorder) on(ep string, s Session, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reasons == nil {
		r.reasons, r.eps = map[Session]string{}, map[Session]string{}
	}
	r.reasons[s], r.eps[s] = reason, ep
}

func (r *recorder) reason(s Session) (reason, ep string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reasons[s], r.eps[s]
}

// start runs c until the returned stop is called (or the test ends), and
// returns once Run has started. stop returns once Run has.
func start(t *testing.T, c *Controller) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	c.mu.Lock()
	c.init()
	started := c.started
	c.mu.Unlock()
	<-started
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// deadlineCtx reports a deadline that the real clock never reaches: only
// the fake clock's time matters.
type deadlineCtx struct {
	context.Context
	d time.Time
}

func (c deadlineCtx) Deadline() (time.Time, bool) { return c.d, true }

func snap(t *testing.T, eps ...discovery.Endpoint) *discovery.Snapshot {
	t.Helper()
	s, err := discovery.NewSnapshot("svc", eps)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var (
	readyA = discovery.Endpoint{Address: "192.0.2.1:80", Ready: true, Serving: true}
	readyB = discovery.Endpoint{Address: "192.0.2.2:80", Ready: true, Serving: true}
	readyC = discovery.Endpoint{Address: "192.0.2.3:80", Ready: true, Serving: true}
	readyD = discovery.Endpoint{Address: "192.0.2.4:80", Ready: true, Serving: true}
	termA  = discovery.Endpoint{Address: "192.0.2.1:80", Serving: true, Terminating: true}
	termB  = discovery.Endpoint{Address: "192.0.2.2:80", Serving: true, Terminating: true}
	termD  = discovery.Endpoint{Address: "192.0.2.4:80", Serving: true, Terminating: true}
)

// starts returns when each session was first asked to move, sorted; it
// fails the test for a session asked other than once.
func starts(t *testing.T, ss []*fakeSession) []time.Time {
	t.Helper()
	var out []time.Time
	for i, s := range ss {
		n, at, _ := s.migrated()
		if n != 1 {
			t.Fatalf("session %d asked to move %d times, want once", i, n)
		}
		out = append(out, at)
	}
	slices.SortFunc(out, time.Time.Compare)
	return out
}

// checkDeadlines fails the test for a session whose deadline is not want
// or that was asked to move after it.
func checkDeadlines(t *testing.T, ss []*fakeSession, want time.Time) {
	t.Helper()
	for i, s := range ss {
		_, at, dl := s.migrated()
		if !dl.Equal(want) {
			t.Errorf("session %d: deadline %v after the epoch, want %v", i, dl.Sub(epoch), want.Sub(epoch))
		}
		if at.After(dl) {
			t.Errorf("session %d asked to move %v after its deadline", i, at.Sub(dl))
		}
	}
}

// checkGaps fails the test when two consecutive sorted starts are less than
// gap apart.
func checkGaps(t *testing.T, sorted []time.Time, gap time.Duration) {
	t.Helper()
	for i := 1; i < len(sorted); i++ {
		if d := sorted[i].Sub(sorted[i-1]); d < gap {
			t.Fatalf("starts %d and %d are %v apart, want at least %v", i-1, i, d, gap)
		}
	}
}

// plan returns the stream plan of the last drain of addr's pools.
func (p *fakePools) plan(t *testing.T, addr string) StreamPlan {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	ps := p.plans[addr]
	if len(ps) == 0 || ps[len(ps)-1] == nil {
		t.Fatalf("pools of %s drained with no stream plan", addr)
	}
	return ps[len(ps)-1]
}

// lastPlanned returns the latest start of the migrations c has planned and
// not started.
func lastPlanned(c *Controller) time.Time {
	var last time.Time
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.pending {
		if p.start.After(last) {
			last = p.start
		}
	}
	return last
}
