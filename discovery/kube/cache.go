package kube

import (
	"fmt"
	"net/netip"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/longhaul-proxy/longhaul/discovery"
)

// portSelector picks the port of a Service out of an EndpointSlice. The
// EndpointSlice controller writes a slice per port set, so the same port
// name may carry a different number in each slice (pods of a rollout that
// changed containerPort): the port is resolved per slice, never once per
// Service.
type portSelector struct {
	// name matches EndpointPort.Name ("" is the unnamed port of a
	// single-port Service) unless number is set.
	name string
	// number, when not 0, matches EndpointPort.Port (the endpoints' target
	// port) for TCP ports.
	number int32
	// only, when set, takes the slice's single port whatever its name.
	only bool
}

// parsePort interprets Config.Port: a number 1-65535 selects by target port
// number, "" selects the only port of each slice, anything else selects by
// port name.
func parsePort(s string) (portSelector, error) {
	if s == "" {
		return portSelector{only: true}, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > 65535 {
			return portSelector{}, fmt.Errorf("port %q: number out of range 1-65535", s)
		}
		return portSelector{number: int32(n)}, nil
	}
	return portSelector{name: s}, nil
}

// resolve returns the port number of the selected port in ports, or false
// when the slice does not carry it.
func (p portSelector) resolve(ports []discoveryv1.EndpointPort) (uint16, bool) {
	if p.only {
		if len(ports) != 1 || ports[0].Port == nil {
			return 0, false
		}
		return validPort(*ports[0].Port)
	}
	for _, ep := range ports {
		if ep.Port == nil {
			continue
		}
		if p.number != 0 {
			if *ep.Port == p.number && (ep.Protocol == nil || *ep.Protocol == corev1.ProtocolTCP) {
				return validPort(*ep.Port)
			}
			continue
		}
		name := ""
		if ep.Name != nil {
			name = *ep.Name
		}
		if name == p.name {
			return validPort(*ep.Port)
		}
	}
	return 0, false
}

func validPort(n int32) (uint16, bool) {
	if n < 1 || n > 65535 {
		return 0, false
	}
	return uint16(n), true
}

// sliceCache holds the endpoints of every EndpointSlice of one Service,
// converted once per slice change and keyed by slice name (the shape of
// kube-proxy's endpointslicecache). A snapshot merges all slices. It is not
// safe for concurrent use: only the source's sync loop touches it.
type sliceCache struct {
	service  string
	port     portSelector
	identity discovery.Identity
	slices   map[string][]discovery.Endpoint
	// pods holds, per slice, the endpoints that name a pod of the
	// slice's namespace: the ones whose kill time and revision may be
	// looked up.
	pods map[string][]podEndpoint
	// terminating counts, per slice, its terminating endpoints that name
	// a pod: while any slice has one, a rollout may be under way and the
	// revisions of all pods are looked up.
	terminating map[string]int
	// skipped counts, per slice, endpoints dropped by the last conversion
	// (unparsable address, wrong family); for logs.
	skipped map[string]int
	total   int
}

func newSliceCache(service string, port portSelector, identity discovery.Identity) *sliceCache {
	return &sliceCache{
		service:     service,
		port:        port,
		identity:    identity,
		slices:      make(map[string][]discovery.Endpoint),
		pods:        make(map[string][]podEndpoint),
		terminating: make(map[string]int),
		skipped:     make(map[string]int),
	}
}

// update replaces what the cache holds for the slice's name and returns how
// many of its endpoints were skipped. A slice of a type other than IPv4 or
// IPv6 (FQDN), or without the selected port, contributes no endpoints but is
// still remembered as present.
func (c *sliceCache) update(s *discoveryv1.EndpointSlice) (skipped int) {
	eps, pods, skipped := convert(s, c.port, c.identity)
	c.total += len(eps) - len(c.slices[s.Name])
	c.slices[s.Name] = eps
	if len(pods) > 0 {
		c.pods[s.Name] = pods
	} else {
		delete(c.pods, s.Name)
	}
	if n := countTerminating(pods); n > 0 {
		c.terminating[s.Name] = n
	} else {
		delete(c.terminating, s.Name)
	}
	if skipped > 0 {
		c.skipped[s.Name] = skipped
	} else {
		delete(c.skipped, s.Name)
	}
	return skipped
}

// delete forgets the slice of that name.
func (c *sliceCache) delete(name string) {
	c.total -= len(c.slices[name])
	delete(c.slices, name)
	delete(c.pods, name)
	delete(c.terminating, name)
	delete(c.skipped, name)
}

