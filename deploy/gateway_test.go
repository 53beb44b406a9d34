package deploy

import (
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestGatewayOverlay checks deploy/gateway against the base: every CRD of
// crds/ is listed, the Deployment is the base's but for the gateway flag
// and the Lease's environment, the ClusterRole writes status subresources
// only, and the base grants nothing on Secrets. (What the roles allow is
// asked of a real API server in the gateway package's tests.)
func TestGatewayOverlay(t *testing.T) {
	objs := renderDir(t, "gateway")
	files, err := filepath.Glob("gateway/crds/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRD files: %v", err)
	}
	crds := 0
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" {
			crds++
			if v := o.GetAnnotations()["gateway.networking.k8s.io/bundle-version"]; v != "v1.6.3" {
				t.Errorf("CRD %s is of bundle version %q, want v1.6.3 (the module's)", o.GetName(), v)
			}
			if c := o.GetAnnotations()["gateway.networking.k8s.io/channel"]; c != "standard" {
				t.Errorf("CRD %s is of channel %q", o.GetName(), c)
			}
		}
	}
	if crds != len(files)-1 { // the one file that is not a CRD: the safe-upgrades policy
		t.Errorf("%d CRDs rendered from %d files of crds/", crds, len(files))
	}

	var base, gw appsv1.Deployment
	find(t, render(t), "Deployment", "", &base)
	find(t, objs, "Deployment", "", &gw)
	bc, gc := &base.Spec.Template.Spec.Containers[0], &gw.Spec.Template.Spec.Containers[0]
	if want := append(slices.Clone(bc.Args), "--gateway-class", "longhaul"); !slices.Equal(gc.Args, want) {
		t.Errorf("gateway args %q, want %q", gc.Args, want)
	}
	var lease []string
	gc.Env = slices.DeleteFunc(gc.Env, func(e corev1.EnvVar) bool {
		if e.Name == "POD_NAME" || e.Name == "POD_NAMESPACE" {
			lease = append(lease, e.Name+"="+e.ValueFrom.FieldRef.FieldPath)
			return true
		}
		return false
	})
	if !slices.Equal(lease, []string{"POD_NAME=metadata.name", "POD_NAMESPACE=metadata.namespace"}) {
		t.Errorf("lease environment %v", lease)
	}
	gc.Args = bc.Args
	if !reflect.DeepEqual(base, gw) {
		t.Error("deploy/gateway/deployment.yaml differs from deploy/deployment.yaml beyond the gateway flag and the Lease's environment: keep them in step")
	}

	var cr rbacv1.ClusterRole
	find(t, objs, "ClusterRole", "longhaul-gateway", &cr)
	for _, r := range cr.Rules {
		for _, res := range r.Resources {
			status := strings.HasSuffix(res, "/status")
			for _, v := range r.Verbs {
				write := !slices.Contains([]string{"get", "list", "watch"}, v)
				if write && (!status || (v != "update" && v != "patch")) {
					t.Errorf("ClusterRole may %s %s: only status subresources are written", v, res)
				}
			}
			if res == "*" || slices.Contains(r.Verbs, "*") || slices.Contains(r.APIGroups, "*") {
				t.Errorf("ClusterRole rule %+v uses a wildcard", r)
			}
		}
	}
	for _, o := range render(t) {
		if o.GetKind() == "ClusterRole" || o.GetKind() == "ClusterRoleBinding" {
			t.Errorf("the base has a %s: its rights stay in its namespace", o.GetKind())
		}
		if o.GetKind() == "Role" {
			var r rbacv1.Role
			find(t, []*unstructured.Unstructured{o}, "Role", o.GetName(), &r)
			for _, rule := range r.Rules {
				if slices.Contains(rule.Resources, "secrets") {
					t.Errorf("the base's Role %s grants %v on Secrets", r.Name, rule.Verbs)
				}
			}
		}
	}
}
