// Package deploy holds longhaul's Kubernetes manifests (a kustomization:
// kubectl apply -k deploy/) and the tests that keep them honest: every object
// is applied to a real kube-apiserver, the ServiceAccount's rights are
// checked, and the ports, probes and shutdown timing are checked against the
// Dockerfile and the example configuration. It has no Go API.
package deploy
