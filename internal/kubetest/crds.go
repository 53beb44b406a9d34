package kubetest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
)

// crdEstablishTimeout bounds how long a created CRD may take to be served.
const crdEstablishTimeout = 30 * time.Second

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// InstallCRDs creates every CustomResourceDefinition of the YAML files in
// dir (other kinds in them, such as admission policies, are skipped) and
// waits until each is Established, so that its kinds are served when it
// returns. It returns how many it created; none fails the test.
func (c *Cluster) InstallCRDs(t testing.TB, dir string) int {
	t.Helper()
	ctx := context.Background()
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("kubetest: no CRD files in %s: %v", dir, err)
	}
	var names []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for {
			var o unstructured.Unstructured
			if err := dec.Decode(&o.Object); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("kubetest: %s: %v", f, err)
			}
			if o.GetKind() != "CustomResourceDefinition" {
				continue
			}
			if _, err := dyn.Resource(crdResource).Create(ctx, &o, metav1.CreateOptions{}); err != nil {
				t.Fatalf("kubetest: create CRD %s: %v", o.GetName(), err)
			}
			names = append(names, o.GetName())
		}
	}
	if len(names) == 0 {
		t.Fatalf("kubetest: no CustomResourceDefinition in %s", dir)
	}
	deadline := time.Now().Add(crdEstablishTimeout)
	for _, name := range names {
		for {
			err := established(ctx, dyn, name)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("kubetest: CRD %s not established within %v: %v", name, crdEstablishTimeout, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return len(names)
}

// established reports, as an error, why CRD name is not Established yet.
func established(ctx context.Context, dyn dynamic.Interface, name string) error {
	o, err := dyn.Resource(crdResource).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	conds, _, _ := unstructured.NestedSlice(o.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" {
			if m["status"] == "True" {
				return nil
			}
			return fmt.Errorf("Established is %v: %v", m["status"], m["message"])
		}
	}
	return fmt.Errorf("no Established condition yet")
}
