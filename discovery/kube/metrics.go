package kube

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the Prometheus collectors of Kubernetes sources. One Metrics
// serves every Source of a process (series carry a "listener" label); it is
// a prometheus.Collector, registered once.
type Metrics struct {
	relists   *prometheus.CounterVec
	errors    *prometheus.CounterVec
	snapshots *prometheus.CounterVec
	build     *prometheus.HistogramVec
	endpoints *prometheus.GaugeVec
	pods      *prometheus.CounterVec
}

var _ prometheus.Collector = (*Metrics)(nil)

// NewMetrics creates the collectors; register the result with a registry.
func NewMetrics() *Metrics {
	return &Metrics{
		relists: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longhaul_kubernetes_relists_total",
			Help: "Full lists of a Service's EndpointSlices: the first sync, then one after each watch error, expired resource version or API server restart.",
		}, []string{"listener"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longhaul_kubernetes_watch_errors_total",
			Help: "Failed lists and broken watches of EndpointSlices (retried; the last snapshot stays in force), and snapshots that could not be built.",
		}, []string{"listener"}),
		snapshots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longhaul_kubernetes_snapshots_total",
			Help: "Snapshots published from EndpointSlices (bursts are coalesced into one).",
		}, []string{"listener"}),
		build: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "longhaul_kubernetes_snapshot_build_seconds",
			Help:    "Time to fold changed EndpointSlices into a new snapshot.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16),
		}, []string{"listener"}),
		endpoints: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "longhaul_kubernetes_endpoints",
			Help: "Endpoints in the last snapshot published from EndpointSlices.",
		}, []string{"listener"}),
		pods: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longhaul_kubernetes_pod_lookups_total",
			Help: "GETs of endpoints' pods for the kill times of terminating ones and, during rollouts, the revisions of all, by outcome: kill_time, no_kill, not_found, forbidden (the optional permission to get pods is missing; endpoints then carry no kill time and no revision), error.",
		}, []string{"listener", "outcome"}),
	}
}

// Hooks returns the Source hooks that count into m under the listener's
// label. The series exist (at zero) from this call on.
func (m *Metrics) Hooks(listener string) Hooks {
	relists := m.relists.WithLabelValues(listener)
	errs := m.errors.WithLabelValues(listener)
	snaps := m.snapshots.WithLabelValues(listener)
	build := m.build.WithLabelValues(listener)
	eps := m.endpoints.WithLabelValues(listener)
	m.pods.WithLabelValues(listener, PodLookupForbidden) // present at zero, to alert on
	return Hooks{
		PodLookup: func(outcome string) { m.pods.WithLabelValues(listener, outcome).Inc() },
		Relist:    relists.Inc,
		Error:     func(error) { errs.Inc() },
		Published: func(n int, took time.Duration) {
			snaps.Inc()
			build.Observe(took.Seconds())
			eps.Set(float64(n))
		},
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.relists, m.errors, m.snapshots, m.build, m.endpoints, m.pods}
}

// Register registers m with reg; registering the same Metrics twice is not
// an error.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	err := reg.Register(m)
	if are := (prometheus.AlreadyRegisteredError{}); errors.As(err, &are) {
		return nil
	}
	return err
}
