package main

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/fnv"
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
	if g.Class == config.AnyGatewayClass {
		g.Class = "" // the controller then serves every class of its controllerName
	}
	bind, err := bindAddress(cmp.Or(g.Address, "0.0.0.0"))
	if err != nil {
		return nil, err
	}
	fixed := statusAddresses(g.StatusAddresses)
	lease, ns, pod := "", os.Getenv("POD_NAMESPACE"), os.Getenv("POD_NAME")
	if ns != "" && pod != "" {
		lease = gatewayLease
	}
	var c *gateway.Controller
	c, err = gateway.New(gateway.Options{
		Kube: kc, Gateway: gc, Metadata: mc,
		ControllerName: config.GatewayController, Class: g.Class,
		Address: bind,
		StatusAddresses: func(gw *gwv1.Gateway) []gwv1.GatewayStatusAddress {
			if fixed != nil {
				return fixed
			}
			if a := bind(gw); a != "0.0.0.0" {
				return statusAddresses([]string{a})
			}
			return nil
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

// bindAddress returns the bind address of each Gateway for s, an address
// or a prefix (config.Gateway.Address): within a prefix, the address the
// FNV-1a hash of the Gateway's namespace/name picks among its hosts (the
// same on every replica and restart; two Gateways meet on one address once
// in 2^(32-bits) pairs or so, and then conflict on shared ports).
func bindAddress(s string) (func(*gwv1.Gateway) string, error) {
	if ip, err := netip.ParseAddr(s); err == nil {
		a := ip.String()
		return func(*gwv1.Gateway) string { return a }, nil
	}
	pfx, err := netip.ParsePrefix(s)
	if err != nil {
		return nil, fmt.Errorf("gateway.address %q: %w", s, err)
	}
	pfx = pfx.Masked()
	hostBits := pfx.Addr().BitLen() - pfx.Bits()
	return func(gw *gwv1.Gateway) string {
		h := fnv.New64a()
		h.Write([]byte(gw.Namespace + "/" + gw.Name))
		n := h.Sum64()
		if pfx.Addr().Is4() {
			base := binary.BigEndian.Uint32(pfx.Addr().AsSlice())
			size := uint64(1) << hostBits // hostBits is 1 to 32
			off := uint64(1)
			if size > 2 {
				off = n%(size-2) + 1 // neither the first address nor the last
			}
			var b [4]byte
			binary.BigEndian.PutUint32(b[:], base+uint32(off))
			return netip.AddrFrom4(b).String()
		}
		b := pfx.Addr().As16() // within the low 64 bits
		size := uint64(1) << min(hostBits, 63)
		binary.BigEndian.PutUint64(b[8:], binary.BigEndian.Uint64(b[8:])+n%(size-1)+1)
		return netip.AddrFrom16(b).String()
	}, nil
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
