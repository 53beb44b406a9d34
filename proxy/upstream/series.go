package upstream

import (
	"sync"

	"github.com/longhaul-proxy/longhaul/discovery"
	"github.com/longhaul-proxy/longhaul/proxy/metrics"
)

// EndpointSeries deletes the per-endpoint series (sessions active and
// total, dial errors) of an endpoint once it has left its listener's
// snapshot and no session is left on it, so that /metrics does not keep
// every pod address ever seen. While a session still counts on an endpoint
// its series stay, whatever the snapshot says.
//
// Sessions register before they touch their endpoint's series, and the
// check for none left and the deletion happen under the registry's lock
// (Registry.WhenIdle), so a deletion never orphans a live session's gauge.
// A dial error on an endpoint already forgotten (a pick from the picker
// just replaced) makes a series that stays until the endpoint is listed
// and leaves again.
type EndpointSeries struct {
	m   *metrics.Metrics
	reg *Registry

	mu     sync.Mutex
	listed map[string]map[string]bool // listener -> endpoints of its snapshot
	gone   map[string]map[string]bool // endpoint -> listeners it left, series not yet deleted
}

// NewEndpointSeries returns an EndpointSeries over m and reg, and sets
// reg.OnEndpointIdle; call it before the first Register.
func NewEndpointSeries(m *metrics.Metrics, reg *Registry) *EndpointSeries {
	e := &EndpointSeries{m: m, reg: reg, listed: make(map[string]map[string]bool), gone: make(map[string]map[string]bool)}
	reg.OnEndpointIdle = e.idle
	return e
}

// Snapshot records listener's new snapshot: the endpoints that left it are
// forgotten now if no session is on them, else when their last one ends.
func (e *EndpointSeries) Snapshot(listener string, s *discovery.Snapshot) {
	now := make(map[string]bool, len(s.Endpoints))
	for _, ep := range s.Endpoints {
		now[ep.Address] = true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for addr := range e.listed[listener] {
		if !now[addr] {
			if e.gone[addr] == nil {
				e.gone[addr] = make(map[string]bool)
			}
			e.gone[addr][listener] = true
		}
	}
	for addr := range now {
		delete(e.gone[addr], listener)
		if len(e.gone[addr]) == 0 {
			delete(e.gone, addr)
		}
	}
	e.listed[listener] = now
	for addr := range e.gone {
		e.forgetLocked(addr)
	}
}

// idle is the registry's OnEndpointIdle.
func (e *EndpointSeries) idle(addr string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.forgetLocked(addr)
}

// forgetLocked deletes addr's series for the listeners it left, if no
// session is on it. Called with e.mu held.
func (e *EndpointSeries) forgetLocked(addr string) {
	listeners := e.gone[addr]
	if len(listeners) == 0 {
		return
	}
	e.reg.WhenIdle(addr, func() {
		for l := range listeners {
			e.m.SessionsActive.DeleteLabelValues(l, addr)
			e.m.SessionsTotal.DeleteLabelValues(l, addr)
			e.m.DialErrors.DeleteLabelValues(l, addr)
		}
		delete(e.gone, addr)
	})
}
