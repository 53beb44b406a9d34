package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the proxy's Prometheus collectors. One Metrics serves every
// listener; series carry a "listener" label.
type Metrics struct {
	SessionsActive   *prometheus.GaugeVec
	SessionsTotal    *prometheus.CounterVec
	Bytes            *prometheus.CounterVec
	DialErrors       *prometheus.CounterVec
	Picks            *prometheus.CounterVec
	Rejected         *prometheus.CounterVec
	PickerBuilds     *prometheus.CounterVec
	PickerBuildTime  *prometheus.HistogramVec
	Endpoints        *prometheus.GaugeVec
	SessionsMigrated *prometheus.CounterVec
	MigrationsEnded  *prometheus.CounterVec
	MigrationTime    *prometheus.HistogramVec
	EndpointDrain    *prometheus.HistogramVec
	RequestTime      *prometheus.HistogramVec
	// Abuse counts connections closed for going over a budget (HTTP/2
	// GOAWAY ENHANCE_YOUR_CALM), by listener and reason.
	Abuse *prometheus.CounterVec
	// Mirrors counts the copies of requests that RequestMirror filters
	// asked for, by listener and outcome: sent (answered, whatever the
	// status), error (no endpoint, failed, timed out), dropped_inflight
	// (too many in flight on the listener, or it was shutting down),
	// dropped_body (a body over the bound, or not received whole).
	Mirrors *prometheus.CounterVec
	// AccessLogDropped counts access log lines left out, by listener and
	// reason: sampled (the request was not sampled in) or rate (over the
	// listener's maxPerSecond).
	AccessLogDropped *prometheus.CounterVec
}

// New creates the collectors and registers them with reg (which may
// be nil, for tests that do not scrape).
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		SessionsActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "longhaul_sessions_active", Help: "Sessions being relayed, by listener and endpoint.",
		}, []string{"listener", "endpoint"}),
		SessionsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longhaul_sessions_total", Help: "Sessions started, by listener and endpoint.",
		}, []string{"listener", "endpoint"}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longhaul_bytes_total", Help: "Bytes relayed, by listener and direction (upstream: client to endpoint).",
		}, []string{"listener", "direction"}),
		DialErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longhaul_dial_errors_total", Help: "Failed connection attempts to endpoints.",
		}, []string{"listener", "endpoint"}),
		Picks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longhaul_picks_total", Help: "Endpoint choices, by listener and result (ok, none).",
		}, []string{"listener", "result"}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longhaul_connections_rejected_total", Help: "Client connections refused, by listener and reason.",
		}, []string{"listener", "reason"}),
		PickerBuilds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longhaul_picker_builds_total", Help: "Picker builds, by listener and result (ok, error).",
		}, []string{"listener", "result"}),
		PickerBuildTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "longhaul_picker_build_seconds", Help: "Time to build a picker from a snapshot.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		}, []string{"listener"}),
		Endpoints: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "longhaul_endpoints", Help: "Endpoints in the current snapshot, by listener and condition (ready, serving, terminating, total).",
		}, []string{"listener", "condition"}),
		SessionsMigrated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longhaul_sessions_migrated_total", Help: "Sessions asked to leave their endpoint, by listener, protocol and reason (endpoint, rebalance, shutdown).",
		}, []string{"listener", "protocol", "reason"}),
		MigrationsEnded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longhaul_migrations_ended_total", Help: "Sessions that ended after being asked to move, by listener, protocol and outcome (moved: before the deadline; forced: closed at the deadline; closed: closed at once by policy).",
		}, []string{"listener", "protocol", "outcome"}),
		MigrationTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "longhaul_migration_seconds", Help: "Time from asking a session to move to its end.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"listener", "protocol"}),
		EndpointDrain: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "longhaul_endpoint_drain_seconds", Help: "Time for an endpoint's pooled upstream connections to drain after it left.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"listener"}),
		RequestTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "longhaul_request_duration_seconds", Help: "HTTP requests and gRPC calls proxied, from receipt to the end of the response, by listener and class (2xx..5xx for HTTP, ok or error for gRPC).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"listener", "class"}),
		Abuse: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longhaul_connections_abusive_total", Help: "Client connections closed for going over a per-connection budget (HTTP/2: GOAWAY ENHANCE_YOUR_CALM), by listener and reason.",
		}, []string{"listener", "reason"}),
		Mirrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longhaul_mirror_requests_total", Help: "Copies of requests for mirror backends, by listener and outcome (sent, error, dropped_inflight, dropped_body).",
		}, []string{"listener", "outcome"}),
		AccessLogDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "longhaul_access_log_dropped_total", Help: "Access log lines left out, by listener and reason (sampled: not sampled in; rate: over the listener's maxPerSecond).",
		}, []string{"listener", "reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.SessionsActive, m.SessionsTotal, m.Bytes, m.DialErrors, m.Picks, m.Rejected,
			m.PickerBuilds, m.PickerBuildTime, m.Endpoints, m.SessionsMigrated, m.MigrationsEnded, m.MigrationTime,
			m.EndpointDrain, m.RequestTime, m.Abuse, m.Mirrors, m.AccessLogDropped)
	}
	return m
}
