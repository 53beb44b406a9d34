package kube

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestMetricsCountHooks(t *testing.T) {
	m := NewMetrics()
	reg := prometheus.NewPedanticRegistry()
	for range 2 { // a second source sharing m registers it again
		if err := m.Register(reg); err != nil {
			t.Fatalf("Register: %v", err)
		}
	}
	h := m.Hooks("grpc")
	h.Relist()
	h.Relist()
	h.Error(errors.New("watch closed"))
	h.Published(42, 3*time.Millisecond)
	h.PodLookup(PodLookupForbidden)
	h.PodLookup(PodLookupForbidden)
	m.Hooks("other") // series exist at zero

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			key := mf.GetName() + "{" + mt.GetLabel()[0].GetValue() + "}"
			switch {
			case mt.Counter != nil:
				got[key] = mt.Counter.GetValue()
			case mt.Gauge != nil:
				got[key] = mt.Gauge.GetValue()
			case mt.Histogram != nil:
				got[key] = float64(mt.Histogram.GetSampleCount())
			}
		}
	}
	for key, want := range map[string]float64{
		"longhaul_kubernetes_relists_total{grpc}":           2,
		"longhaul_kubernetes_watch_errors_total{grpc}":      1,
		"longhaul_kubernetes_snapshots_total{grpc}":         1,
		"longhaul_kubernetes_snapshot_build_seconds{grpc}":  1,
		"longhaul_kubernetes_endpoints{grpc}":               42,
		"longhaul_kubernetes_relists_total{other}":          0,
		"longhaul_kubernetes_pod_lookups_total{grpc}":       2, // forbidden: the only series yet
		"longhaul_kubernetes_pod_lookups_total{other}":      0,
		"longhaul_kubernetes_snapshot_build_seconds{other}": 0,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", key, v, ok, want)
		}
	}
}
