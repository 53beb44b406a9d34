package app

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/longhaul-proxy/longhaul/drain"
)

// The drain ledger's series, one set per leaving endpoint of a listener
// while its drain controller keeps it (drain.Controller.Drains).
var (
	drainSessionsDesc = prometheus.NewDesc("longhaul_drain_sessions",
		"Sessions of a leaving endpoint's drain: left (live now), and those asked to move that ended moved, forced (by their deadline) or closed (by policy).",
		[]string{"listener", "endpoint", "state"}, nil)
	drainProjectedDesc = prometheus.NewDesc("longhaul_drain_projected_finish_seconds",
		"Seconds from now to the projected finish of a leaving endpoint's drain, negative once past (see /debug/drains for the formula's inputs).",
		[]string{"listener", "endpoint"}, nil)
	drainMarginDesc = prometheus.NewDesc("longhaul_drain_kill_margin_seconds",
		"A leaving endpoint's kill time minus its drain's projected finish: negative when sessions are projected to be open when its pod is killed. Absent without a kill time.",
		[]string{"listener", "endpoint"}, nil)
)

// drainCollector reports every listener's drain ledger at each scrape.
type drainCollector struct{ a *App }

func (d drainCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- drainSessionsDesc
	ch <- drainProjectedDesc
	ch <- drainMarginDesc
}

func (d drainCollector) Collect(ch chan<- prometheus.Metric) {
	d.a.each(func(_ *listener, b *backend) {
		for _, e := range b.drain.Drains() {
			name := b.name
			for _, s := range []struct {
				state string
				n     int
			}{{"left", e.Left}, {"moved", e.Moved}, {"forced", e.Forced}, {"closed", e.Closed}} {
				ch <- prometheus.MustNewConstMetric(drainSessionsDesc, prometheus.GaugeValue, float64(s.n), name, e.Endpoint, s.state)
			}
			ch <- prometheus.MustNewConstMetric(drainProjectedDesc, prometheus.GaugeValue,
				e.ProjectedFinish.Sub(e.At).Seconds(), name, e.Endpoint)
			if e.KillTime != nil {
				ch <- prometheus.MustNewConstMetric(drainMarginDesc, prometheus.GaugeValue,
					e.KillTime.Sub(e.ProjectedFinish).Seconds(), name, e.Endpoint)
			}
		}
	})
}

// maxDebugDrains bounds the entries /debug/drains shows per listener.
const maxDebugDrains = 256

// drainsView is /debug/drains' entry for one listener: its drain ledger,
// sorted by endpoint, at most maxDebugDrains entries; Omitted counts the
// rest.
type drainsView struct {
	Listener string                `json:"listener"`
	Drains   []drain.EndpointDrain `json:"drains"`
	Omitted  int                   `json:"omitted,omitempty"`
}

func (a *App) debugDrains() any {
	var out []drainsView
	a.each(func(_ *listener, b *backend) {
		ds := b.drain.Drains()
		v := drainsView{Listener: b.name, Drains: ds}
		if len(ds) > maxDebugDrains {
			v.Drains, v.Omitted = ds[:maxDebugDrains], len(ds)-maxDebugDrains
		}
		out = append(out, v)
	})
	return out
}

// migrationEnded feeds the drain ledger of the session's upstream (its
// Upstream.ID).
func (a *App) migrationEnded(upstream uint64, endpoint, outcome string) {
	a.each(func(_ *listener, b *backend) {
		if b.up.ID() == upstream {
			b.drain.MigrationEnded(endpoint, outcome)
		}
	})
}

// drainLate logs a drain projected to finish after its endpoint's kill
// time: sessions are likely to be cut by the pod's end rather than moved.
func drainLate(log *zap.Logger) func(drain.EndpointDrain) {
	return func(d drain.EndpointDrain) {
		var kill time.Time
		if d.KillTime != nil {
			kill = *d.KillTime
		}
		log.Warn("drain projected to finish after the endpoint's kill time",
			zap.String("endpoint", d.Endpoint), zap.Time("projectedFinish", d.ProjectedFinish),
			zap.Time("killTime", kill), zap.Duration("late", d.ProjectedFinish.Sub(kill)),
			zap.Int("left", d.Left), zap.Int("asked", d.Asked), zap.Int("atStart", d.AtStart))
	}
}
