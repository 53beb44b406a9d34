package monitoring

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/longhaul-proxy/longhaul/internal/testtools"

	"sigs.k8s.io/yaml"
)

// promtool returns the promtool that hack/tools.sh builds.
func promtool(t *testing.T) string { return testtools.Bin(t, "promtool") }

// runPromtool runs promtool with args in dir and fails the test, with
// promtool's output, when it fails.
func runPromtool(t *testing.T, dir string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %q: %v\n%s", args, err, out)
	}
	t.Logf("promtool %q:\n%s", args, out)
}

// TestPromtoolCheckRules: promtool accepts the rules file and finds
// nothing to lint in it.
func TestPromtoolCheckRules(t *testing.T) {
	runPromtool(t, ".", "check", "rules", "--lint=all", "--lint-fatal", rulesFile)
}

// TestPromtoolTestRules: promtool's unit tests of the alerts pass (each
// alert firing and not firing, TestRulesShape checks the coverage).
func TestPromtoolTestRules(t *testing.T) {
	runPromtool(t, ".", "test", "rules", rulesTestFile)
}

// grafanaVariables are what Grafana puts for the variables the dashboard's
// queries use, for checking them as PromQL: a duration for the intervals,
// a regular expression for the label variables.
var grafanaVariables = strings.NewReplacer(
	"$__rate_interval", "2m", "$__range", "1h",
	"$namespace", ".*", "$pod", ".*", "$listener", ".*")

// TestPromtoolDashboardQueries: every query of the dashboard's panels is
// valid PromQL, once Grafana's variables are put in: promtool checks them
// as the recording rules of a file made for the purpose.
func TestPromtoolDashboardQueries(t *testing.T) {
	promtool(t) // fail or skip before the work
	exprs := dashboardExprs(t)
	where := make([]string, 0, len(exprs))
	for w := range exprs {
		if strings.HasPrefix(w, "panel ") {
			where = append(where, w)
		}
	}
	slices.Sort(where)
	type rule struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	type group struct {
		Name  string `json:"name"`
		Rules []rule `json:"rules"`
	}
	g := group{Name: "dashboard"}
	for i, w := range where {
		expr := grafanaVariables.Replace(exprs[w])
		if strings.Contains(expr, "$") {
			t.Errorf("%s: a variable the test does not know: %s", w, exprs[w])
		}
		g.Rules = append(g.Rules, rule{Record: fmt.Sprintf("longhaul:dashboard_query_%d", i), Expr: expr})
	}
	b, err := yaml.Marshal(map[string][]group{"groups": {g}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dashboard-queries.yaml"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, dir, "check", "rules", "dashboard-queries.yaml")
	t.Logf("%d dashboard queries are valid PromQL", len(where))
}
