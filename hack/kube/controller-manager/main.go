// Command controller-manager is kube-controller-manager, built from
// k8s.io/kubernetes as a Go module for longhaul's tests. Flags are those of
// kube-controller-manager.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
