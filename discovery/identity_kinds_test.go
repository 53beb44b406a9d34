package discovery

import (
	"strings"
	"testing"
)

func TestParseIdentity(t *testing.T) {
	for s, want := range map[string]Identity{
		"":                                IdentityAddress,
		"address":                         IdentityAddress,
		"pod-name":                        IdentityPodName,
		"label:shard":                     IdentityLabel("shard"),
		"label:example.com/shard":         IdentityLabel("example.com/shard"),
		"annotation:longhaul.dev/hash-id": IdentityAnnotation("longhaul.dev/hash-id"),
	} {
		got, err := ParseIdentity(s)
		if err != nil || got != want {
			t.Errorf("ParseIdentity(%q) = %v, %v; want %v", s, got, err, want)
		}
		if s != "" && got.String() != s {
			t.Errorf("ParseIdentity(%q).String() = %q", s, got.String())
		}
	}
	for s, msg := range map[string]string{
		"podname":                          "want address, pod-name, label:KEY or annotation:KEY",
		"label:":                           "label key",
		"label:bad key":                    "label key",
		"annotation:-x":                    "annotation key",
		"field:spec.x":                     "want address",
		"label:a/b/c":                      "label key",
		"label:" + strings.Repeat("k", 64): "label key",
	} {
		if _, err := ParseIdentity(s); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("ParseIdentity(%q): %v, want an error with %q", s, err, msg)
		}
	}
}

func TestIdentityOf(t *testing.T) {
	labels := map[string]string{"shard": "7", "bad": "a b"}
	annotations := map[string]string{"hash-id": "cache-3"}
	for _, c := range []struct {
		id   Identity
		want string
	}{
		{IdentityLabel("shard"), "7"},
		{IdentityLabel("missing"), ""},
		{IdentityLabel("bad"), ""},
		{IdentityAnnotation("hash-id"), "cache-3"},
		{IdentityAnnotation("shard"), ""},
		{IdentityPodName, ""},
		{IdentityAddress, ""},
	} {
		if got := c.id.Of(labels, annotations); got != c.want {
			t.Errorf("%v.Of = %q, want %q", c.id, got, c.want)
		}
	}
	if !IdentityLabel("x").FromPod() || !IdentityAnnotation("x").FromPod() || IdentityPodName.FromPod() || IdentityAddress.FromPod() {
		t.Error("FromPod wrong")
	}
}