// snapshot merges every slice into a new Snapshot. An endpoint present in
// two slices (while the controller moves it) is kept once, its most
// available copy winning (discovery.NewSnapshot). lookup (nil: none) gives
// what the pods behind endpoints tell: the kill time of each terminating
// endpoint that names its pod; while some endpoint of the Service is
// terminating, the revision of every endpoint that names its pod; and,
// under an identity read from the pod, every such endpoint's ID. An
// endpoint whose ID is not known yet is held back: published not ready, so
// that it takes no session under a hash it would then lose; held counts
// them, and those plus the terminating endpoints whose kill time is not
// known yet (asked again later) are waiting.
func (c *sliceCache) snapshot(lookup func(ref podRef, terminating bool) podInfo) (snap *discovery.Snapshot, held, waiting int, err error) {
	all := make([]discovery.Endpoint, 0, c.total)
	rollout := len(c.terminating) > 0
	fromPod := c.identity.FromPod()
	for name, eps := range c.slices {
		n := len(all)
		all = append(all, eps...)
		if lookup == nil {
			continue
		}
		for _, p := range c.pods[name] {
			if !p.terminating && !rollout && !fromPod {
				continue
			}
			e := &all[n+p.index]
			info := lookup(p.ref, p.terminating)
			e.KillTime = info.kill
			if p.terminating && info.kill.IsZero() {
				waiting++
			}
			if p.terminating || rollout {
				e.Revision = info.revision
			}
			if fromPod {
				e.ID = info.id
				if !info.identified && e.Ready {
					e.Ready = false
					held++
					waiting++
				}
			}
		}
	}
	snap, err = discovery.NewSnapshot(c.service, all)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("snapshot of %s: %w", c.service, err)
	}
	return snap, held, waiting, nil
}

// endpointID returns the ID of e under identity as the slice tells it: for
// discovery.IdentityPodName the name of its pod when its targetRef is a Pod
// with a valid name (discovery.ValidID; API names always are), else ""
// (the address, or for identities read from the pod, not known yet).
func endpointID(identity discovery.Identity, e *discoveryv1.Endpoint) string {
	if !identity.PodName() {
		return ""
	}
	r := e.TargetRef
	if r == nil || r.Kind != "Pod" || discovery.ValidID(r.Name) != nil {
		return ""
	}
	return r.Name
}

// podRef names a pod by name and, when the EndpointSlice gives it, UID (a
// pod recreated under the same name is another pod).
type podRef struct{ name, uid string }

// podEndpoint is an endpoint of a slice that names its pod: index is its
// place in the slice's converted endpoints.
type podEndpoint struct {
	index       int
	ref         podRef
	terminating bool
}

// countTerminating counts the terminating endpoints of pods.
func countTerminating(pods []podEndpoint) int {
	n := 0
	for _, p := range pods {
		if p.terminating {
			n++
		}
	}
	return n
}

// convert turns the slice's endpoints into discovery Endpoints on the
// selected port. It uses each endpoint's first address, as the API allows
// consumers to (addresses are fungible), and skips addresses that do not
// parse as the slice's family. pods lists the endpoints whose targetRef is
// a pod of the slice's namespace. Each endpoint's ID comes from
// identity (endpointID).
func convert(s *discoveryv1.EndpointSlice, sel portSelector, identity discovery.Identity) (eps []discovery.Endpoint, pods []podEndpoint, skipped int) {
	var want4 bool
	switch s.AddressType {
	case discoveryv1.AddressTypeIPv4:
		want4 = true
	case discoveryv1.AddressTypeIPv6:
	default: // FQDN: longhaul dials addresses only
		return nil, nil, 0
	}
	port, ok := sel.resolve(s.Ports)
	if !ok {
		return nil, nil, 0
	}
	eps = make([]discovery.Endpoint, 0, len(s.Endpoints))
	for i := range s.Endpoints {
		e := &s.Endpoints[i]
		if len(e.Addresses) == 0 {
			skipped++
			continue
		}
		ip, err := netip.ParseAddr(e.Addresses[0])
		if err != nil || ip.Zone() != "" || ip.Unmap().Is4() != want4 {
			skipped++
			continue
		}
		ready, serving, terminating := discovery.Conditions{
			Ready:       e.Conditions.Ready,
			Serving:     e.Conditions.Serving,
			Terminating: e.Conditions.Terminating,
		}.Resolve()
		out := discovery.Endpoint{
			Address:     netip.AddrPortFrom(ip.Unmap(), port).String(),
			Ready:       ready,
			Serving:     serving,
			Terminating: terminating,
			Weight:      1,
		}
		if e.Zone != nil {
			out.Zone = *e.Zone
		}
		if e.NodeName != nil {
			out.Node = *e.NodeName
		}
		if r := e.TargetRef; r != nil && r.Kind == "Pod" {
			out.Pod = r.Name
			if r.Name != "" && (r.Namespace == "" || r.Namespace == s.Namespace) {
				pods = append(pods, podEndpoint{index: len(eps), ref: podRef{name: r.Name, uid: string(r.UID)}, terminating: terminating})
			}
		}
		out.ID = endpointID(identity, e)
		eps = append(eps, out)
	}
	return eps, pods, skipped
}
