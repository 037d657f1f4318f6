// Command etcd is upstream etcd's server (go.etcd.io/etcd/server/v3/etcdmain),
// built at the version that k8s.io/kubernetes pins, for the test control plane.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
