// Command etcd is the etcd server, built from go.etcd.io/etcd/server/v3 as a
// Go module for longhaul's tests. Flags are those of etcd.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
