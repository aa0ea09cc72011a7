package main

import (
	kubeproxyapp "k8s.io/kubernetes/cmd/kube-proxy/app"
)

// cmdServeKubeProxy runs the upstream kube-proxy (k8s.io/kubernetes/cmd/kube-proxy)
// with the given flags. serve-cluster starts it inside the cluster's network
// namespace in network mode; it is its own process because kube-proxy's
// feature gates, metrics and logging are process-wide, like the API server's.
func cmdServeKubeProxy(args []string) error {
	cmd := kubeproxyapp.NewProxyCommand()
	cmd.SetArgs(args)
	cmd.SilenceUsage = true
	return cmd.Execute()
}
