package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/longhaul-proxy/longhaul/internal/kubetest"
)

const fieldManager = "longhaul-test"

// TestApplyToAPIServer server-side applies every object of the kustomization
// to a real kube-apiserver with strict field validation, then checks what
// the ServiceAccount may do, and that a pod of the Deployment's template is
// admitted under the "restricted" Pod Security Standard.
func TestApplyToAPIServer(t *testing.T) {
	m := load(t)
	cl := kubetest.Start(t)
	ctx := context.Background()

	// The namespace the manifests name, labelled to enforce the restricted
	// Pod Security Standard.
	namespaces := map[string]bool{}
	for _, o := range m.objs {
		if o.GetNamespace() == "" {
			t.Errorf("%s %s has no namespace", o.GetKind(), o.GetName())
		}
		namespaces[o.GetNamespace()] = true
	}
	if len(namespaces) != 1 {
		t.Fatalf("objects span namespaces %v, want one", namespaces)
	}
	ns := m.deploy.Namespace
	if _, err := cl.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   ns,
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"},
	}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	apply := func() map[string]string { return serverSideApply(t, cl, m.objs, false) }
	first := apply()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("applied %d objects to namespace %s", len(first), ns)
	// Applying again changes nothing: the manifests hold no field the
	// server rewrites (defaulting aside), so there is no endless diff.
	for id, rv := range apply() {
		if first[id] != rv {
			t.Errorf("re-applying %s changed it (resourceVersion %s -> %s)", id, first[id], rv)
		}
	}

	t.Run("ServiceAccountRights", func(t *testing.T) {
		sa := m.deploy.Spec.Template.Spec.ServiceAccountName
		user := "system:serviceaccount:" + ns + ":" + sa
		can := func(verb, group, resource, namespace string) bool {
			t.Helper()
			return serviceAccountMay(t, cl, ns, sa, verb, group, resource, namespace)
		}
		for _, c := range []struct {
			verb, group, resource, ns string
			want                      bool
		}{
			{"list", "discovery.k8s.io", "endpointslices", ns, true},
			{"watch", "discovery.k8s.io", "endpointslices", ns, true},
			{"get", "discovery.k8s.io", "endpointslices", ns, true},
			{"get", "", "pods", ns, false}, // longhaul reads no pod
			{"get", "", "secrets", ns, false},
			{"list", "", "secrets", ns, false},
			{"create", "discovery.k8s.io", "endpointslices", ns, false},
			{"update", "discovery.k8s.io", "endpointslices", ns, false},
			{"list", "", "pods", ns, false},
			{"list", "discovery.k8s.io", "endpointslices", "kube-system", false},
			{"list", "discovery.k8s.io", "endpointslices", "", false}, // all namespaces
		} {
			if got := can(c.verb, c.group, c.resource, c.ns); got != c.want {
				t.Errorf("%s may %s %s.%s in %q: %v, want %v", user, c.verb, c.resource, c.group, c.ns, got, c.want)
			}
		}
	})

	t.Run("PodAdmittedAsRestricted", func(t *testing.T) {
		tmpl := m.deploy.Spec.Template
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "longhaul-dry-run", Namespace: ns, Labels: tmpl.Labels},
			Spec:       tmpl.Spec,
		}
		_, err := cl.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{
			DryRun:          []string{metav1.DryRunAll},
			FieldValidation: metav1.FieldValidationStrict,
		})
		if err != nil {
			t.Fatalf("a pod of the Deployment's template is refused: %v", err)
		}
	})
}

// serverSideApply applies objs to the cluster in order, server-side with
// strict field validation (dryRun: with dry-run All, so that nothing is
// stored), and returns each object's resourceVersion by "Kind ns/name".
// Failures are reported with t.Errorf, one per object.
func serverSideApply(t *testing.T, cl *kubetest.Cluster, objs []*unstructured.Unstructured, dryRun bool) map[string]string {
	t.Helper()
	ctx := context.Background()
	dyn, err := dynamic.NewForConfig(cl.Config)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := restmapper.GetAPIGroupResources(cl.Client.Discovery())
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDiscoveryRESTMapper(groups)
	opts := metav1.PatchOptions{
		FieldManager:    fieldManager,
		Force:           new(true),
		FieldValidation: metav1.FieldValidationStrict,
	}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	versions := map[string]string{}
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		id := fmt.Sprintf("%s %s/%s", gvk.Kind, o.GetNamespace(), o.GetName())
		mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Errorf("%s: %v", id, err)
			continue
		}
		var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = dyn.Resource(mapping.Resource).Namespace(o.GetNamespace())
		}
		body, err := json.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ri.Patch(ctx, o.GetName(), types.ApplyPatchType, body, opts)
		if err != nil {
			t.Errorf("apply %s: %v", id, err)
			continue
		}
		versions[id] = got.GetResourceVersion()
	}
	return versions
}

// serviceAccountMay asks the API server whether the ServiceAccount saNS/sa
// may verb group's resource in namespace ("" for all namespaces).
func serviceAccountMay(t *testing.T, cl *kubetest.Cluster, saNS, sa, verb, group, resource, namespace string) bool {
	t.Helper()
	r, err := cl.Client.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   "system:serviceaccount:" + saNS + ":" + sa,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + saNS, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: namespace, Verb: verb, Group: group, Resource: resource,
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SubjectAccessReview: %v", err)
	}
	return r.Status.Allowed
}
