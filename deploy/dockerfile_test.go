package deploy

import (
	"bufio"
	"debug/elf"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/internal/app"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// TestStaticBinary builds ./cmd/longhaul as the Dockerfile does and checks
// that the result needs no dynamic loader nor shared library, since the
// image's base is empty.
func TestStaticBinary(t *testing.T) {
	out := filepath.Join(t.TempDir(), "longhaul")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "./cmd/longhaul")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build ./cmd/longhaul: %v\n%s", err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("binary has PT_INTERP: it needs a dynamic loader")
		}
		if p.Type == elf.PT_DYNAMIC {
			t.Error("binary has PT_DYNAMIC")
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	if len(libs) > 0 {
		t.Errorf("binary needs shared libraries (DT_NEEDED): %v", libs)
	}
}

// dockerfile is the part of the Dockerfile the checks read.
type dockerfile struct {
	froms     []string // image of each FROM, in order
	finalUser string   // last USER of the final stage
	expose    []int    // EXPOSE of the final stage
	runs      []string // RUN lines of all stages
}

func parseDockerfile(t testing.TB) dockerfile {
	t.Helper()
	f, err := os.Open("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var d dockerfile
	var lines []string
	var cont string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "#") || l == "" {
			continue
		}
		if s, ok := strings.CutSuffix(l, "\\"); ok {
			cont += s + " "
			continue
		}
		lines = append(lines, cont+l)
		cont = ""
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		word, rest, _ := strings.Cut(l, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(word) {
		case "FROM":
			d.froms = append(d.froms, strings.Fields(rest)[0])
			d.finalUser, d.expose = "", nil
		case "USER":
			d.finalUser = rest
		case "EXPOSE":
			for _, p := range strings.Fields(rest) {
				p, _, _ = strings.Cut(p, "/")
				n, err := strconv.Atoi(p)
				if err != nil {
					t.Fatalf("EXPOSE %q: %v", rest, err)
				}
				d.expose = append(d.expose, n)
			}
		case "RUN":
			d.runs = append(d.runs, rest)
		}
	}
	return d
}

