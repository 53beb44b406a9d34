package app

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/proxy/httpproxy"
	"github.com/longhaul-proxy/longhaul/proxy/route"
	"github.com/longhaul-proxy/longhaul/proxy/tcpproxy"
)

// Apply makes the running App serve exactly the configuration's listeners
// plus ls (the Gateway API controller's output), changing as little as it
// can:
//   - a listener new by name is bound and started;
//   - one gone is retired: its socket closes, its sessions move off with
//     each backend's drain (paced, by its deadline), then it stops;
//   - one whose socket settings are unchanged (address, protocol,
//     timeouts, limits, http options) is updated in place: backends new by
//     name start, backends gone are retired, backends changed get their
//     new policy, pacing, rebalancing or endpoint source, and the route
//     table is swapped at once, so that sessions on backends that stay
//     are not touched;
//   - one whose socket settings changed is retired, then built anew.
//
// ls is validated first (as a configuration with the App's admin and log
// settings); an invalid set changes nothing and is the error. Otherwise
// applied has an entry per listener of ls: nil when it runs as asked, else
// why not (a listener that cannot be bound is left out; one whose update
// partly failed runs with what could be built), and err joins those.
// Apply may be called before Run: the listeners start when Run does.
func (a *App) Apply(ls []config.Listener) (applied map[string]error, err error) {
	a.reloadMu.Lock() // one change at a time, with Reload
	defer a.reloadMu.Unlock()
	extra := ls
	ls = append(slices.Clone(a.cur.Listeners), extra...)
	cfg := &config.Config{Admin: a.cur.Admin, Log: a.cur.Log, Gateway: a.cur.Gateway, Listeners: ls}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("listeners not applied: %w", err)
	}
	a.mu.Lock()
	closing := a.closing
	a.mu.Unlock()
	if closing {
		return nil, errors.New("listeners not applied: shutting down")
	}
	want := make(map[string]config.Listener, len(ls))
	for _, lc := range ls {
		want[lc.Name] = lc
	}
	applied = make(map[string]error, len(extra))
	var errs []error
	var next []*listener
	for _, l := range a.current() {
		lc, keep := want[l.cfg.Name]
		switch {
		case !keep:
			a.retireListener(l)
		case sameSocket(l.cfg, lc):
			err := a.updateListener(l, lc)
			applied[lc.Name] = err
			if err != nil {
				errs = append(errs, err)
			}
			next = append(next, l)
			delete(want, lc.Name)
		default:
			a.retireListener(l) // its socket closes now: the new one may bind there
		}
	}
	for _, lc := range ls {
		if _, add := want[lc.Name]; !add {
			continue
		}
		l, err := a.newListener(lc)
		applied[lc.Name] = err
		if err != nil {
			errs = append(errs, err)
			continue
		}
		a.mu.Lock()
		if a.run != nil {
			a.startListener(l)
		}
		a.mu.Unlock()
		next = append(next, l)
	}
	a.mu.Lock()
	a.listeners = next
	a.mu.Unlock()
	return applied, errors.Join(errs...)
}

// sameSocket reports whether listeners o and n differ only in what
// updateListener changes in place: backends, routes, and the balance,
// endpoints and drain that a listener's own backend takes.
func sameSocket(o, n config.Listener) bool {
	strip := func(l config.Listener) config.Listener {
		l.Backends, l.Routes = nil, config.Routes{}
		l.Endpoints, l.Balance, l.Drain = config.Endpoints{}, config.Balance{}, config.Drain{}
		l.HTTP.TLS = config.TLS{} // replaced in place; only Enabled is compared
		return l
	}
	if o.HasRoutes() != n.HasRoutes() || o.Drain.TCP != n.Drain.TCP || o.HTTP.TLS.Enabled() != n.HTTP.TLS.Enabled() ||
		o.Balance.Key != n.Balance.Key && !n.HasRoutes() { // a listener's own key is its server's
		return false
	}
	return reflect.DeepEqual(strip(o), strip(n))
}

// updateListener brings l to lc in place (sameSocket holds).
func (a *App) updateListener(l *listener, lc config.Listener) error {
	log := a.log.With(zap.String("listener", lc.Name))
	a.mu.Lock()
	old := make(map[string]*backend, len(l.backends))
	for _, b := range l.backends {
		old[b.name] = b
	}
	a.mu.Unlock()
	var backends []*backend
	var errs []error
	for _, bc := range backendsOf(lc) {
		name := upstreamName(lc, bc)
		b := old[name]
		if b == nil {
			nb, err := a.newBackend(lc, bc, log)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if h, ok := l.srv.(*httpproxy.Listener); ok {
				nb.drain.Pools = h
			}
			a.mu.Lock()
			if a.run != nil {
				a.startBackend(nb)
			}
			a.mu.Unlock()
			backends = append(backends, nb)
			continue
		}
		delete(old, name)
		if err := a.updateBackend(lc, b, bc, log); err != nil {
			errs = append(errs, err)
		}
		backends = append(backends, b)
	}
	if len(backends) == 0 {
		return errors.Join(append(errs, fmt.Errorf("listener %s: no backend could be built", lc.Name))...)
	}
	if l.certs != nil && !reflect.DeepEqual(lc.HTTP.TLS, l.cfg.HTTP.TLS) {
		set, err := certSet(lc.HTTP.TLS, log)
		if err != nil {
			// The last good certificates stay; the listener is kept at its
			// old TLS settings so that the next change is compared to them.
			errs = append(errs, fmt.Errorf("listener %s: certificates not replaced: %w", lc.Name, err))
			lc.HTTP.TLS = l.cfg.HTTP.TLS
		} else {
			l.certs.Set(set)
		}
	}
	if t, ok := l.srv.(*tcpproxy.Listener); ok && lc.HasRoutes() {
		if err := setTCPRoutes(t, lc, backends); err != nil {
			return errors.Join(append(errs, err)...)
		}
	} else if lc.HasRoutes() {
		h := l.srv.(*httpproxy.Listener)
		t, err := routeTable(lc, backends)
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("listener %s: %w", lc.Name, err))...)
		}
		h.SetRoutes(t)
	}
	a.mu.Lock()
	l.cfg, l.backends = lc, backends
	a.mu.Unlock()
	for _, b := range old { // no route reaches them any more
		a.retireBackend(b)
	}
	return errors.Join(errs...)
}

