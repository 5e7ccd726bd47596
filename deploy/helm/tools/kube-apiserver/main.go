// Command kube-apiserver is Kubernetes' cmd/kube-apiserver at the version
// go.mod pins, for the Helm chart's tests (no kubelet, no scheduler).
package main

import (
	"os"
	_ "time/tzdata" // as upstream: CronJob time zones

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // as upstream: the JSON log format
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // as upstream: client-go's metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // as upstream: the version metric
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
