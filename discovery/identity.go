package discovery

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Identity says where a source that knows the pods behind its endpoints
// (the Kubernetes source) takes each endpoint's hash identity
// (Endpoint.ID) from. The zero value is IdentityAddress. Identities are
// comparable with ==.
type Identity struct {
	from identityFrom
	key  string // the label or annotation key
}

type identityFrom uint8

const (
	fromAddress identityFrom = iota
	fromPodName
	fromPodLabel
	fromPodAnnotation
)

var (
	// IdentityAddress leaves IDs empty: endpoints hash by address, and a
	// pod replaced under a new IP moves its keys.
	IdentityAddress = Identity{}
	// IdentityPodName takes the name of the endpoint's pod, so that a
	// StatefulSet pod ("db-2"), whose name survives its replacement, keeps
	// its keys under a new IP. Other pods get a new name with a new pod,
	// so for them it changes nothing.
	IdentityPodName = Identity{from: fromPodName}
)

// IdentityLabel takes the value of the pod's label key (say a shard
// number that a replacement pod carries too). key is not checked; see
// ParseIdentity.
func IdentityLabel(key string) Identity { return Identity{from: fromPodLabel, key: key} }

// IdentityAnnotation takes the value of the pod's annotation key.
func IdentityAnnotation(key string) Identity { return Identity{from: fromPodAnnotation, key: key} }

// ParseIdentity returns the Identity s names: "" or "address", "pod-name",
// "label:KEY" or "annotation:KEY", KEY a Kubernetes qualified name (an
// optional DNS subdomain prefix and "/", then at most 63 characters of
// alphanumerics, '-', '_' and '.').
func ParseIdentity(s string) (Identity, error) {
	switch s {
	case "", "address":
		return IdentityAddress, nil
	case "pod-name":
		return IdentityPodName, nil
	}
	kind, key, ok := strings.Cut(s, ":")
	if ok && (kind == "label" || kind == "annotation") {
		if errs := validation.IsQualifiedName(key); len(errs) > 0 {
			return Identity{}, fmt.Errorf("identity %q: %s key %q: %s", s, kind, key, errs[0])
		}
		if kind == "label" {
			return IdentityLabel(key), nil
		}
		return IdentityAnnotation(key), nil
	}
	return Identity{}, fmt.Errorf("identity %q: want address, pod-name, label:KEY or annotation:KEY", s)
}

// String returns the name ParseIdentity accepts for i.
func (i Identity) String() string {
	switch i.from {
	case fromAddress:
		return "address"
	case fromPodName:
		return "pod-name"
	case fromPodLabel:
		return "label:" + i.key
	case fromPodAnnotation:
		return "annotation:" + i.key
	}
	return fmt.Sprintf("Identity(%d)", i.from)
}

// PodName reports whether i is IdentityPodName.
func (i Identity) PodName() bool { return i.from == fromPodName }

// FromPod reports whether i is read from the pod object (a label or an
// annotation), which the source must fetch.
func (i Identity) FromPod() bool { return i.from == fromPodLabel || i.from == fromPodAnnotation }

// Of returns the ID that i takes from a pod's labels and annotations
// (FromPod identities), or "" (the address) when the pod has no such key
// or its value is not a valid ID (ValidID), and for other identities.
func (i Identity) Of(labels, annotations map[string]string) string {
	var v string
	switch i.from {
	case fromPodLabel:
		v = labels[i.key]
	case fromPodAnnotation:
		v = annotations[i.key]
	}
	if v == "" || ValidID(v) != nil {
		return ""
	}
	return v
}
