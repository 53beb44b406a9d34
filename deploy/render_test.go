package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"go.uber.org/goleak"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/longhaul-proxy/longhaul/config"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"))
}

// kustomization is the part of kustomization.yaml that render understands;
// any other field makes render fail rather than silently differ from
// `kubectl apply -k`.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
}

// render returns the objects of the kustomization, in order.
func render(t testing.TB) []*unstructured.Unstructured {
	t.Helper()
	return renderDir(t, ".")
}

// renderDir returns the objects of the kustomization in dir, in order.
func renderDir(t testing.TB, dir string) []*unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		t.Fatalf("kustomization.yaml uses more than the test renders: %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" || len(k.Resources) == 0 {
		t.Fatalf("kustomization.yaml: %+v", k)
	}
	var objs []*unstructured.Unstructured
	for _, name := range k.Resources {
		b, err := os.ReadFile(filepath.Join(dir, filepath.Clean(name)))
		if err != nil {
			t.Fatalf("resource %s: %v", name, err)
		}
		objs = append(objs, decodeObjects(t, "resource "+name, b)...)
	}
	return objs
}

// decodeObjects returns the objects of a stream of YAML (or JSON)
// documents, in order, skipping empty documents; what names where they
// came from in failures.
func decodeObjects(t testing.TB, what string, b []byte) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if m == nil { // an empty document
			continue
		}
		o := &unstructured.Unstructured{Object: m}
		if o.GetKind() == "" || o.GetName() == "" {
			t.Fatalf("%s: object without kind or name: %v", what, m)
		}
		objs = append(objs, o)
	}
	return objs
}

// find returns the object of that kind and name ("": the only object of
// that kind), converted to out.
func find(t testing.TB, objs []*unstructured.Unstructured, kind, name string, out any) {
	t.Helper()
	var found *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind && (name == "" || o.GetName() == name) {
			if found != nil {
				t.Fatalf("two objects of kind %s named %q", kind, name)
			}
			found = o
		}
	}
	if found == nil {
		t.Fatalf("no %s %q in the kustomization", kind, name)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(found.Object, out, true); err != nil {
		t.Fatalf("%s %s: %v", kind, found.GetName(), err)
	}
}

// manifests gathers what the checks need from the rendered objects.
type manifests struct {
	objs       []*unstructured.Unstructured
	deploy     appsv1.Deployment
	svc        corev1.Service // the clients'
	metricsSvc corev1.Service
	netpol     networkingv1.NetworkPolicy
	cm         corev1.ConfigMap
	cfg        *config.Config // the ConfigMap's, loaded as longhaul loads it
	container  corev1.Container
	adminPort  int
	debugPort  int            // 0 without a debug address
	listenPort map[string]int // listener name to port
}

func load(t testing.TB) *manifests {
	t.Helper()
	m := &manifests{objs: render(t), listenPort: map[string]int{}}
	find(t, m.objs, "Deployment", "", &m.deploy)
	find(t, m.objs, "Service", "longhaul", &m.svc)
	find(t, m.objs, "Service", "longhaul-metrics", &m.metricsSvc)
	find(t, m.objs, "NetworkPolicy", "", &m.netpol)
	find(t, m.objs, "ConfigMap", "", &m.cm)
	if n := len(m.deploy.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("%d containers, want 1", n)
	}
	m.container = m.deploy.Spec.Template.Spec.Containers[0]
	raw, ok := m.cm.Data["config.yaml"]
	if !ok {
		t.Fatal("ConfigMap has no config.yaml")
	}
	cfg, err := config.Parse([]byte(raw))
	if err != nil {
		t.Fatalf("ConfigMap's config.yaml: %v", err)
	}
	m.cfg = cfg
	m.adminPort = portOf(t, "admin.address", cfg.Admin.Address)
	if cfg.Admin.DebugAddress != "" {
		m.debugPort = portOf(t, "admin.debugAddress", cfg.Admin.DebugAddress)
	}
	for _, l := range cfg.Listeners {
		m.listenPort[l.Name] = portOf(t, "listener "+l.Name, l.Address)
	}
	return m
}

func portOf(t testing.TB, what, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s %q: %v", what, addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%s %q: %v", what, addr, err)
	}
	return n
}

// containerPort resolves a probe's or Service's target port (a name or a
// number) against the container's ports.
func (m *manifests) containerPort(p intstr.IntOrString) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	for _, cp := range m.container.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("no container port named %q", p.StrVal)
}
