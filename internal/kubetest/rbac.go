package kubetest

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// ServiceAccountClient returns a client that impersonates the
// ServiceAccount ns/name, as longhaul runs in a cluster.
func (c *Cluster) ServiceAccountClient(t testing.TB, ns, name string) kubernetes.Interface {
	t.Helper()
	cfg := rest.CopyConfig(c.Config)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + ns + ":" + name,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// ApplyRBAC creates in ns the Roles and RoleBindings of a manifest file
// (deploy/'s), with their namespace and their subjects' rewritten to ns, as
// a kustomize overlay's namespace: does. It returns how many of each it
// created; any other kind fails the test.
func ApplyRBAC(t testing.TB, c kubernetes.Interface, ns, path string) (roles, bindings int) {
	t.Helper()
	ctx := context.Background()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		var raw map[string]any
		if err := dec.Decode(&raw); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b, _ := json.Marshal(raw)
		switch raw["kind"] {
		case "Role":
			var r rbacv1.Role
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			r.Namespace = ns
			if _, err := c.RbacV1().Roles(ns).Create(ctx, &r, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			roles++
		case "RoleBinding":
			var rb rbacv1.RoleBinding
			if err := json.Unmarshal(b, &rb); err != nil {
				t.Fatal(err)
			}
			rb.Namespace = ns
			for i := range rb.Subjects {
				rb.Subjects[i].Namespace = ns
			}
			if _, err := c.RbacV1().RoleBindings(ns).Create(ctx, &rb, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			bindings++
		default:
			t.Fatalf("%s: unexpected kind %v", path, raw["kind"])
		}
	}
	return roles, bindings
}
