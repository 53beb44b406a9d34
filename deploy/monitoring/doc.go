// Package monitoring holds longhaul's Grafana dashboard and Prometheus
// alerting rules, as plain files and as Kubernetes manifests, and the tests
// that keep them honest: the manifests are generated from the plain files
// and checked equal to them, promtool checks the rules and runs a unit test
// of each alert, and every metric the dashboard and the rules name is one
// that a running longhaul exports (the test scrapes one). It has no Go API.
//
// The files:
//
//   - longhaul-dashboard.json: the dashboard (Grafana's dashboard JSON model)
//   - dashboard-configmap.yaml: it as a ConfigMap for Grafana's dashboard sidecar
//   - longhaul-alerts.yaml: the alerting rules (a Prometheus rules file)
//   - prometheusrule.yaml: them as a Prometheus Operator PrometheusRule
//   - alerts_test.yaml: promtool's unit tests of the rules
//
// After editing longhaul-dashboard.json or longhaul-alerts.yaml, regenerate
// the two manifests with
//
//	go test ./deploy/monitoring -run TestManifestsGenerated -update
package monitoring