func TestDockerfile(t *testing.T) {
	d := parseDockerfile(t)
	if len(d.froms) < 2 || !strings.HasPrefix(d.froms[0], "golang:1.26") {
		t.Errorf("stages %v: want a golang:1.26 builder and a final stage", d.froms)
	}
	for _, img := range d.froms {
		// An image name whose first part has a dot or a colon names a
		// registry host; the project names none.
		if first, _, ok := strings.Cut(img, "/"); ok && strings.ContainsAny(first, ".:") {
			t.Errorf("FROM %s names a registry host", img)
		}
	}
	user, _, _ := strings.Cut(d.finalUser, ":")
	if user == "" || user == "0" || user == "root" {
		t.Errorf("final stage runs as %q, want a non-root user", d.finalUser)
	}
	if _, err := strconv.Atoi(user); err != nil {
		t.Errorf("USER %q: want a numeric uid, so that runAsNonRoot can verify it", d.finalUser)
	}
	build := ""
	for _, r := range d.runs {
		if strings.Contains(r, "go build") {
			build = r
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/longhaul"} {
		if !strings.Contains(build, want) {
			t.Errorf("build step %q lacks %s", build, want)
		}
	}

	m := load(t)
	sc := m.deploy.Spec.Template.Spec.SecurityContext
	if sc == nil || sc.RunAsUser == nil || strconv.FormatInt(*sc.RunAsUser, 10) != user {
		t.Errorf("pod runAsUser %v, want the Dockerfile's USER %s", sc, user)
	}
	want := []int{m.adminPort}
	for _, p := range m.listenPort {
		want = append(want, p)
	}
	for _, p := range want {
		if !slices.Contains(d.expose, p) {
			t.Errorf("EXPOSE %v lacks port %d of the example config", d.expose, p)
		}
	}
	if m.debugPort != 0 && slices.Contains(d.expose, m.debugPort) {
		t.Errorf("EXPOSE %v names the debug port %d, which listens on loopback", d.expose, m.debugPort)
	}
}

// TestPortsAgree checks that probes, container ports and Service ports are
// those of the example configuration: the clients' Service reaches the
// listeners only, the metrics Service the admin port only, and nothing
// reaches the debug port, which listens on loopback.
func TestPortsAgree(t *testing.T) {
	m := load(t)
	if m.adminPort != 9901 {
		t.Errorf("admin port %d, want 9901", m.adminPort)
	}
	for _, pr := range []struct {
		name, path string
		p          *corev1.Probe
	}{
		{"liveness", "/healthz", m.container.LivenessProbe},
		{"readiness", "/readyz", m.container.ReadinessProbe},
	} {
		name, p := pr.name, pr.p
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe: want an HTTP GET", name)
			continue
		}
		if p.HTTPGet.Path != pr.path {
			t.Errorf("%s probe path %q, want %q", name, p.HTTPGet.Path, pr.path)
		}
		if port, err := m.containerPort(p.HTTPGet.Port); err != nil || port != m.adminPort {
			t.Errorf("%s probe port %v = %d (%v), want the admin port %d", name, p.HTTPGet.Port.String(), port, err, m.adminPort)
		}
	}

	svcPorts := m.servicePorts(t, m.svc)
	if svcPorts[m.adminPort] {
		t.Errorf("the clients' Service %s reaches the admin port %d", m.svc.Name, m.adminPort)
	}
	for name, p := range m.listenPort {
		if !svcPorts[p] {
			t.Errorf("Service %s does not reach listener %s's port %d", m.svc.Name, name, p)
		}
	}
	if got := m.servicePorts(t, m.metricsSvc); len(got) != 1 || !got[m.adminPort] {
		t.Errorf("Service %s reaches ports %v, want the admin port %d only", m.metricsSvc.Name, got, m.adminPort)
	}
	if m.metricsSvc.Spec.ClusterIP != corev1.ClusterIPNone || !m.metricsSvc.Spec.PublishNotReadyAddresses {
		t.Errorf("Service %s: clusterIP %q, publishNotReadyAddresses %v; want headless, listing draining pods too",
			m.metricsSvc.Name, m.metricsSvc.Spec.ClusterIP, m.metricsSvc.Spec.PublishNotReadyAddresses)
	}
	for _, svc := range []corev1.Service{m.svc, m.metricsSvc} {
		if sel := svc.Spec.Selector; !mapsSubset(sel, m.deploy.Spec.Template.Labels) {
			t.Errorf("Service %s selector %v does not match pod labels %v", svc.Name, sel, m.deploy.Spec.Template.Labels)
		}
	}

	// The debug views: configured, on loopback, without a token, and on no
	// container port.
	if m.debugPort == 0 {
		t.Error("the example config has no admin.debugAddress")
	}
	if host, _, _ := net.SplitHostPort(m.cfg.Admin.DebugAddress); host != "127.0.0.1" {
		t.Errorf("admin.debugAddress %q: want loopback", m.cfg.Admin.DebugAddress)
	}
	for _, cp := range m.container.Ports {
		if int(cp.ContainerPort) == m.debugPort {
			t.Errorf("container port %s is the debug port %d", cp.Name, m.debugPort)
		}
	}
}

// servicePorts returns the container ports a Service's ports lead to.
func (m *manifests) servicePorts(t *testing.T, svc corev1.Service) map[int]bool {
	t.Helper()
	out := map[int]bool{}
	for _, sp := range svc.Spec.Ports {
		port, err := m.containerPort(sp.TargetPort)
		if err != nil {
			t.Errorf("Service %s port %s: %v", svc.Name, sp.Name, err)
		}
		out[port] = true
	}
	return out
}

