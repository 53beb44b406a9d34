package main

import (
	"cmp"
	"fmt"
	"net/netip"
	"os"

	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/discovery/kube"
	"github.com/longhaul-proxy/longhaul/gateway"
	"github.com/longhaul-proxy/longhaul/internal/app"
)

// gatewayLease is the Lease that elects the replica writing the Gateway
// API's status, in the pod's namespace.
const gatewayLease = "longhaul-gateway"

// newGateway returns the Gateway API controller of cfg.Gateway: every set
// of listeners it publishes is applied to a, beside the file's own, and
// what a made of each is reported back for the Gateways' status. Every
// replica serves; the one holding the Lease writes status (POD_NAME and
// POD_NAMESPACE name it; without them this replica always writes).
func newGateway(cfg *config.Config, a *app.App, kubeconfig string, log *zap.Logger) (*gateway.Controller, error) {
	rc, err := kube.RESTConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("gateway: kubernetes client: %w", err)
	}
	gc, err := gwclient.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("gateway: Gateway API client: %w", err)
	}
	mc, err := metadata.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("gateway: metadata client: %w", err)
	}
	g := cfg.Gateway
	bind := cmp.Or(g.Address, "0.0.0.0")
	status := statusAddresses(g.StatusAddresses)
	if len(status) == 0 && bind != "0.0.0.0" {
		status = statusAddresses([]string{bind})
	}
	lease, ns, pod := "", os.Getenv("POD_NAMESPACE"), os.Getenv("POD_NAME")
	if ns != "" && pod != "" {
		lease = gatewayLease
	}
	var c *gateway.Controller
	c, err = gateway.New(gateway.Options{
		Kube: kc, Gateway: gc, Metadata: mc,
		ControllerName: config.GatewayController, Class: g.Class,
		Address: func(*gwv1.Gateway) string { return bind },
		StatusAddresses: func(*gwv1.Gateway) []gwv1.GatewayStatusAddress {
			return status
		},
		Publish: func(ls []config.Listener) {
			applied, err := a.Apply(ls)
			if err != nil {
				log.Error("gateway listeners not all applied", zap.Error(err))
			}
			if applied == nil { // refused whole
				applied = make(map[string]error, len(ls))
				for _, l := range ls {
					applied[l.Name] = err
				}
			}
			c.Applied(applied)
		},
		ReportsApplied: true,
		Lease:          lease, LeaseNamespace: ns, Identity: pod,
		Log: log.With(zap.String("component", "gateway")),
	})
	return c, err
}

// statusAddresses turns addresses into Gateway status addresses: IP
// addresses as such, anything else as hostnames.
func statusAddresses(as []string) []gwv1.GatewayStatusAddress {
	var out []gwv1.GatewayStatusAddress
	for _, s := range as {
		t := gwv1.HostnameAddressType
		if _, err := netip.ParseAddr(s); err == nil {
			t = gwv1.IPAddressType
		}
		out = append(out, gwv1.GatewayStatusAddress{Type: &t, Value: s})
	}
	return out
}
