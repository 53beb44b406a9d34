package app

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/longhaul-proxy/longhaul/balancer"
	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/discovery"
)

// Reload applies a new, validated configuration to the running App as far
// as it can change in place: the log level (when Options.Level is set), and
// for each listener its static endpoint list, its balance policy, bounded
// load and table size, its drain timeout, window and rate, and its
// rebalancing (whose default follows the policy). Anything else
// (listeners added, removed, renamed or reordered, addresses, protocols,
// endpoint sources, keys, timeouts, limits, PROXY protocol, http options,
// the TCP drain mode, any admin key; any change to a listener with routes)
// needs a restart:
// Reload then changes nothing and returns an error naming every such field,
// so that a configuration is never half applied.
// longhaul_config_reloads_total counts each call as applied or refused.
func (a *App) Reload(next *config.Config) error {
	err := a.reload(next)
	if err != nil {
		a.reloads.WithLabelValues(reloadRefused).Inc()
	} else {
		a.reloads.WithLabelValues(reloadApplied).Inc()
	}
	return err
}

// ConfigRejected counts a changed configuration file that could not be
// loaded or failed validation (so Reload was not called): result invalid
// of longhaul_config_reloads_total.
func (a *App) ConfigRejected() { a.reloads.WithLabelValues(reloadInvalid).Inc() }

// The results of longhaul_config_reloads_total.
const (
	reloadApplied = "applied" // Reload changed what it could in place
	reloadRefused = "refused" // Reload changed nothing: a restart is needed, or a value failed
	reloadInvalid = "invalid" // the file did not load or validate (ConfigRejected)
)

// newReloadsCounter returns longhaul_config_reloads_total with a zero series
// for every result, so that an increase is seen from the first one.
func newReloadsCounter() *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "longhaul_config_reloads_total",
		Help: "Configuration file changes, by result: applied (in place), refused (needs a restart or a value failed; nothing changed), invalid (did not load or validate).",
	}, []string{"result"})
	for _, r := range []string{reloadApplied, reloadRefused, reloadInvalid} {
		c.WithLabelValues(r)
	}
	return c
}

func (a *App) reload(next *config.Config) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	cur := a.cur
	if problems := restartNeeded(cur, next); len(problems) > 0 {
		return fmt.Errorf("not applied: changing %s needs a restart", strings.Join(problems, ", "))
	}
	// Check everything that can fail before changing anything. The file's
	// listeners are found by name: a gateway's run beside them.
	byName := map[string]*listener{}
	for _, l := range a.current() {
		byName[l.cfg.Name] = l
	}
	ls := make([]*listener, len(cur.Listeners))
	for i, lc := range cur.Listeners {
		if ls[i] = byName[lc.Name]; ls[i] == nil {
			return fmt.Errorf("not applied: listener %s is not running", lc.Name)
		}
	}
	snaps := make([]*discovery.Snapshot, len(ls))
	pols := make([]balancer.Policy, len(ls))
	var errs []error
	for i, l := range ls {
		nc := next.Listeners[i]
		pols[i] = nc.Balance.BalancerPolicy()
		if !nc.HasRoutes() && len(nc.Endpoints.Static) > 0 && !slicesEqual(nc.Endpoints.Static, cur.Listeners[i].Endpoints.Static) {
			var err error
			if snaps[i], err = staticSnapshot(l.cfg.Name, nc.Endpoints.Static); err != nil {
				errs = append(errs, fmt.Errorf("listener %s: %w", nc.Name, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("not applied: %w", err)
	}
	if a.opts.Level != nil && next.Log.Level != cur.Log.Level {
		if err := a.opts.Level.UnmarshalText([]byte(next.Log.Level)); err != nil {
			return fmt.Errorf("not applied: log level: %w", err)
		}
	}
	for i, l := range ls {
		nc, oc := next.Listeners[i], cur.Listeners[i]
		if nc.HasRoutes() {
			continue // backends and routes need a restart (restartNeeded)
		}
		b := l.backends[0]
		if nc.Drain.Timeout != oc.Drain.Timeout || nc.Drain.Window != oc.Drain.Window || nc.Drain.Rate != oc.Drain.Rate {
			b.drain.SetPacing(nc.Drain.Timeout, nc.Drain.Window, nc.Drain.Rate)
		}
		if nc.Drain.Rebalance != oc.Drain.Rebalance {
			b.drain.SetRebalance(rebalanceOf(nc.Drain.Rebalance))
		}
		if nc.Balance != oc.Balance {
			if err := b.up.SetPolicy(pols[i]); err != nil {
				// Parsed and validated above; a build error here means the
				// current endpoints cannot take the policy (no endpoints).
				a.log.Error("balance policy not applied", zap.String("listener", l.cfg.Name), zap.Error(err))
			}
		}
		if snaps[i] != nil {
			a.apply(b, snaps[i])
		}
	}
	a.cur = next
	a.log.Info("configuration reloaded", zap.Int("listeners", len(ls)))
	return nil
}

// restartNeeded returns the paths of the fields that differ between cur and
// next and that Reload cannot change in place.
func restartNeeded(cur, next *config.Config) []string {
	out := changedFields("admin", cur.Admin, next.Admin)
	out = append(out, changedFields("gateway", cur.Gateway, next.Gateway)...)
	if cur.Log.Format != next.Log.Format {
		out = append(out, "log.format")
	}
	if len(cur.Listeners) != len(next.Listeners) {
		return append(out, fmt.Sprintf("the number of listeners (%d to %d)", len(cur.Listeners), len(next.Listeners)))
	}
	for i := range cur.Listeners {
		out = append(out, changedFields(fmt.Sprintf("listeners[%d]", i), reloadable(cur.Listeners[i]), reloadable(next.Listeners[i]))...)
	}
	return out
}

// changedFields returns the paths (prefix.key) of the fields of the
// structs o and n, of one type, that differ.
func changedFields[T any](prefix string, o, n T) []string {
	var out []string
	ov, nv := reflect.ValueOf(o), reflect.ValueOf(n)
	for f := range ov.NumField() {
		if !reflect.DeepEqual(ov.Field(f).Interface(), nv.Field(f).Interface()) {
			out = append(out, prefix+"."+ov.Type().Field(f).Tag.Get("mapstructure"))
		}
	}
	return out
}

// reloadable returns l with the fields Reload can change zeroed, so that
// what is left must be equal. A static list may change, but not turn into
// another kind of source.
func reloadable(l config.Listener) config.Listener {
	if l.HasRoutes() {
		return l // backends and routes need a restart
	}
	if len(l.Endpoints.Static) > 0 {
		l.Endpoints.Static = []string{"static"}
	}
	l.Balance.Policy, l.Balance.BoundedLoad, l.Balance.TableSize, l.Balance.LoadFloor = "", 0, 0, 0
	l.Drain.Timeout, l.Drain.Window, l.Drain.Rate = 0, 0, 0
	l.Drain.Rebalance = config.Rebalance{}
	return l
}

func staticSnapshot(name string, addrs []string) (*discovery.Snapshot, error) {
	eps := make([]discovery.Endpoint, len(addrs))
	for i, s := range addrs {
		eps[i] = discovery.Endpoint{Address: s, Ready: true, Serving: true}
	}
	snap, err := discovery.NewSnapshot(name, eps)
	if err != nil {
		return nil, fmt.Errorf("static endpoints: %w", err)
	}
	return snap, nil
}

func slicesEqual(a, b []string) bool { return reflect.DeepEqual(a, b) }