// TestNetworkPolicy checks that the policy selects longhaul's pods and
// admits every listener port from anywhere, the admin port from the
// monitoring namespace only, and nothing else.
func TestNetworkPolicy(t *testing.T) {
	m := load(t)
	np := m.netpol.Spec
	if !mapsSubset(np.PodSelector.MatchLabels, m.deploy.Spec.Template.Labels) || len(np.PodSelector.MatchExpressions) > 0 {
		t.Errorf("podSelector %+v does not select the pods %v", np.PodSelector, m.deploy.Spec.Template.Labels)
	}
	if !slices.Equal(np.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
		t.Errorf("policyTypes %v, want Ingress", np.PolicyTypes)
	}
	fromAnywhere, fromMonitoring := map[int]bool{}, map[int]bool{}
	for i, rule := range np.Ingress {
		if len(rule.Ports) == 0 {
			t.Errorf("ingress[%d] admits every port", i)
		}
		var into map[int]bool
		switch {
		case len(rule.From) == 0:
			into = fromAnywhere
		case len(rule.From) == 1 && rule.From[0].PodSelector == nil && rule.From[0].IPBlock == nil &&
			rule.From[0].NamespaceSelector != nil && len(rule.From[0].NamespaceSelector.MatchExpressions) == 0 &&
			maps.Equal(rule.From[0].NamespaceSelector.MatchLabels, map[string]string{"kubernetes.io/metadata.name": "monitoring"}):
			into = fromMonitoring
		default:
			t.Errorf("ingress[%d] from %+v: want anywhere or the monitoring namespace", i, rule.From)
			continue
		}
		for _, p := range rule.Ports {
			if p.Port == nil || p.EndPort != nil || p.Protocol == nil || *p.Protocol != corev1.ProtocolTCP {
				t.Errorf("ingress[%d] port %+v: want one TCP port", i, p)
				continue
			}
			port, err := m.containerPort(*p.Port)
			if err != nil {
				t.Errorf("ingress[%d]: %v", i, err)
			}
			into[port] = true
		}
	}
	want := map[int]bool{}
	for _, p := range m.listenPort {
		want[p] = true
	}
	if !maps.Equal(fromAnywhere, want) {
		t.Errorf("ports admitted from anywhere %v, want the listeners' %v", fromAnywhere, want)
	}
	if !maps.Equal(fromMonitoring, map[int]bool{m.adminPort: true}) {
		t.Errorf("ports admitted from the monitoring namespace %v, want the admin port %d only", fromMonitoring, m.adminPort)
	}
}

// TestPodMonitor checks the optional PodMonitor (not in the kustomization:
// its CRD may be absent) against the pods: their labels and admin port.
func TestPodMonitor(t *testing.T) {
	m := load(t)
	b, err := os.ReadFile("podmonitor.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var pm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name, Namespace string
			Labels          map[string]string
		} `json:"metadata"`
		Spec struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			PodMetricsEndpoints []struct {
				Port        string `json:"port"`
				Path        string `json:"path"`
				Interval    string `json:"interval"`
				Relabelings []struct {
					Action string `json:"action"`
					Regex  string `json:"regex"`
				} `json:"relabelings"`
			} `json:"podMetricsEndpoints"`
		} `json:"spec"`
	}
	if err := yaml.UnmarshalStrict(b, &pm); err != nil {
		t.Fatalf("podmonitor.yaml: %v", err)
	}
	if pm.APIVersion != "monitoring.coreos.com/v1" || pm.Kind != "PodMonitor" || pm.Metadata.Namespace != m.deploy.Namespace {
		t.Errorf("podmonitor.yaml: %s %s in %q", pm.APIVersion, pm.Kind, pm.Metadata.Namespace)
	}
	if !mapsSubset(pm.Spec.Selector.MatchLabels, m.deploy.Spec.Template.Labels) {
		t.Errorf("PodMonitor selector %v does not match pod labels %v", pm.Spec.Selector.MatchLabels, m.deploy.Spec.Template.Labels)
	}
	if len(pm.Spec.PodMetricsEndpoints) != 1 {
		t.Fatalf("%d podMetricsEndpoints, want 1", len(pm.Spec.PodMetricsEndpoints))
	}
	ep := pm.Spec.PodMetricsEndpoints[0]
	if port, err := m.containerPort(intstr.FromString(ep.Port)); err != nil || port != m.adminPort || ep.Path != "/metrics" {
		t.Errorf("PodMonitor scrapes port %q (%d, %v) path %q, want the admin port %d, /metrics", ep.Port, port, err, ep.Path, m.adminPort)
	}
	if _, err := time.ParseDuration(ep.Interval); err != nil {
		t.Errorf("PodMonitor interval %q: %v", ep.Interval, err)
	}
	// The Operator's "endpoint" target label would rename longhaul's own
	// endpoint label (to exported_endpoint), which the dashboard reads.
	if len(ep.Relabelings) != 1 || ep.Relabelings[0].Action != "labeldrop" || ep.Relabelings[0].Regex != "endpoint" {
		t.Errorf("PodMonitor relabelings %+v, want the target label endpoint dropped", ep.Relabelings)
	}
}

