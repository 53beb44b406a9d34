package monitoring

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "regenerate dashboard-configmap.yaml and prometheusrule.yaml from the files they carry")

const (
	dashboardFile  = "longhaul-dashboard.json"
	dashboardCM    = "dashboard-configmap.yaml"
	rulesFile      = "longhaul-alerts.yaml"
	prometheusRule = "prometheusrule.yaml"
	rulesTestFile  = "alerts_test.yaml"
	// dashboardKey is the dashboard's key in the ConfigMap: Grafana's
	// sidecar writes each key as a file and loads the .json ones.
	dashboardKey = "longhaul-dashboard.json"
)

// dashboardConfigMap returns dashboard-configmap.yaml for the dashboard
// JSON: the JSON as the value of one key, a YAML literal block, byte for
// byte. It needs the JSON to end in a newline and have no line with
// trailing spaces or tabs (checked by TestDashboard).
func dashboardConfigMap(dashboard []byte) []byte {
	var b bytes.Buffer
	b.WriteString(`# Generated from longhaul-dashboard.json: edit that file, then run
#   go test ./deploy/monitoring -run TestManifestsGenerated -update
# The grafana_dashboard label is the one Grafana's dashboard sidecar looks
# for (the Grafana Helm chart's sidecar.dashboards.label): apply this
# ConfigMap in a namespace the sidecar watches.
apiVersion: v1
kind: ConfigMap
metadata:
  name: longhaul-dashboard
  labels:
    app.kubernetes.io/name: longhaul
    app.kubernetes.io/component: monitoring
    grafana_dashboard: "1"
data:
  ` + dashboardKey + `: |
`)
	indent(&b, dashboard, "    ")
	return b.Bytes()
}

// prometheusRuleManifest returns prometheusrule.yaml for the rules file:
// the file's groups, less its opening comment, as the PrometheusRule's
// spec, indented under it.
func prometheusRuleManifest(rules []byte) []byte {
	var b bytes.Buffer
	b.WriteString(`# Generated from longhaul-alerts.yaml: edit that file, then run
#   go test ./deploy/monitoring -run TestManifestsGenerated -update
# A Prometheus Operator's Prometheus loads it when its ruleSelector and
# ruleNamespaceSelector select it (kube-prometheus-stack selects the label
# release: <its release name> by default: add it with kubectl label).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: longhaul
  labels:
    app.kubernetes.io/name: longhaul
    app.kubernetes.io/component: monitoring
spec:
`)
	body := rules
	for bytes.HasPrefix(body, []byte("#")) {
		_, body, _ = bytes.Cut(body, []byte("\n"))
	}
	indent(&b, body, "  ")
	return b.Bytes()
}

