package main

import (
	"go.uber.org/zap"

	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/internal/app"
)

// kubeSource returns the factory of Kubernetes endpoint sources.
func kubeSource(kubeconfig string) func(config.Listener, *zap.Logger) (app.SyncedSource, error) {
	return nil // wired once discovery/kube lands
}