// updateBackend applies bc to b: policy, pacing, rebalancing in place, and
// a new endpoint source when the endpoints changed.
func (a *App) updateBackend(lc config.Listener, b *backend, bc config.Backend, log *zap.Logger) error {
	oc := b.cfg
	if bc.Balance != oc.Balance {
		if err := b.up.SetPolicy(bc.Balance.BalancerPolicy()); err != nil {
			log.Error("balance policy not applied", zap.String("upstream", b.name), zap.Error(err))
		}
		b.up.SetKeysPerConnection(bc.Balance.KeySpec().Source == balancer.ClientIPPort)
	}
	if d, od := bc.Drain, oc.Drain; d.Timeout != od.Timeout || d.Window != od.Window || d.Rate != od.Rate {
		b.drain.SetPacing(d.Timeout, d.Window, d.Rate)
	}
	if bc.Drain.Rebalance != oc.Drain.Rebalance {
		b.drain.SetRebalance(rebalanceOf(bc.Drain.Rebalance))
	}
	if !reflect.DeepEqual(bc.Endpoints, oc.Endpoints) {
		src, err := a.newSource(lc, b.name, bc.Endpoints, log)
		if err != nil {
			return err
		}
		a.mu.Lock()
		b.src = src
		if a.run != nil {
			b.stopSource()
			sctx, stop := context.WithCancel(a.run.srcCtx)
			b.stopSource = stop
			a.run.g.Go(func() error { return a.runSource(sctx, b, src) })
		}
		a.mu.Unlock()
	}
	b.cfg = bc
	return nil
}

// routeTable builds lc's route table over its backends (in backendsOf
// order), each reached over h2c or HTTP/1.1 by its protocol (else the
// listener's upstream).
func routeTable(lc config.Listener, backends []*backend) (*httpproxy.Routes, error) {
	byName := make(map[string]*httpproxy.Backend, len(backends))
	for _, b := range backends {
		byName[b.cfg.Name] = &httpproxy.Backend{Up: b.up, Key: httpproxy.NewRequestKey(b.cfg.Balance.KeySpec()), H2: b.cfg.H2(&lc)}
	}
	t, err := route.New(config.RouteSpec(&lc, func(name string) *httpproxy.Backend { return byName[name] }))
	if err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	return t, nil
}

// retireBackend drops b's registrations (readiness, gauge: a backend of
// the same name may follow at once), then moves its sessions off (its
// drain's Shutdown: paced, by its timeout) and stops its source and
// drain. New sessions no longer reach it. It returns at once; the moving
// runs under Run (nothing is left to move before Run).
func (a *App) retireBackend(b *backend) {
	b.release(a)
	a.retire(func() {
		timeout := b.drain.DrainTimeout()
		ctx, cancel := context.WithTimeout(context.Background(), timeout+shutdownGrace)
		defer cancel()
		b.up.Leave(time.Now().Add(timeout))
		if err := b.drain.Shutdown(ctx); err != nil {
			a.log.Info("retired backend: drain timeout reached; remaining sessions closed", zap.String("upstream", b.name), zap.Error(err))
		}
	}, b.stop)
}

// stop ends b's source and drain goroutines, if started.
func (b *backend) stop() {
	if b.stopSource != nil {
		b.stopSource()
		b.stopDrain()
	}
}

// retireListener closes l's socket and drops its backends' registrations
// now, then, as retireBackend does, moves its sessions off, shuts its
// server down and stops it.
func (a *App) retireListener(l *listener) {
	l.ln.Close()
	a.mu.Lock()
	backends := l.backends
	a.mu.Unlock()
	for _, b := range backends {
		b.release(a)
	}
	a.retire(func() {
		a.shutdownListener(l, backends)
	}, func() {
		if l.stop != nil {
			l.stop()
		}
		for _, b := range backends {
			b.stop()
		}
	})
}

// retire runs work then done on a goroutine of the run, or, before Run,
// done alone (nothing was started, no session exists).
func (a *App) retire(work, done func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.run == nil {
		done()
		return
	}
	a.run.g.Go(func() error {
		work()
		done()
		return nil
	})
}
