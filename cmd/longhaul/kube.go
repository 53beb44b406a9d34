package main

import (
	"fmt"
	"sync"

	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"

	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/discovery"
	"github.com/longhaul-proxy/longhaul/discovery/kube"
)

// kubeSource returns the factory of Kubernetes endpoint sources. The client
// (from kubeconfig, or the pod's service account when it is empty) is made
// once, on the first listener that needs it, so a configuration without
// Kubernetes endpoints never looks for a cluster. Every source counts into
// one kube.Metrics, which the app registers (the sources are
// prometheus.Collectors).
func kubeSource(kubeconfig string) func(config.Listener, *zap.Logger) (discovery.Source, error) {
	var (
		once    sync.Once
		client  kubernetes.Interface
		err     error
		metrics = kube.NewMetrics()
	)
	return func(l config.Listener, log *zap.Logger) (discovery.Source, error) {
		once.Do(func() { client, err = kube.NewClient(kubeconfig) })
		if err != nil {
			return nil, err
		}
		k := l.Endpoints.Kubernetes
		identity, err := discovery.ParseIdentity(k.Identity)
		if err != nil {
			return nil, fmt.Errorf("endpoints.kubernetes.identity: %w", err)
		}
		src, err := kube.New(kube.Config{
			Client: client, Namespace: k.Namespace, Service: k.Service, Port: k.Port, Coalesce: k.Coalesce,
			Identity: identity, Logger: log, Metrics: metrics.Hooks(l.Name),
		})
		if err != nil {
			return nil, err
		}
		return kubeSourceWithMetrics{src, metrics}, nil
	}
}

// kubeSourceWithMetrics is a source that carries the collectors it counts
// into.
type kubeSourceWithMetrics struct {
	*kube.Source
	*kube.Metrics
}
