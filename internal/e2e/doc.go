// Package e2e holds end-to-end tests of longhaul as a whole: a real
// kube-apiserver (internal/kubetest), backends as test hosts in network
// namespaces the tests create, and the app wired as `longhaul run` wires it.
// The tests need root and iproute2; they fail, with a message that says so,
// where those are missing (LONGHAUL_SKIP_KUBE=1 skips them with the rest of
// the Kubernetes tier).
package e2e
