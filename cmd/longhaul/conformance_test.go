package main

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"
	crzap "sigs.k8s.io/controller-runtime/pkg/log/zap"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/gateway-api/apis/v1alpha2"
	"sigs.k8s.io/gateway-api/apis/v1alpha3"
	"sigs.k8s.io/gateway-api/conformance"
	confv1 "sigs.k8s.io/gateway-api/conformance/apis/v1"
	"sigs.k8s.io/gateway-api/conformance/tests"
	conformanceconfig "sigs.k8s.io/gateway-api/conformance/utils/config"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	"sigs.k8s.io/gateway-api/pkg/features"
	"sigs.k8s.io/yaml"

	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/internal/kubetest"
	"github.com/longhaul-proxy/longhaul/internal/netns"
	"github.com/longhaul-proxy/longhaul/internal/podrunner"
	"github.com/longhaul-proxy/longhaul/internal/testnet"
)

// supportedFeatures are the features longhaul claims: the profiles' core
// and the extended ones it implements.
var supportedFeatures = []features.FeatureName{
	features.SupportGateway, features.SupportHTTPRoute, features.SupportGRPCRoute, features.SupportReferenceGrant,
	features.SupportGatewayPort8080,
	features.SupportHTTPRouteQueryParamMatching, features.SupportHTTPRouteMethodMatching,
	features.SupportHTTPRouteResponseHeaderModification,
	features.SupportHTTPRoutePortRedirect, features.SupportHTTPRouteSchemeRedirect, features.SupportHTTPRoutePathRedirect,
	features.SupportHTTPRoute303RedirectStatusCode, features.SupportHTTPRoute307RedirectStatusCode, features.SupportHTTPRoute308RedirectStatusCode,
	features.SupportHTTPRouteHostRewrite, features.SupportHTTPRoutePathRewrite,
	features.SupportHTTPRouteParentRefPort, features.SupportHTTPRouteDestinationPortMatching,
	features.SupportHTTPRouteNamedRouteRule, features.SupportGRPCRouteNamedRouteRule,
	features.SupportHTTPRouteBackendProtocolWebSocket, features.SupportHTTPRouteBackendProtocolH2C,
	features.SupportTLSRoute, features.SupportTCPRoute,
	features.SupportGatewayHTTPListenerIsolation,
}

// reportPath is the conformance report kept in the repository, which
// README.md summarises.
const reportPath = "../../gateway/conformance-report.yaml"

// TestConformance runs the Gateway API conformance suite (v1.6.3: the
// GATEWAY-HTTP, GATEWAY-GRPC, GATEWAY-TLS and GATEWAY-TCP profiles with
// the features above) against `longhaul run --gateway-class "*"` over the
// real API server, controller manager and podrunner, each Gateway on an
// address of its own in 127.64.0.0/16, and checks the report against the
// one kept in the repository: a test that passed there and fails here
// fails this test, and so does any other difference (a test newly
// passing, a feature claimed or dropped), until the kept report is
// refreshed with LONGHAUL_CONFORMANCE_REPORT set to reportPath (`make
// conformance`). LONGHAUL_CONFORMANCE_RUN runs one test (its ShortName)
// and skips the comparison.
func TestConformance(t *testing.T) {
	if err := netns.Check(); err != nil {
		t.Skipf("podrunner makes network namespaces: %v", err)
	}
	crlog.SetLogger(crzap.New(crzap.WriteTo(os.Stderr)))
	ctx := context.Background()
	cl := kubetest.Start(t)
	cl.StartControllerManager(t)
	cl.InstallCRDs(t, "../../deploy/gateway/crds")
	r, err := podrunner.Start(ctx, cl.Client, podrunner.Options{MaxGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	gw, err := gwclient.NewForConfig(cl.Config)
	if err != nil {
		t.Fatal(err)
	}
	const class = "longhaul"
	must(t, create(ctx, gw.GatewayV1().GatewayClasses(), &gwv1.GatewayClass{
		ObjectMeta: metav1.ObjectMeta{Name: class},
		Spec:       gwv1.GatewayClassSpec{ControllerName: config.GatewayController},
	}))

	cfgPath := filepath.Join(t.TempDir(), "longhaul.yaml")
	must(t, os.WriteFile(cfgPath, fmt.Appendf(nil, "admin: {address: %q}\nlog: {level: warn}\ngateway: {address: 127.64.0.0/16}\n", testnet.FreeAddr(t)), 0o600))
	var logs syncBuffer
	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	// Every class of longhaul's controllerName: the suite makes its own.
	args := []string{"--config", cfgPath, "--gateway-class", config.AnyGatewayClass,
		"--kubeconfig", cl.WriteKubeconfig(t, "longhaul.kubeconfig"), "--shutdown-delay", "0"}
	go func() { runDone <- runCmd(runCtx, args, &logs) }()
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() {
			stopRun()
			<-runDone
			if t.Failed() {
				t.Logf("longhaul's log (tail):\n%.20000s", logs.String())
			}
		})
	})

	c, err := client.New(cl.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, install := range []func(*runtime.Scheme) error{v1alpha3.Install, v1alpha2.Install, gwv1.Install, apiextensionsv1.AddToScheme} {
		must(t, install(c.Scheme()))
	}
	opts := suite.ConformanceOptions{
		ConfigurableOptions: suite.ConfigurableOptions{
			GatewayClassName:     class,
			CleanupBaseResources: true,
			CleanupTestResources: true,
			TimeoutConfig:        conformanceconfig.DefaultTimeoutConfig(),
			SupportedFeatures:    supportedFeatures,
			ConformanceProfiles: []suite.ConformanceProfileName{suite.GatewayHTTPConformanceProfileName, suite.GatewayGRPCConformanceProfileName,
				suite.GatewayTLSConformanceProfileName, suite.GatewayTCPConformanceProfileName},
			RunTest: os.Getenv("LONGHAUL_CONFORMANCE_RUN"),
			Mode:    "default",
			Implementation: confv1.Implementation{Organization: "longhaul-proxy", Project: "longhaul",
				URL: "https://github.com/longhaul-proxy/longhaul", Version: "main", Contact: []string{"@longhaul-proxy"}},
		},
		Client: c, Clientset: cl.Client, RestConfig: cl.Config, ManifestFS: []fs.FS{&conformance.Manifests},
	}
	cs, err := suite.NewConformanceTestSuite(opts)
	must(t, err)
	start := time.Now()
	// The suite's report is ready once its run's cleanup has run: this
	// cleanup, registered first, runs after it.
	t.Cleanup(func() { checkReport(t, cs, time.Since(start), opts.RunTest != "") })
	cs.Setup(t, tests.ConformanceTests)
	if err := cs.Run(t, tests.ConformanceTests); err != nil {
		t.Fatalf("conformance suite: %v", err)
	}
}

