package layering

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const module = "github.com/longhaul-proxy/longhaul"

// rules are the module's layers: the data path (balancer, proxy) runs
// without a Kubernetes client, drain moves sessions through interfaces of
// its own rather than the proxy's types, and discovery only publishes
// snapshots, knowing nothing of what consumes them; the Gateway API
// controller only computes listeners and status.
var rules = []Rule{
	{
		Name:   "balancer and proxy must not reach a Kubernetes client",
		From:   []string{module + "/balancer/...", module + "/proxy/..."},
		Forbid: []string{"k8s.io/client-go/...", module + "/discovery/kube/..."},
	},
	{
		Name:   "drain must not reach the proxy",
		From:   []string{module + "/drain/..."},
		Forbid: []string{module + "/proxy/..."},
	},
	{
		Name: "the product must not reach test support",
		From: []string{module + "/cmd/...", module + "/admin/...", module + "/balancer/...", module + "/config/...",
			module + "/discovery/...", module + "/drain/...", module + "/proxy/..."},
		Forbid: []string{module + "/internal/podrunner/...", module + "/internal/kubetest/...", module + "/internal/netns/..."},
	},
	{
		Name:   "discovery must not reach its consumers",
		From:   []string{module + "/discovery/..."},
		Forbid: []string{module + "/proxy/...", module + "/drain/...", module + "/balancer/..."},
	},
	{
		// Its output is data (listeners and status): it runs beside the
		// data path, never inside it.
		Name: "the Gateway API controller must not reach the data path or the app",
		From: []string{module + "/gateway/..."},
		Forbid: []string{module + "/internal/app/...", module + "/cmd/...", module + "/admin/...", module + "/drain/...",
			module + "/proxy/listen/...", module + "/proxy/upstream/...", module + "/proxy/tcpproxy/...",
			module + "/proxy/httpproxy/...", module + "/proxy/h2relay/...", module + "/proxy/metrics/..."},
	},
}

// goBinary returns the go command: on PATH (go test puts its GOROOT/bin
// first) or under $GOROOT.
func goBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("no go binary on PATH or under $GOROOT: the import graph cannot be listed")
	return ""
}

// TestLayering lists the module's import graph (test files excluded) and
// checks every rule against it.
func TestLayering(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	g, err := Load(ctx, goBinary(t), ".", module+"/...")
	if err != nil {
		t.Fatal(err)
	}
	// The graph must hold third-party packages and chains through them,
	// or every rule would pass vacuously.
	control := []Rule{{Name: "control", From: []string{module + "/discovery/kube"}, Forbid: []string{"k8s.io/client-go/..."}}}
	if v, err := Check(g, control); err != nil || len(v) == 0 {
		t.Fatalf("discovery/kube reaches no k8s.io/client-go package in the listed graph (%d packages, error %v): the listing is wrong", len(g), err)
	}
	violations, err := Check(g, rules)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range violations {
		t.Error(v)
	}
	t.Logf("%d packages listed, %d rules hold", len(g), len(rules))
}

// TestCheckReportsChain: on a small graph, Check reports the shortest chain
// to each forbidden package first reached, and nothing for rules that hold.
func TestCheckReportsChain(t *testing.T) {
	g := Graph{
		"m/proxy":       {"m/proxy/http", "m/balancer"},
		"m/proxy/http":  {"m/util", "m/discovery"},
		"m/util":        {"k8s.io/client-go/rest", "m/proxy"}, // a cycle back
		"m/balancer":    {"m/discovery"},
		"m/discovery":   {"fmt"},
		"m/kube":        {"k8s.io/client-go/kubernetes"},
		"m/proxyfoo":    {"m/kube"}, // not under m/proxy
		"m/drain":       {"m/discovery"},
		"m/deep":        {"m/kube", "m/proxy/http"},
		"m/proxy/other": {"m/kube"},
	}
	rules := []Rule{
		{Name: "no client", From: []string{"m/proxy/..."}, Forbid: []string{"k8s.io/client-go/...", "m/kube"}},
		{Name: "drain alone", From: []string{"m/drain"}, Forbid: []string{"m/proxy/..."}},
		{Name: "deep", From: []string{"m/deep"}, Forbid: []string{"m/kube", "k8s.io/client-go/..."}},
	}
	got, err := Check(g, rules)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, v := range got {
		lines = append(lines, v.String())
	}
	want := []string{
		"no client: m/proxy -> m/proxy/http -> m/util -> k8s.io/client-go/rest",
		"no client: m/proxy/http -> m/util -> k8s.io/client-go/rest",
		"no client: m/proxy/other -> m/kube",
		// m/kube is forbidden: the walk stops there, so its client-go
		// import is not reported again.
		"deep: m/deep -> m/kube",
		"deep: m/deep -> m/proxy/http -> m/util -> k8s.io/client-go/rest",
	}
	if !slices.Equal(lines, want) {
		t.Errorf("violations:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

// TestCheckRuleMatchingNothing: a rule whose From matches no package is an
// error, not a pass.
func TestCheckRuleMatchingNothing(t *testing.T) {
	_, err := Check(Graph{"m/a": nil}, []Rule{{Name: "typo", From: []string{"m/b/..."}, Forbid: []string{"m/a"}}})
	if err == nil || !strings.Contains(err.Error(), `rule "typo": no package matches m/b/...`) {
		t.Fatalf("got %v, want an error naming the rule and its pattern", err)
	}
}

func TestMatch(t *testing.T) {
	for _, tt := range []struct {
		pattern, path string
		want          bool
	}{
		{"m/proxy/...", "m/proxy", true},
		{"m/proxy/...", "m/proxy/h2relay", true},
		{"m/proxy/...", "m/proxyfoo", false},
		{"m/proxy", "m/proxy", true},
		{"m/proxy", "m/proxy/h2relay", false},
		{"k8s.io/client-go/...", "k8s.io/client-go/kubernetes/typed/core/v1", true},
		{"k8s.io/client-go/...", "k8s.io/api/core/v1", false},
	} {
		if got := Match(tt.pattern, tt.path); got != tt.want {
			t.Errorf("Match(%q, %q): %v, want %v", tt.pattern, tt.path, got, tt.want)
		}
	}
}

func TestParseList(t *testing.T) {
	g, err := ParseList("fmt\terrors io\nm/a\tfmt m/b\nm/b\t\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(g) != 3 || !slices.Equal(g["m/a"], []string{"fmt", "m/b"}) || len(g["m/b"]) != 0 {
		t.Errorf("got %v", g)
	}
	if _, err := ParseList("no tab here\n"); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("a line without a tab: got %v, want an error naming line 1", err)
	}
}
