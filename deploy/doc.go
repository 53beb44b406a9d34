// Package deploy holds longhaul's Kubernetes manifests (a kustomization:
// kubectl apply -k deploy/) and the tests that keep them honest: every object
// is applied to a real kube-apiserver, the ServiceAccount's rights are
// checked, and the ports, probes and shutdown timing are checked against the
// Dockerfile and the example configuration. The same tests cover the Helm
// chart in charts/longhaul: helm lint, helm template with the defaults and
// with every option on, the rendered configuration through longhaul's own
// validator, the renders applied to a real kube-apiserver, and the chart
// kept in agreement with the kustomize manifests. It has no Go API.
package deploy