// checkReport writes the suite's report where LONGHAUL_CONFORMANCE_REPORT
// says and, unless one test was run, compares it with the kept one.
func checkReport(t *testing.T, cs *suite.ConformanceTestSuite, took time.Duration, one bool) {
	report, err := cs.Report()
	if err != nil {
		t.Errorf("conformance report: %v", err)
		return
	}
	got := reportYAML(t, report)
	t.Logf("conformance suite ran in %v:\n%s", took.Round(time.Second), got)
	if out := os.Getenv("LONGHAUL_CONFORMANCE_REPORT"); out != "" {
		if err := os.WriteFile(out, got, 0o644); err != nil {
			t.Error(err)
		}
	}
	if one {
		return
	}
	kept, err := os.ReadFile(reportPath)
	if err != nil {
		t.Errorf("the kept conformance report: %v", err)
		return
	}
	var want confv1.ConformanceReport
	if err := yaml.Unmarshal(kept, &want); err != nil {
		t.Errorf("the kept conformance report %s: %v", reportPath, err)
		return
	}
	if w := reportYAML(t, &want); !bytes.Equal(got, w) {
		t.Errorf("the conformance report differs from %s (refresh it with make conformance once the change is meant):\n%s",
			reportPath, lineDiff(string(w), string(got)))
	}
}

// reportYAML is a report without its date and with its profiles in name
// order (the suite's order varies), for comparing runs.
func reportYAML(t *testing.T, r *confv1.ConformanceReport) []byte {
	t.Helper()
	c := *r
	c.Date = ""
	c.ProfileReports = slices.Clone(c.ProfileReports)
	slices.SortFunc(c.ProfileReports, func(a, b confv1.ProfileReport) int { return strings.Compare(a.Name, b.Name) })
	b, err := yaml.Marshal(c)
	if err != nil {
		t.Errorf("conformance report: %v", err)
	}
	return b
}

// lineDiff lists the lines of want missing from got (-) and the lines of
// got not in want (+).
func lineDiff(want, got string) string {
	count := func(s string) map[string]int {
		m := map[string]int{}
		for _, l := range strings.Split(s, "\n") {
			m[l]++
		}
		return m
	}
	w, g := count(want), count(got)
	var out []string
	for _, l := range strings.Split(want, "\n") {
		if g[l] < w[l] {
			out = append(out, "- "+l)
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if w[l] < g[l] {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

// TestREADMEConformance: the README's conformance table and its list of
// extended features say what the kept report says.
func TestREADMEConformance(t *testing.T) {
	kept, err := os.ReadFile(reportPath)
	must(t, err)
	var r confv1.ConformanceReport
	must(t, yaml.Unmarshal(kept, &r))
	readme, err := os.ReadFile("../../README.md")
	must(t, err)
	text := string(readme)
	flat := strings.Join(strings.Fields(text), " ")
	stats := func(s confv1.Statistics) string {
		return fmt.Sprintf("%d passed, %d failed, %d skipped", s.Passed, s.Failed, s.Skipped)
	}
	for _, p := range r.ProfileReports {
		row := fmt.Sprintf("| %s | %s | ", p.Name, stats(p.Core.Statistics))
		if p.Extended != nil {
			row += stats(p.Extended.Statistics) + " |"
		} else {
			row += "|"
		}
		if !strings.Contains(text, row) {
			t.Errorf("README.md lacks the row %q", row)
		}
		if p.Core.Result != "success" {
			t.Errorf("profile %s: core %s", p.Name, p.Core.Result)
		}
		if p.Extended == nil {
			continue
		}
		for _, f := range p.Extended.SupportedFeatures {
			name := string(f)
			if strings.HasPrefix(name, "HTTPRoute30") { // listed as HTTPRoute303/307/308RedirectStatusCode
				name = "HTTPRoute303/307/308RedirectStatusCode"
			}
			if !strings.Contains(flat, name) {
				t.Errorf("README.md does not name the extended feature %s", f)
			}
		}
	}
}
