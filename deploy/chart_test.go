package deploy

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/internal/testtools"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/internal/kubetest"
)

// chartDir is the Helm chart, relative to this package.
const chartDir = "../charts/longhaul"

// allOptions is the chart's values file with every option on.
var allOptions = filepath.Join(chartDir, "ci", "all-options-values.yaml")

// helmTimeout bounds one helm command.
const helmTimeout = 2 * time.Minute

// helmBin returns the helm that hack/tools.sh builds.
func helmBin(t testing.TB) string { return testtools.Bin(t, "helm") }

// runHelm runs helm with args and returns its standard output; its
// configuration, cache and data live in a temporary directory and it sees
// no kubeconfig, so that it reads nothing of the machine's.
func runHelm(t testing.TB, args ...string) (string, error) {
	t.Helper()
	bin := helmBin(t)
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), helmTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
		"KUBECONFIG="+filepath.Join(home, "no-kubeconfig"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// chartRelease is one `helm template` of the chart.
type chartRelease struct {
	name, namespace string
	valuesFiles     []string
	values          string // YAML written to a values file, after valuesFiles
	set             []string
}

func (r chartRelease) args(t testing.TB, cmd ...string) []string {
	t.Helper()
	args := append(slices.Clone(cmd), "--namespace", cmp.Or(r.namespace, "shop"))
	for _, f := range r.valuesFiles {
		args = append(args, "-f", f)
	}
	if r.values != "" {
		f := filepath.Join(t.TempDir(), "values.yaml")
		if err := os.WriteFile(f, []byte(r.values), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-f", f)
	}
	for _, s := range r.set {
		args = append(args, "--set", s)
	}
	return args
}

// renderChart returns the objects `helm template` renders for r.
func renderChart(t testing.TB, r chartRelease) []*unstructured.Unstructured {
	t.Helper()
	out, err := tryRenderChart(t, r)
	if err != nil {
		t.Fatal(err)
	}
	return decodeObjects(t, "helm template", []byte(out))
}

func tryRenderChart(t testing.TB, r chartRelease) (string, error) {
	t.Helper()
	return runHelm(t, r.args(t, "template", cmp.Or(r.name, "longhaul"), chartDir)...)
}

// chart gathers what the checks need from a render of the chart.
type chart struct {
	objs      []*unstructured.Unstructured
	deploy    appsv1.Deployment
	container corev1.Container
	cfg       *config.Config // the ConfigMap's, parsed as longhaul parses it
}

func loadChart(t testing.TB, r chartRelease) *chart {
	t.Helper()
	c := &chart{objs: renderChart(t, r)}
	find(t, c.objs, "Deployment", "", &c.deploy)
	if n := len(c.deploy.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("%d containers, want 1", n)
	}
	c.container = c.deploy.Spec.Template.Spec.Containers[0]
	var cm corev1.ConfigMap
	find(t, c.objs, "ConfigMap", "", &cm)
	raw, ok := cm.Data["config.yaml"]
	if !ok {
		t.Fatal("the chart's ConfigMap has no config.yaml")
	}
	cfg, err := config.Parse([]byte(raw))
	if err != nil {
		t.Fatalf("the chart's config.yaml is refused by longhaul: %v\n%s", err, raw)
	}
	c.cfg = cfg
	return c
}

func (c *chart) kinds() map[string]int {
	n := map[string]int{}
	for _, o := range c.objs {
		n[o.GetKind()]++
	}
	return n
}

func (c *chart) env(name string) (string, bool) {
	for _, e := range c.container.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

// TestChartLint: `helm lint --strict` passes with the defaults, with every
// option on, and in gateway mode with no listener of its own.
func TestChartLint(t *testing.T) {
	for _, r := range []chartRelease{
		{},
		{valuesFiles: []string{allOptions}},
		{values: "gateway: {enabled: true, ports: [{name: http, port: 80}]}\nconfig: {listeners: []}\n"},
	} {
		out, err := runHelm(t, r.args(t, "lint", "--strict", chartDir)...)
		if err != nil {
			t.Errorf("helm lint: %v", err)
			continue
		}
		if !strings.Contains(out, "0 chart(s) failed") {
			t.Errorf("helm lint %v: %s", r.valuesFiles, out)
		}
	}
}

// TestChartDefaults checks the default render: the labels of every object,
// the derived GOMEMLIMIT and grace period, the optional objects, and the
// rights (no cluster role, nothing on Secrets or pods).
func TestChartDefaults(t *testing.T) {
	c := loadChart(t, chartRelease{})
	for _, o := range c.objs {
		l := o.GetLabels()
		for k, want := range map[string]string{
			"app.kubernetes.io/name":       "longhaul",
			"app.kubernetes.io/instance":   "longhaul",
			"app.kubernetes.io/version":    "latest",
			"app.kubernetes.io/managed-by": "Helm",
		} {
			if l[k] != want {
				t.Errorf("%s %s: label %s=%q, want %q", o.GetKind(), o.GetName(), k, l[k], want)
			}
		}
		if l["app.kubernetes.io/component"] == "" {
			t.Errorf("%s %s has no app.kubernetes.io/component label", o.GetKind(), o.GetName())
		}
		if ns := o.GetNamespace(); ns != "shop" {
			t.Errorf("%s %s is in namespace %q, want the release's", o.GetKind(), o.GetName(), ns)
		}
	}
	// The pod template's labels select its pods and do not follow the
	// chart's version (an upgrade would roll every replica).
	pl := c.deploy.Spec.Template.Labels
	for k, v := range c.deploy.Spec.Selector.MatchLabels {
		if pl[k] != v {
			t.Errorf("pod label %s=%q, the selector wants %q", k, pl[k], v)
		}
	}
	if _, ok := pl["helm.sh/chart"]; ok {
		t.Error("the pod template carries helm.sh/chart")
	}

	kinds := c.kinds()
	for kind, want := range map[string]int{
		"ServiceAccount": 1, "ConfigMap": 1, "Deployment": 1, "Service": 2, "Role": 1, "RoleBinding": 1,
		"PodDisruptionBudget": 1, "NetworkPolicy": 1,
		"ClusterRole": 0, "ClusterRoleBinding": 0, "GatewayClass": 0, "PodMonitor": 0, "ServiceMonitor": 0,
	} {
		if kinds[kind] != want {
			t.Errorf("%d objects of kind %s, want %d", kinds[kind], kind, want)
		}
	}
	if v, _ := c.env("GOMEMLIMIT"); v != "460MiB" {
		t.Errorf("GOMEMLIMIT %q, want 460MiB (90%% of 512Mi)", v)
	}
	if g := c.deploy.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g != 40 {
		t.Errorf("terminationGracePeriodSeconds %v, want 40 (5 s delay + 25 s drain + 10 s)", g)
	}
	if !slices.Equal(c.container.Args, []string{"run", "--config", "/etc/longhaul/config.yaml", "--shutdown-delay", "5s"}) {
		t.Errorf("args %q", c.container.Args)
	}
	noSecrets(t, c.objs)
	for _, r := range roles(t, c.objs) {
		for _, rule := range r.Rules {
			if slices.Contains(rule.Resources, "pods") {
				t.Errorf("Role %s grants pods without rbac.pods", r.Name)
			}
		}
	}
	k := c.cfg.Listeners[0].Endpoints.Kubernetes
	if k == nil || k.Namespace != "shop" {
		t.Errorf("the listener's kubernetes endpoints %+v: want the release's namespace filled in", k)
	}
}

// TestChartAllOptions checks the render with every option on.
func TestChartAllOptions(t *testing.T) {
	c := loadChart(t, chartRelease{name: "r", valuesFiles: []string{allOptions}})
	kinds := c.kinds()
	for kind, want := range map[string]int{
		"ClusterRole": 1, "ClusterRoleBinding": 1, "GatewayClass": 1, "PodMonitor": 1, "ServiceMonitor": 1,
		"PodDisruptionBudget": 1, "NetworkPolicy": 1,
		// EndpointSlices and pods in shop, db and web, and the Lease's.
		"Role": 7, "RoleBinding": 7,
	} {
		if kinds[kind] != want {
			t.Errorf("%d objects of kind %s, want %d", kinds[kind], kind, want)
		}
	}
	if v, _ := c.env("GOMEMLIMIT"); v != "819MiB" {
		t.Errorf("GOMEMLIMIT %q, want 819MiB (80%% of 1Gi)", v)
	}
	// 7 s delay + the longest drain timeout (a backend's 1m30s) + 5 s.
	if g := c.deploy.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g != 102 {
		t.Errorf("terminationGracePeriodSeconds %v, want 102", g)
	}
	if c.cfg.Gateway.Class != "longhaul-edge" {
		t.Errorf("config gateway.class %q, want gateway.className", c.cfg.Gateway.Class)
	}
	if !slices.Contains(c.container.Args, "--gateway-class") {
		t.Errorf("gateway mode without --gateway-class: %q", c.container.Args)
	}
	var ports []string
	for _, p := range c.container.Ports {
		ports = append(ports, fmt.Sprintf("%s=%d", p.Name, p.ContainerPort))
	}
	if want := []string{"grpc=8080", "tcp=9000", "web=8081", "gw-http=80", "gw-https=443", "admin=9100"}; !slices.Equal(ports, want) {
		t.Errorf("container ports %v, want %v", ports, want)
	}
	var np networkingv1.NetworkPolicy
	find(t, c.objs, "NetworkPolicy", "", &np)
	var open []string
	for _, p := range np.Spec.Ingress[0].Ports {
		open = append(open, p.Port.String())
	}
	if want := []string{"grpc", "tcp", "web", "gw-http", "gw-https"}; len(np.Spec.Ingress[0].From) != 0 || !slices.Equal(open, want) {
		t.Errorf("NetworkPolicy admits from anywhere %v, want %v", open, want)
	}
	if img := c.container.Image; !strings.HasPrefix(img, "registry.example/longhaul@sha256:") {
		t.Errorf("image %q: the digest wins over the tag", img)
	}
	if _, ok := c.deploy.Spec.Template.Annotations["checksum/config"]; !ok {
		t.Error("restartOnConfigChange without a checksum annotation")
	}
	for _, r := range roles(t, c.objs) {
		if r.Namespace != "shop" && r.Namespace != "db" && r.Namespace != "web" {
			t.Errorf("Role %s/%s", r.Namespace, r.Name)
		}
	}
}

// TestChartToggles: each optional object is rendered exactly when its
// option is on; gateway mode alone reads Secrets.
func TestChartToggles(t *testing.T) {
	for _, c := range []struct {
		set  string
		kind string
		want int
	}{
		{"podDisruptionBudget.enabled=false", "PodDisruptionBudget", 0},
		{"networkPolicy.enabled=false", "NetworkPolicy", 0},
		{"metrics.service.enabled=false", "Service", 1},
		{"metrics.podMonitor.enabled=true", "PodMonitor", 1},
		{"metrics.serviceMonitor.enabled=true", "ServiceMonitor", 1},
		{"gateway.enabled=true", "ClusterRole", 1},
		{"gateway.enabled=true", "ClusterRoleBinding", 1},
		{"gateway.enabled=true", "GatewayClass", 1},
		{"gateway.enabled=true", "Role", 2}, // EndpointSlices, the Lease
		{"rbac.pods=true", "Role", 2},
		{"serviceAccount.create=false,serviceAccount.name=existing", "ServiceAccount", 0},
	} {
		objs := renderChart(t, chartRelease{set: []string{c.set}})
		n := 0
		for _, o := range objs {
			if o.GetKind() == c.kind {
				n++
			}
		}
		if n != c.want {
			t.Errorf("--set %s: %d objects of kind %s, want %d", c.set, n, c.kind, c.want)
		}
		if !strings.Contains(c.set, "gateway.enabled=true") {
			noSecrets(t, objs)
		}
	}
	// The ServiceMonitor selects the metrics Service: without it the chart
	// refuses to render.
	if _, err := tryRenderChart(t, chartRelease{set: []string{"metrics.serviceMonitor.enabled=true", "metrics.service.enabled=false"}}); err == nil {
		t.Error("a ServiceMonitor without the metrics Service rendered")
	}
}

// TestChartGoMemLimit: GOMEMLIMIT is the percentage of the memory limit,
// in whole MiB, for each quantity suffix; none without a limit; a limit
// the chart cannot read is an error that says what to do.
func TestChartGoMemLimit(t *testing.T) {
	for _, c := range []struct {
		values string
		want   string // "" for no GOMEMLIMIT; "error" for a refusal
	}{
		{"resources: {limits: {memory: 512Mi}}", "460MiB"},
		{"resources: {limits: {memory: 1Gi}}", "921MiB"},
		{"resources: {limits: {memory: 2G}}", "1716MiB"},          // 1.8e9 B
		{"resources: {limits: {memory: 1073741824}}", "921MiB"},   // bytes
		{"resources: {limits: {memory: \"1000000k\"}}", "858MiB"}, // 0.9e9 B
		{"resources: {limits: {memory: 1Ti}}", "943718MiB"},       // no overflow
		{"resources: {limits: {memory: 256Mi}}\ngoMemLimit: {percent: 50}", "128MiB"},
		{"resources: {limits: {memory: 256Mi}}\ngoMemLimit: {percent: 0}", ""},
		{"resources: {limits: {memory: 256Mi}}\ngoMemLimit: {value: 200MiB}", "200MiB"},
		{"resources: {limits: {memory: null}}", ""},
		{"resources: {limits: {memory: 1.5Gi}}", "error"},
		{"resources: {limits: {memory: 512Mi}}\ngoMemLimit: {percent: 120}", "error"},
	} {
		r := chartRelease{values: c.values}
		if c.want == "error" {
			if _, err := tryRenderChart(t, r); err == nil {
				t.Errorf("%q rendered, want a refusal", c.values)
			}
			continue
		}
		ch := loadChart(t, r)
		got, ok := ch.env("GOMEMLIMIT")
		if c.want == "" && ok {
			t.Errorf("%q: GOMEMLIMIT=%q, want none", c.values, got)
		} else if got != c.want {
			t.Errorf("%q: GOMEMLIMIT=%q, want %q", c.values, got, c.want)
		}
	}
}

// TestChartGracePeriod: terminationGracePeriodSeconds is the shutdown
// delay, plus the longest drain timeout of the listeners and backends
// (longhaul's 25 s where none is set, and for Gateway listeners), plus the
// margin, rounded up to a second.
func TestChartGracePeriod(t *testing.T) {
	listener := func(name, port, drain string) string {
		s := fmt.Sprintf("    - {name: %s, address: \"0.0.0.0:%s\", endpoints: {static: [\"10.0.0.1:80\"]}", name, port)
		if drain != "" {
			s += fmt.Sprintf(", drain: {timeout: %s}", drain)
		}
		return s + "}\n"
	}
	for _, c := range []struct {
		values string
		want   int64
	}{
		{"config:\n  listeners:\n" + listener("a", "80", "1m30s"), 5 + 90 + 10},
		{"config:\n  listeners:\n" + listener("a", "80", ""), 5 + 25 + 10},
		{"config:\n  listeners:\n" + listener("a", "80", "10s") + listener("b", "81", "1h0m0.5s"), 5 + 3601 + 10},
		{"shutdown: {delay: 1s, marginSeconds: 0}\nconfig:\n  listeners:\n" + listener("a", "80", "500ms"), 2},
		{"shutdown: {delay: 0s, marginSeconds: 3}\nconfig:\n  listeners:\n" + listener("a", "80", "0s"), 3},
		{"shutdown: {delay: 1500ms, marginSeconds: 10}\nconfig:\n  listeners:\n" + listener("a", "80", "2m"), 132},
		{"gateway: {enabled: true}\nconfig:\n  listeners:\n" + listener("a", "80", "10s"), 5 + 25 + 10},
		{"gateway: {enabled: true, ports: [{name: http, port: 80}]}\nconfig: {listeners: []}", 5 + 25 + 10},
		{`config:
  listeners:
    - name: gw
      address: 0.0.0.0:80
      protocol: http
      drain: {timeout: 5s}
      backends:
        - {name: a, endpoints: {static: ["10.0.0.1:80"]}, drain: {timeout: 45s}}
      routes: {http: [{name: r, rules: [{backendRefs: [{name: a}]}]}]}
`, 5 + 45 + 10},
	} {
		ch := loadChart(t, chartRelease{values: c.values})
		if g := ch.deploy.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g != c.want {
			t.Errorf("%s\nterminationGracePeriodSeconds %v, want %d", c.values, g, c.want)
		}
	}
	for _, bad := range []string{"shutdown: {delay: 5}", "config: {listeners: [{name: a, address: \"0.0.0.0:80\", endpoints: {static: [\"10.0.0.1:80\"]}, drain: {timeout: 5x}}]}"} {
		if _, err := tryRenderChart(t, chartRelease{values: bad}); err == nil {
			t.Errorf("%q rendered, want a refusal", bad)
		}
	}
}

// TestChartRefusals: values that would make a pod that cannot work are
// refused at render time, each with a message naming the value.
func TestChartRefusals(t *testing.T) {
	for _, c := range []struct{ values, says string }{
		{"config: {admin: {address: \"127.0.0.1:9901\"}}", "loopback"},
		{"config: {listeners: [{name: a-listener-name-too-long, address: \"0.0.0.0:80\", endpoints: {static: [\"10.0.0.1:80\"]}}]}", "port name"},
		{"config: {listeners: [{name: a, address: \"0.0.0.0\", endpoints: {static: [\"10.0.0.1:80\"]}}]}", "no port"},
		{"config: {listeners: []}", "config.listeners is empty"},
		{"gateway: {enabled: true, ports: [{name: grpc, port: 80}]}", "twice"},
		{"replica: 3", "replica"},
	} {
		_, err := tryRenderChart(t, chartRelease{values: c.values})
		if err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%q: %v, want a refusal saying %q", c.values, err, c.says)
		}
	}
}

// TestChartAgreesWithKustomize: the chart's default render and deploy/ (the
// kustomize base, its optional pods Role, and the gateway overlay) agree on
// the container's ports, probes and security contexts, the Services' and
// NetworkPolicy's ports, the shutdown timing, GOMEMLIMIT and the RBAC rules.
func TestChartAgreesWithKustomize(t *testing.T) {
	k := load(t)
	c := loadChart(t, chartRelease{})

	kc, cc := k.container, c.container
	for _, f := range []struct {
		what       string
		kust, helm any
	}{
		{"container ports", kc.Ports, cc.Ports},
		{"liveness probe", kc.LivenessProbe, cc.LivenessProbe},
		{"readiness probe", kc.ReadinessProbe, cc.ReadinessProbe},
		{"container securityContext", kc.SecurityContext, cc.SecurityContext},
		{"pod securityContext", k.deploy.Spec.Template.Spec.SecurityContext, c.deploy.Spec.Template.Spec.SecurityContext},
		{"terminationGracePeriodSeconds", k.deploy.Spec.Template.Spec.TerminationGracePeriodSeconds, c.deploy.Spec.Template.Spec.TerminationGracePeriodSeconds},
		{"resources", kc.Resources, cc.Resources},
		{"env", kc.Env, cc.Env},
		{"volume mounts", kc.VolumeMounts, cc.VolumeMounts},
		{"strategy", k.deploy.Spec.Strategy, c.deploy.Spec.Strategy},
		{"replicas", k.deploy.Spec.Replicas, c.deploy.Spec.Replicas},
		{"config", k.cfg, c.cfg},
	} {
		if !reflect.DeepEqual(f.kust, f.helm) {
			t.Errorf("%s differ:\n deploy/: %+v\n chart:   %+v", f.what, f.kust, f.helm)
		}
	}
	// The chart passes --shutdown-delay explicitly, at the default.
	if want := append(slices.Clone(kc.Args), "--shutdown-delay", "5s"); !slices.Equal(cc.Args, want) {
		t.Errorf("chart args %q, want deploy/'s %q with the default shutdown delay", cc.Args, kc.Args)
	}

	var svc, metricsSvc corev1.Service
	find(t, c.objs, "Service", "longhaul", &svc)
	find(t, c.objs, "Service", "longhaul-metrics", &metricsSvc)
	if !reflect.DeepEqual(k.svc.Spec.Ports, svc.Spec.Ports) || k.svc.Spec.Type != svc.Spec.Type {
		t.Errorf("Service ports: deploy/ %+v, chart %+v", k.svc.Spec.Ports, svc.Spec.Ports)
	}
	if !reflect.DeepEqual(k.metricsSvc.Spec.Ports, metricsSvc.Spec.Ports) ||
		metricsSvc.Spec.ClusterIP != "None" || !metricsSvc.Spec.PublishNotReadyAddresses {
		t.Errorf("metrics Service: deploy/ %+v, chart %+v", k.metricsSvc.Spec, metricsSvc.Spec)
	}
	var np networkingv1.NetworkPolicy
	find(t, c.objs, "NetworkPolicy", "", &np)
	if !reflect.DeepEqual(k.netpol.Spec.Ingress, np.Spec.Ingress) || !slices.Equal(k.netpol.Spec.PolicyTypes, np.Spec.PolicyTypes) {
		t.Errorf("NetworkPolicy ingress: deploy/ %+v, chart %+v", k.netpol.Spec.Ingress, np.Spec.Ingress)
	}

	// RBAC: the base's Role; with rbac.pods, rbac-pods.yaml's; in gateway
	// mode, deploy/gateway/rbac.yaml's ClusterRole and Lease Role.
	sameRules := func(what string, kust, helm []rbacv1.PolicyRule) {
		t.Helper()
		if !reflect.DeepEqual(kust, helm) {
			t.Errorf("%s rules differ:\n deploy/: %+v\n chart:   %+v", what, kust, helm)
		}
	}
	var kr, cr rbacv1.Role
	find(t, k.objs, "Role", "longhaul", &kr)
	find(t, c.objs, "Role", "longhaul", &cr)
	sameRules("Role longhaul", kr.Rules, cr.Rules)

	podsFile, err := os.ReadFile("rbac-pods.yaml")
	if err != nil {
		t.Fatal(err)
	}
	withPods := renderChart(t, chartRelease{set: []string{"rbac.pods=true"}})
	find(t, decodeObjects(t, "rbac-pods.yaml", podsFile), "Role", "longhaul-pods", &kr)
	find(t, withPods, "Role", "longhaul-pods", &cr)
	sameRules("Role longhaul-pods", kr.Rules, cr.Rules)

	gwk := renderDir(t, "gateway")
	gwc := loadChart(t, chartRelease{set: []string{"gateway.enabled=true"}})
	var kcr, ccr rbacv1.ClusterRole
	find(t, gwk, "ClusterRole", "longhaul-gateway", &kcr)
	find(t, gwc.objs, "ClusterRole", "longhaul-gateway", &ccr)
	sameRules("ClusterRole longhaul-gateway", kcr.Rules, ccr.Rules)
	find(t, gwk, "Role", "longhaul-gateway-lease", &kr)
	find(t, gwc.objs, "Role", "longhaul-gateway-lease", &cr)
	sameRules("Role longhaul-gateway-lease", kr.Rules, cr.Rules)
	var kgw appsv1.Deployment
	find(t, gwk, "Deployment", "", &kgw)
	if kd, cd := kgw.Spec.Template.Spec.Containers[0], gwc.container; !reflect.DeepEqual(kd.Env, cd.Env) {
		t.Errorf("gateway mode env: deploy/gateway %+v, chart %+v", kd.Env, cd.Env)
	}
	var kclass, cclass unstructured.Unstructured
	for _, o := range gwk {
		if o.GetKind() == "GatewayClass" {
			kclass = *o
		}
	}
	for _, o := range gwc.objs {
		if o.GetKind() == "GatewayClass" {
			cclass = *o
		}
	}
	kspec, _, _ := unstructured.NestedStringMap(kclass.Object, "spec")
	cspec, _, _ := unstructured.NestedStringMap(cclass.Object, "spec")
	if kspec["controllerName"] != config.GatewayController || !reflect.DeepEqual(kspec, cspec) || cclass.GetName() != kclass.GetName() {
		t.Errorf("GatewayClass: deploy/gateway %s %v, chart %s %v", kclass.GetName(), kspec, cclass.GetName(), cspec)
	}
}

// TestChartApplyToAPIServer server-side applies the chart's renders (the
// defaults, and every option on: gateway mode, monitors, Roles in three
// namespaces) to a real kube-apiserver with strict field validation, after
// installing the Gateway API CRDs and stand-ins for the Prometheus
// Operator's; a pod of each Deployment's template is admitted under the
// "restricted" Pod Security Standard, and each ServiceAccount may do what
// longhaul needs and no more (Secrets in gateway mode only). The
// kustomize gateway overlay is applied (dry-run) beside them.
func TestChartApplyToAPIServer(t *testing.T) {
	defaults := loadChart(t, chartRelease{})
	all := loadChart(t, chartRelease{name: "r", valuesFiles: []string{allOptions}})
	cl := kubetest.Start(t)
	ctx := context.Background()
	gw := cl.InstallCRDs(t, "gateway/crds")
	mon := cl.InstallCRDs(t, "testdata/monitoring-crds")
	t.Logf("installed %d Gateway API CRDs and %d monitoring stand-ins", gw, mon)
	for _, ns := range []string{"shop", "db", "web"} {
		if _, err := cl.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name:   ns,
			Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"},
		}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The all-options render names a priority class: the pod needs it.
	if _, err := cl.Client.SchedulingV1().PriorityClasses().Create(ctx, &schedulingv1.PriorityClass{
		ObjectMeta: metav1.ObjectMeta{Name: all.deploy.Spec.Template.Spec.PriorityClassName}, Value: 1000,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		ch   *chart
	}{{"defaults", defaults}, {"all-options", all}} {
		t.Run(c.name, func(t *testing.T) {
			applied := serverSideApply(t, cl, c.ch.objs, false)
			if t.Failed() {
				t.FailNow()
			}
			t.Logf("applied %d objects", len(applied))
			tmpl := c.ch.deploy.Spec.Template
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "longhaul-dry-run", Namespace: c.ch.deploy.Namespace, Labels: tmpl.Labels},
				Spec:       tmpl.Spec,
			}
			if _, err := cl.Client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{
				DryRun:          []string{metav1.DryRunAll},
				FieldValidation: metav1.FieldValidationStrict,
			}); err != nil {
				t.Errorf("a pod of the Deployment's template is refused: %v", err)
			}
		})
	}

	// What each release's ServiceAccount may do, asked of the API server.
	for _, c := range []struct {
		sa, verb, group, resource, ns string
		want                          bool
	}{
		{"longhaul", "watch", "discovery.k8s.io", "endpointslices", "shop", true},
		{"longhaul", "list", "discovery.k8s.io", "endpointslices", "db", false},
		{"longhaul", "get", "", "pods", "shop", false},
		{"longhaul", "get", "", "secrets", "shop", false},
		{"longhaul", "list", "", "secrets", "", false},
		{"longhaul", "create", "discovery.k8s.io", "endpointslices", "shop", false},
		// Every option on: Roles in the namespaces the config names, pods
		// with rbac.pods, and gateway mode's cluster-wide reads.
		{"edge-proxy-sa", "watch", "discovery.k8s.io", "endpointslices", "db", true},
		{"edge-proxy-sa", "watch", "discovery.k8s.io", "endpointslices", "web", true},
		{"edge-proxy-sa", "get", "", "pods", "web", true},
		{"edge-proxy-sa", "list", "", "pods", "web", false},
		{"edge-proxy-sa", "get", "", "pods", "kube-system", false},
		{"edge-proxy-sa", "list", "", "secrets", "", true},
		{"edge-proxy-sa", "create", "", "secrets", "shop", false},
		{"edge-proxy-sa", "update", "gateway.networking.k8s.io", "gateways/status", "web", true},
		{"edge-proxy-sa", "update", "gateway.networking.k8s.io", "gateways", "web", false},
		{"edge-proxy-sa", "create", "coordination.k8s.io", "leases", "shop", true},
		{"edge-proxy-sa", "create", "coordination.k8s.io", "leases", "web", false},
	} {
		if got := serviceAccountMay(t, cl, "shop", c.sa, c.verb, c.group, c.resource, c.ns); got != c.want {
			t.Errorf("%s may %s %s.%s in %q: %v, want %v", c.sa, c.verb, c.resource, c.group, c.ns, got, c.want)
		}
	}

	// deploy/gateway (the kustomize overlay) applies too, but for its CRDs,
	// installed above: the GatewayClass, RBAC and Deployment, dry-run, in
	// a namespace of their own (shop holds the chart's Deployment).
	if _, err := cl.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kustomize"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var overlay []*unstructured.Unstructured
	for _, o := range renderDir(t, "gateway") {
		switch o.GetKind() {
		case "CustomResourceDefinition", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding":
			continue
		}
		if o.GetNamespace() != "" {
			o.SetNamespace("kustomize")
		}
		overlay = append(overlay, o)
	}
	t.Logf("dry-run applied %d objects of deploy/gateway", len(serverSideApply(t, cl, overlay, true)))
}

