// Command apiserver is kube-apiserver, built from k8s.io/kubernetes as a Go
// module for longhaul's tests. Flags are those of kube-apiserver.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