func mapsSubset(sub, super map[string]string) bool {
	if len(sub) == 0 {
		return false
	}
	for k, v := range sub {
		if super[k] != v {
			return false
		}
	}
	return true
}

// TestPodHardeningAndShutdown checks the container's restrictions and that
// the grace period covers longhaul's shutdown delay plus the longest drain.
func TestPodHardeningAndShutdown(t *testing.T) {
	m := load(t)
	spec := m.deploy.Spec.Template.Spec
	c := m.container
	if m.deploy.Spec.Replicas == nil || *m.deploy.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", m.deploy.Spec.Replicas)
	}
	if c.Image != "longhaul:latest" {
		t.Errorf("image %q", c.Image)
	}
	if !slices.Equal(c.Args, []string{"run", "--config", "/etc/longhaul/config.yaml"}) {
		t.Errorf("args %q", c.Args)
	}
	mounted := false
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == "/etc/longhaul" {
			mounted = true
		}
	}
	if !mounted {
		t.Error("config not mounted at /etc/longhaul")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}
	// The Go runtime's soft limit, if set, leaves the collector room below
	// the container's hard one.
	for _, e := range c.Env {
		if e.Name != "GOMEMLIMIT" {
			continue
		}
		soft, err := resource.ParseQuantity(strings.TrimSuffix(e.Value, "B"))
		hard := c.Resources.Limits.Memory()
		if err != nil || e.ValueFrom != nil || soft.Cmp(*hard) >= 0 || soft.Value() < hard.Value()*8/10 {
			t.Errorf("GOMEMLIMIT %q (%v): want a fixed value between 80 and 100 %% of limits.memory %v", e.Value, err, hard)
		}
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("no container securityContext")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("allowPrivilegeEscalation not false")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("readOnlyRootFilesystem not true")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}):
		t.Errorf("capabilities %+v, want drop ALL", sc.Capabilities)
	}
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != "RuntimeDefault" {
		t.Errorf("pod securityContext %+v: want runAsNonRoot and seccomp RuntimeDefault", psc)
	}

	// Shutdown: longhaul's own delay (no preStop hook, which would add to
	// it), then the drain, within the grace period.
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		t.Errorf("preStop %+v: longhaul waits by itself after SIGTERM (app.DefaultShutdownDelay)", c.Lifecycle.PreStop)
	}
	delay := app.DefaultShutdownDelay
	var drain time.Duration
	for _, l := range m.cfg.Listeners {
		drain = max(drain, l.Drain.Timeout)
	}
	grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	if grace < delay+drain+5*time.Second {
		t.Errorf("terminationGracePeriodSeconds %v < shutdown delay %v + drain %v + 5 s margin", grace, delay, drain)
	}
	t.Logf("shutdown: delay %v + drain %v within grace %v", delay, drain, grace)
}