// indent writes each line of text to b with prefix before it, except empty
// lines, which stay empty.
func indent(b *bytes.Buffer, text []byte, prefix string) {
	for line := range bytes.Lines(text) {
		if len(bytes.TrimSpace(line)) > 0 {
			b.WriteString(prefix)
		}
		b.Write(line)
	}
}

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestManifestsGenerated: the ConfigMap and the PrometheusRule are what
// their generators make of the dashboard and the rules file (with -update,
// they are written so), and they carry them unchanged: the ConfigMap's data
// is the JSON file byte for byte, the PrometheusRule's spec is the rules
// file's content.
func TestManifestsGenerated(t *testing.T) {
	dash, rules := read(t, dashboardFile), read(t, rulesFile)
	for _, m := range []struct {
		file string
		want []byte
	}{{dashboardCM, dashboardConfigMap(dash)}, {prometheusRule, prometheusRuleManifest(rules)}} {
		if *update {
			if err := os.WriteFile(m.file, m.want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if got := read(t, m.file); !bytes.Equal(got, m.want) {
			t.Errorf("%s is not what its source makes of it: run go test ./deploy/monitoring -run TestManifestsGenerated -update", m.file)
		}
	}

	var cm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name   string            `json:"name"`
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Data map[string]string `json:"data"`
	}
	if err := yaml.UnmarshalStrict(read(t, dashboardCM), &cm); err != nil {
		t.Fatalf("%s: %v", dashboardCM, err)
	}
	if cm.APIVersion != "v1" || cm.Kind != "ConfigMap" || cm.Metadata.Labels["grafana_dashboard"] != "1" {
		t.Errorf("%s: %s %s labels %v, want a v1 ConfigMap labelled grafana_dashboard: \"1\"", dashboardCM, cm.APIVersion, cm.Kind, cm.Metadata.Labels)
	}
	if len(cm.Data) != 1 || cm.Data[dashboardKey] != string(dash) {
		t.Errorf("%s: its data (keys %v) is not %s byte for byte", dashboardCM, keys(cm.Data), dashboardFile)
	}

	var pr struct {
		APIVersion string         `json:"apiVersion"`
		Kind       string         `json:"kind"`
		Metadata   map[string]any `json:"metadata"`
		Spec       map[string]any `json:"spec"`
	}
	if err := yaml.UnmarshalStrict(read(t, prometheusRule), &pr); err != nil {
		t.Fatalf("%s: %v", prometheusRule, err)
	}
	var plain map[string]any
	if err := yaml.Unmarshal(rules, &plain); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" {
		t.Errorf("%s: %s %s, want a monitoring.coreos.com/v1 PrometheusRule", prometheusRule, pr.APIVersion, pr.Kind)
	}
	if !reflect.DeepEqual(pr.Spec, plain) {
		t.Errorf("%s: its spec is not the content of %s", prometheusRule, rulesFile)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// dashboard is the part of Grafana's dashboard JSON model the tests read.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource *datasource     `json:"datasource"`
			Definition string          `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource *datasource              `json:"datasource"`
	GridPos    struct{ H, W, X, Y int } `json:"gridPos"`
	Targets    []struct {
		Expr       string      `json:"expr"`
		RefID      string      `json:"refId"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// dashboardExprs returns every PromQL expression of the dashboard: each
// target's and each query variable's, keyed by where it is.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	d := loadDashboard(t)
	out := map[string]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				out["panel "+p.Title+" "+tg.RefID] = tg.Expr
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			out["variable "+v.Name] = v.Definition
		}
	}
	return out
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(read(t, dashboardFile)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// TestDashboard: the dashboard is valid JSON of a schema Grafana 10 and 11
// load, with a Prometheus data source variable and the namespace, pod and
// listener variables; every panel but a row queries that data source with
// at least one expression, and panels sit in the 24-column grid with
// distinct ids.
func TestDashboard(t *testing.T) {
	raw := read(t, dashboardFile)
	if !json.Valid(raw) {
		t.Fatalf("%s is not valid JSON", dashboardFile)
	}
	if !bytes.HasSuffix(raw, []byte("\n")) {
		t.Errorf("%s does not end in a newline", dashboardFile)
	}
	for i, line := range strings.Split(string(raw), "\n") {
		if strings.TrimRight(line, " \t") != line {
			t.Errorf("%s:%d ends in white space (a YAML literal block would not keep it)", dashboardFile, i+1)
		}
	}
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 {
		t.Errorf("uid %q, title %q, schemaVersion %d: want both set and a schema of Grafana 9.3 or later", d.UID, d.Title, d.SchemaVersion)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		switch v.Type {
		case "datasource":
			if string(v.Query) != `"prometheus"` {
				t.Errorf("variable %s: query %s, want \"prometheus\"", v.Name, v.Query)
			}
		case "query":
			if v.Datasource == nil || v.Datasource.UID != "${datasource}" || !strings.HasPrefix(v.Definition, "label_values(") {
				t.Errorf("variable %s: datasource %+v, definition %q: want ${datasource} and label_values", v.Name, v.Datasource, v.Definition)
			}
		}
	}
	for name, typ := range map[string]string{"datasource": "datasource", "namespace": "query", "pod": "query", "listener": "query"} {
		if vars[name] != typ {
			t.Errorf("variable %s is %q, want a %s variable", name, vars[name], typ)
		}
	}
	ids := map[int]string{}
	n := 0
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if prev, dup := ids[p.ID]; dup || p.ID == 0 {
				t.Errorf("panel %q: id %d (also %q)", p.Title, p.ID, prev)
			}
			ids[p.ID] = p.Title
			if g := p.GridPos; g.W < 1 || g.H < 1 || g.X < 0 || g.X+g.W > 24 {
				t.Errorf("panel %q: gridPos %+v is outside the 24-column grid", p.Title, g)
			}
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			n++
			if p.Title == "" || p.Datasource == nil || p.Datasource.UID != "${datasource}" || p.Datasource.Type != "prometheus" {
				t.Errorf("panel %q: datasource %+v, want the prometheus ${datasource}", p.Title, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no target", p.Title)
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" || tg.RefID == "" || len(metricNames(tg.Expr)) == 0 {
					t.Errorf("panel %q: target %q has no expression of a longhaul metric", p.Title, tg.RefID)
				}
				if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
					t.Errorf("panel %q: target %s has datasource %+v", p.Title, tg.RefID, tg.Datasource)
				}
			}
		}
	}
	walk(d.Panels)
	t.Logf("%d panels", n)
}

// rulesFileModel is the part of a Prometheus rules file the tests read.
type rulesFileModel struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Record      string            `json:"record"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

func loadRules(t *testing.T) rulesFileModel {
	t.Helper()
	var r rulesFileModel
	if err := yaml.UnmarshalStrict(read(t, rulesFile), &r); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	return r
}

// TestRulesShape: each alert has a for, a severity label, a summary and a
// description, and promtool's tests in alerts_test.yaml cover each alert
// both firing and not firing.
func TestRulesShape(t *testing.T) {
	var tests struct {
		RuleFiles []string `json:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(read(t, rulesTestFile), &tests); err != nil {
		t.Fatalf("%s: %v", rulesTestFile, err)
	}
	if !reflect.DeepEqual(tests.RuleFiles, []string{rulesFile}) {
		t.Errorf("%s tests rule files %q, want [%s]", rulesTestFile, tests.RuleFiles, rulesFile)
	}
	firing, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				firing[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	n := 0
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			if r.For == "" {
				t.Errorf("alert %s has no for", r.Alert)
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("alert %s: severity %q, want warning or critical", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s lacks a summary or a description", r.Alert)
			}
			if !firing[r.Alert] || !quiet[r.Alert] {
				t.Errorf("alert %s: %s tests it firing %v, not firing %v; want both", r.Alert, rulesTestFile, firing[r.Alert], quiet[r.Alert])
			}
		}
	}
	if n == 0 {
		t.Fatalf("%s has no alert", rulesFile)
	}
}
