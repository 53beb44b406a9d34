package proxy

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longhaul-proxy/longhaul/balancer"
)

// endpointPin is what both serving paths of connection affinity share
// (connPin for net/http's server, relayPin for the HTTP/2 relay): the
// endpoint one client connection is pinned to, the load the pin puts on it,
// and the pin's registration as a Session under it.
//
// The pin owns one Acquire of its target and one registration while it is
// pinned; choose moves both when the pinned endpoint is gone, and end gives
// them back. owner is the Session that is registered (the enclosing
// connPin or relayPin), set once before the first choose. Its fields are
// protected by mu; moving and mig are safe on their own.
type endpointPin struct {
	l      *HTTPListener
	client netip.AddrPort
	owner  Session

	mu      sync.Mutex
	target  *balancer.Target // acquired while pinned: a pinned connection is load
	addr    string
	info    SessionInfo
	remove  func() // of the registration
	release func() // of the SessionsActive gauge
	closed  bool   // the connection ended: pin nothing more

	// moving: drain asked the connection to leave its endpoint.
	moving atomic.Bool
	mig    migration
}

// choose returns the endpoint of a request: the pinned one while new work
// may go to it (and nothing was tried for this request), else a new pick
// by key, pinned from then on. leave reports that the connection should
// end after this request: the pin moved, or drain asked it to leave.
func (pin *endpointPin) choose(p balancer.Picker, key uint64, tried []*balancer.Target) (t *balancer.Target, leave bool) {
	pin.mu.Lock()
	if pin.addr != "" && len(tried) == 0 {
		if t := findTarget(p, pin.addr); t != nil {
			pin.mu.Unlock()
			return t, pin.moving.Load()
		}
	}
	t = p.Pick(key, tried)
	if t == nil {
		pin.mu.Unlock()
		return nil, false
	}
	moved := pin.addr != ""
	unregister := pin.pinLocked(t)
	pin.mu.Unlock()
	unregister()
	return t, moved || pin.moving.Load()
}

// pinLocked makes t the connection's endpoint. Called with pin.mu held;
// the caller calls unregister, which ends the previous registration, once
// it let go of pin.mu (the registry reads the session's Info then).
func (pin *endpointPin) pinLocked(t *balancer.Target) (unregister func()) {
	if pin.closed {
		return func() {}
	}
	unregister = pin.unpinLocked()
	t.Acquire()
	pin.target, pin.addr = t, t.Endpoint.Address
	l := pin.l
	pin.info = SessionInfo{ID: l.reg.NewID(), Listener: l.cfg.Name, Protocol: "http-affinity",
		Endpoint: pin.addr, Client: pin.client.String(), Started: time.Now()}
	pin.remove = l.reg.Register(pin.addr, pin.info.ID, pin.owner)
	g := l.metrics.SessionsActive.WithLabelValues(l.cfg.Name, pin.addr)
	g.Inc()
	pin.release = g.Dec
	l.metrics.SessionsTotal.WithLabelValues(l.cfg.Name, pin.addr).Inc()
	return unregister
}

// unpinLocked lets go of the current endpoint. Called with pin.mu held;
// the caller calls unregister once it let go of pin.mu.
func (pin *endpointPin) unpinLocked() (unregister func()) {
	if pin.target == nil {
		return func() {}
	}
	pin.target.Release()
	pin.release()
	unregister = pin.remove
	pin.target, pin.addr, pin.remove = nil, "", nil
	return unregister
}

// end runs once the connection is over: nothing is pinned any more.
func (pin *endpointPin) end() {
	pin.mu.Lock()
	pin.closed = true
	pin.mig.end()
	unregister := pin.unpinLocked()
	pin.mu.Unlock()
	unregister()
}

// Info implements Session.
func (pin *endpointPin) Info() SessionInfo {
	pin.mu.Lock()
	i := pin.info
	pin.mu.Unlock()
	asked, deadline := pin.mig.state()
	i.Migrating, i.Deadline = !asked.IsZero(), deadline
	return i
}

func (pin *endpointPin) migrationResult() (time.Time, string) {
	asked, _ := pin.mig.state()
	return asked, pin.mig.result()
}
