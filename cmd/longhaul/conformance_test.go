//go:build conformance

package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
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
	conformanceconfig "sigs.k8s.io/gateway-api/conformance/utils/config"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	"sigs.k8s.io/gateway-api/pkg/features"

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
}

// TestConformance runs the Gateway API conformance suite (v1.6.3, the
// GATEWAY-HTTP profile) against `longhaul run --gateway-class` over the
// real API server, controller manager and podrunner, each Gateway on an
// address of its own in 127.64.0.0/16. It is built with -tags conformance
// (`make conformance`) and is not part of `make test` yet: the suite's
// setup waits for every base Gateway to be Accepted, an HTTPS one among
// them, and longhaul does not terminate TLS for Gateways yet.
// LONGHAUL_CONFORMANCE_REPORT names the file the report is written to.
func TestConformance(t *testing.T) {
	if err := netns.Check(); err != nil {
		t.Skipf("podrunner makes network namespaces: %v", err)
	}
	crlog.SetLogger(crzap.New(crzap.WriteTo(os.Stderr)))
	ctx := context.Background()
	cl := kubetest.Start(t)
	cl.StartControllerManager(t)
	cl.InstallCRDs(t, "../../deploy/gateway/crds")
	r, err := podrunner.Start(ctx, cl.Client, podrunner.Options{MaxGrace: time.Second, Subnet: netip.MustParsePrefix("198.18.0.0/22")})
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
			ReportOutputPath: os.Getenv("LONGHAUL_CONFORMANCE_REPORT"),
			RunTest:          os.Getenv("LONGHAUL_CONFORMANCE_RUN"), // one test's ShortName, to debug it
			Mode:             "default",
			Implementation: confv1.Implementation{Organization: "longhaul-proxy", Project: "longhaul",
				URL: "https://github.com/longhaul-proxy/longhaul", Version: "main", Contact: []string{"@longhaul-proxy"}},
		},
		Client: c, Clientset: cl.Client, RestConfig: cl.Config,
	}
	conformance.RunConformanceWithOptions(t, opts)
}