// noSecrets fails t if a Role or ClusterRole of objs grants anything on
// Secrets.
func noSecrets(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() != "Role" && o.GetKind() != "ClusterRole" {
			continue
		}
		var r rbacv1.ClusterRole // a Role's fields are a subset
		find(t, []*unstructured.Unstructured{o}, o.GetKind(), o.GetName(), &r)
		for _, rule := range r.Rules {
			if slices.Contains(rule.Resources, "secrets") || slices.Contains(rule.Resources, "*") {
				t.Errorf("%s %s grants %v on Secrets outside gateway mode", o.GetKind(), o.GetName(), rule.Verbs)
			}
		}
	}
}

// roles returns the Roles of objs.
func roles(t *testing.T, objs []*unstructured.Unstructured) []rbacv1.Role {
	t.Helper()
	var rs []rbacv1.Role
	for _, o := range objs {
		if o.GetKind() == "Role" {
			var r rbacv1.Role
			find(t, []*unstructured.Unstructured{o}, "Role", o.GetName(), &r)
			rs = append(rs, r)
		}
	}
	return rs
}

// TestChartArithmeticMatchesGo: for random durations and memory limits,
// the chart's own parsing (Go templates have no duration or quantity type)
// agrees with Go's time.ParseDuration and Kubernetes' resource.Quantity:
// the grace period is ceil(delay + drain) + margin seconds, GOMEMLIMIT
// 90 % of the limit in whole MiB. A fixed seed keeps failures repeatable.
func TestChartArithmeticMatchesGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 6))
	units := []time.Duration{time.Millisecond, time.Second, time.Minute, time.Hour}
	suffixes := []string{"Ki", "Mi", "Gi", "k", "M", "G", ""}
	for range 12 {
		var delay, drain time.Duration
		for range 1 + rng.IntN(3) {
			delay += time.Duration(rng.IntN(90)) * units[rng.IntN(3)]
			drain += time.Duration(rng.IntN(90)) * units[rng.IntN(4)]
		}
		drain += time.Duration(rng.IntN(1000)) * time.Microsecond
		suffix := suffixes[rng.IntN(len(suffixes))]
		n := 1 + rng.Int64N(4096)
		if suffix == "" || suffix == "Ki" || suffix == "k" {
			n *= 1 << 20
		}
		memory := fmt.Sprintf("%d%s", n, suffix)
		values := fmt.Sprintf("shutdown: {delay: %q, marginSeconds: 10}\nresources: {limits: {memory: %q}}\n"+
			"config: {listeners: [{name: a, address: \"0.0.0.0:80\", endpoints: {static: [\"10.0.0.1:80\"]}, drain: {timeout: %q}}]}\n",
			delay, memory, drain)
		c := loadChart(t, chartRelease{values: values})
		if got := c.cfg.Listeners[0].Drain.Timeout; got != drain {
			t.Fatalf("longhaul read drain.timeout %v from %q", got, drain.String())
		}
		wantGrace := int64((delay+drain+time.Second-1)/time.Second) + 10
		if g := c.deploy.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g != wantGrace {
			t.Errorf("delay %v, drain %v: terminationGracePeriodSeconds %v, want %d", delay, drain, g, wantGrace)
		}
		q := resource.MustParse(memory)
		want := fmt.Sprintf("%dMiB", q.Value()*90/100/(1<<20))
		if got, _ := c.env("GOMEMLIMIT"); got != want {
			t.Errorf("limit %s: GOMEMLIMIT %q, want %q", memory, got, want)
		}
	}
}

// TestChartREADMEValues: the values the README's "Running in a cluster"
// shows render a configuration longhaul accepts, with the listener's port
// on the container and the release's namespace filled in.
func TestChartREADMEValues(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "## Running in a cluster")
	section, _, _ := strings.Cut(rest, "\n## ")
	_, rest, ok2 := strings.Cut(section, "```yaml\n")
	block, _, ok3 := strings.Cut(rest, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README.md's Running in a cluster section has no yaml block")
	}
	c := loadChart(t, chartRelease{values: block})
	if n := len(c.cfg.Listeners); n != 1 {
		t.Fatalf("%d listeners, want the README's one", n)
	}
	if k := c.cfg.Listeners[0].Endpoints.Kubernetes; k == nil || k.Namespace != "shop" {
		t.Errorf("endpoints %+v, want the release's namespace", k)
	}
	if p := c.container.Ports[0]; p.Name != "grpc" || p.ContainerPort != 8080 {
		t.Errorf("container port %+v", p)
	}
}
