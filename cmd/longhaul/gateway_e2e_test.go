package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/dynamicpb"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	gwapi "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/typed/apis/v1"

	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/internal/kubetest"
	"github.com/longhaul-proxy/longhaul/internal/netns"
	"github.com/longhaul-proxy/longhaul/internal/podrunner"
	"github.com/longhaul-proxy/longhaul/internal/testnet"
	"github.com/longhaul-proxy/longhaul/internal/wsload"
)

// The bounds of TestGatewayEndToEnd.
const (
	// podGrace is the pods' terminationGracePeriodSeconds, and
	// podrunner's Options.MaxGrace: a deleted pod serves this long, then
	// dies. It is also what makes longhaul's drains short: the Gateway's
	// listeners take the configuration's defaults (drain.timeout 25s,
	// killMargin 2s), and longhaul reads each terminating pod's deletion
	// timestamp, so its sessions must be gone killMargin before it:
	// within about 3s of the deletion.
	podGrace = 5 * time.Second
	// minReady is the Deployments' minReadySeconds. At 0 the old pods
	// turn terminating within a few hundred milliseconds of each other,
	// which once made longhaul learn all but the first one's kill time
	// late (a revision read throttled the kill-time read); the test keeps
	// that case.
	minReady = 0
	// e2eTimeout bounds the whole test; rolloutTimeout the rollout under
	// load.
	e2eTimeout     = 100 * time.Second
	rolloutTimeout = 45 * time.Second
	// maxIterations bounds every load loop besides its context.
	maxIterations = 20000

	httpReplicas = 3
	grpcReplicas = 2
	echoHost     = "echo.example.com"
	className    = "longhaul-e2e"
)

// TestGatewayEndToEnd runs `longhaul run --gateway-class` (runCmd, with a
// kubeconfig of the cluster's administrator) against a real API server and
// controller manager, with the pods of two Deployments run by podrunner:
// an HTTP echo (3 replicas) behind an HTTPRoute on the Gateway's port 80,
// and a gRPC echo (2 replicas) behind a GRPCRoute on its port 8081. It
// asserts
//
//   - the GatewayClass, the Gateway (with longhaul's address), both its
//     listeners and both routes Accepted and Programmed (or ResolvedRefs);
//   - requests with the route's Host reach the HTTP echo pods through
//     port 80, every one of the 3 pods answering over requests from many
//     client addresses (the listeners hash the client IP, maglev), a path
//     the route does not match and a host it does not name answered 404,
//     and gRPC calls reach the gRPC echo;
//   - a rolling update of both Deployments at once (an env var of their
//     templates changed) under HTTP keep-alive requests, gRPC unary calls
//     and WebSocket sessions carrying sequence numbers costs no failed
//     request or call; every old pod is seen terminating in its Service's
//     EndpointSlices; every WebSocket session on an old pod is closed with
//     1012 and reconnects through longhaul, no message lost or duplicated,
//     ending on a new pod (a session still on a pod when it dies would end
//     without a close frame: podrunner's echo ends its WebSockets with the
//     pod, and that counts as a failure); and after the rollout only new
//     pods answer.
func TestGatewayEndToEnd(t *testing.T) {
	if err := netns.Check(); err != nil {
		t.Skipf("podrunner makes network namespaces: %v", err)
	}
	begin := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	defer cancel()
	cl := kubetest.Start(t)
	cl.StartControllerManager(t)
	crds := cl.InstallCRDs(t, "../../deploy/gateway/crds")
	r, err := podrunner.Start(ctx, cl.Client, podrunner.Options{MaxGrace: podGrace})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	t.Logf("cluster, controller manager, %d CRDs and podrunner up in %v", crds, time.Since(begin).Round(time.Millisecond))

	cs := cl.Client
	gw, err := gwclient.NewForConfig(cl.Config)
	if err != nil {
		t.Fatal(err)
	}
	ns := cl.CreateNamespace(t, "gw-e2e-")
	api := gw.GatewayV1()
	must(t, create(ctx, api.GatewayClasses(), &gwv1.GatewayClass{
		ObjectMeta: metav1.ObjectMeta{Name: className},
		Spec:       gwv1.GatewayClassSpec{ControllerName: config.GatewayController},
	}))
	for _, app := range []echoApp{{"echo", httpReplicas, false}, {"grpc-echo", grpcReplicas, true}} {
		must(t, create(ctx, cs.CoreV1().Services(ns), app.service()))
		must(t, create(ctx, cs.AppsV1().Deployments(ns), app.deployment()))
	}
	grpcKinds := []gwv1.RouteGroupKind{{Kind: "GRPCRoute"}}
	must(t, create(ctx, api.Gateways(ns), &gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: gwv1.GatewaySpec{GatewayClassName: className, Listeners: []gwv1.Listener{
			{Name: "http", Port: 80, Protocol: gwv1.HTTPProtocolType},
			{Name: "grpc", Port: 8081, Protocol: gwv1.HTTPProtocolType, AllowedRoutes: &gwv1.AllowedRoutes{Kinds: grpcKinds}},
		}},
	}))
	port := gwv1.PortNumber(8080)
	prefix := func(p string) gwv1.HTTPRouteMatch {
		return gwv1.HTTPRouteMatch{Path: &gwv1.HTTPPathMatch{Type: new(gwv1.PathMatchPathPrefix), Value: new(p)}}
	}
	must(t, create(ctx, api.HTTPRoutes(ns), &gwv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: "web", SectionName: new(gwv1.SectionName("http"))}}},
			Hostnames:       []gwv1.Hostname{echoHost},
			Rules: []gwv1.HTTPRouteRule{{
				Matches:     []gwv1.HTTPRouteMatch{prefix("/echo"), prefix(podrunner.WebSocketPath)},
				BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{Name: "echo", Port: &port}}}},
			}},
		},
	}))
	must(t, create(ctx, api.GRPCRoutes(ns), &gwv1.GRPCRoute{
		ObjectMeta: metav1.ObjectMeta{Name: "grpc-echo"},
		Spec: gwv1.GRPCRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Name: "web", SectionName: new(gwv1.SectionName("grpc"))}}},
			Rules: []gwv1.GRPCRouteRule{{
				Matches:     []gwv1.GRPCRouteMatch{{Method: &gwv1.GRPCMethodMatch{Service: new(podrunner.GRPCEchoService)}}},
				BackendRefs: []gwv1.GRPCBackendRef{{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{Name: "grpc-echo", Port: &port}}}},
			}},
		},
	}))

	// longhaul, as `longhaul run --gateway-class` runs in a pod (without
	// POD_NAME and POD_NAMESPACE: no Lease, this replica writes status).
	gwIP := randomLoopback(t)
	httpAddr, grpcAddr := net.JoinHostPort(gwIP, "80"), net.JoinHostPort(gwIP, "8081")
	adminAddr := testnet.FreeAddr(t)
	cfgPath := filepath.Join(t.TempDir(), "longhaul.yaml")
	must(t, os.WriteFile(cfgPath, []byte(fmt.Sprintf("admin: {address: %q}\nlog: {level: warn}\ngateway: {address: %q}\n", adminAddr, gwIP)), 0o600))
	var logs syncBuffer
	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	args := []string{"--config", cfgPath, "--gateway-class", className,
		"--kubeconfig", cl.WriteKubeconfig(t, "longhaul.kubeconfig"), "--shutdown-delay", "0"}
	go func() { runDone <- runCmd(runCtx, args, &logs) }()
	var stopOnce sync.Once
	stopLonghaul := func() {
		stopOnce.Do(func() {
			stopRun()
			select {
			case err := <-runDone:
				if err != nil {
					t.Errorf("longhaul run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("longhaul run did not return within 30s of its context's end")
			}
		})
	}
	t.Cleanup(func() {
		stopLonghaul()
		if t.Failed() {
			t.Logf("longhaul's log:\n%s", logs.String())
		}
	})

	step := time.Now()
	old := waitRollout(t, ctx, cs, ns, nil).ready
	t.Logf("pods ready in %v: %v", time.Since(step).Round(time.Millisecond), old)
	step = time.Now()
	checkStatus(t, ctx, gw.GatewayV1(), ns, gwIP)
	kubetest.Poll(t, ctx, "longhaul ready", func() error { return getStatus(adminAddr, "/readyz") })
	t.Logf("status Accepted and Programmed, longhaul ready, in %v", time.Since(step).Round(time.Millisecond))

	// Traffic through the Gateway: every HTTP pod answers, over requests
	// from many client addresses.
	step = time.Now()
	var e podrunner.Echo
	kubetest.Poll(t, ctx, "a request through the HTTPRoute", func() (err error) {
		e, err = echoGet(newClient("127.0.1.1"), httpAddr, echoHost, "/echo/first")
		return err
	})
	if e.Namespace != ns || e.Host != echoHost || e.Path != "/echo/first" || !old["echo"][e.Pod] {
		t.Errorf("echo through the Gateway: %+v; want namespace %s, host %s, path /echo/first, a pod of %v", e, ns, echoHost, old["echo"])
	}
	if seen := spread(t, httpAddr, 64); !mapsEqualKeys(seen, old["echo"]) {
		t.Errorf("requests from 64 addresses reached pods %v, want every one of %v", seen, old["echo"])
	}
	for _, c := range []struct{ host, path string }{{echoHost, "/other"}, {"other.example.com", "/echo/x"}} {
		if code := statusOf(newClient("127.0.1.2"), httpAddr, c.host, c.path); code != http.StatusNotFound {
			t.Errorf("GET %s%s: %d, want 404 (no route matches)", c.host, c.path, code)
		}
	}
	cc := grpcConn(t, grpcAddr, "127.0.1.3")
	var pod string
	kubetest.Poll(t, ctx, "a call through the GRPCRoute", func() (err error) {
		gns, svc, p, err := grpcEcho(ctx, cc)
		if err == nil && (gns != ns || svc != "grpc-echo") {
			err = fmt.Errorf("answered by %s/%s (service %q)", gns, p, svc)
		}
		pod = p
		return err
	})
	if !old["grpc-echo"][pod] {
		t.Errorf("gRPC echo answered by pod %q, want one of %v", pod, old["grpc-echo"])
	}
	t.Logf("traffic checked in %v", time.Since(step).Round(time.Millisecond))

	// The rollout under load.
	step = time.Now()
	load := startLoad(ctx, t, httpAddr, grpcAddr)
	load.waitWarm(t, ctx)
	for _, name := range []string{"echo", "grpc-echo"} {
		patch := `{"spec":{"template":{"spec":{"containers":[{"name":"echo","env":[{"name":"VERSION","value":"2"}]}]}}}}`
		if _, err := cs.AppsV1().Deployments(ns).Patch(ctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rctx, rcancel := context.WithTimeout(ctx, rolloutTimeout)
	ro := waitRollout(t, rctx, cs, ns, old)
	next, terminating := ro.ready, ro.terminating
	rcancel()
	rolled := time.Since(step)
	// A little load on the new pods only, then the end.
	afterFrom := load.snapshot()
	wsload.Sleep(ctx, 500*time.Millisecond)
	load.stop()
	for _, set := range old {
		for pod := range set {
			if !terminating[pod] {
				t.Errorf("old pod %s never seen terminating in the EndpointSlices", pod)
			}
		}
	}
	load.check(t, old, next, afterFrom, ro.killAt)

	// After the rollout only new pods answer.
	if seen := spread(t, httpAddr, 64); !mapsEqualKeys(seen, next["echo"]) {
		t.Errorf("after the rollout requests from 64 addresses reached pods %v, want every one of the new %v", seen, next["echo"])
	}
	for i := range 10 {
		_, _, p, err := grpcEcho(ctx, cc)
		if err != nil || !next["grpc-echo"][p] {
			t.Errorf("gRPC call %d after the rollout: pod %q (%v), want one of %v", i, p, err, next["grpc-echo"])
		}
	}
	t.Logf("rolled out under load in %v (old pods seen terminating: %d); test took %v",
		rolled.Round(time.Millisecond), len(terminating), time.Since(begin).Round(time.Millisecond))
	stopLonghaul()
}

// echoApp is a Deployment of podrunner's echo and its Service, port 8080
// to the pods' 3000.
type echoApp struct {
	name     string
	replicas int32
	grpc     bool
}

func (a echoApp) service() *corev1.Service {
	portName := "http"
	if a.grpc {
		portName = "grpc"
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: a.name},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": a.name},
			Ports:    []corev1.ServicePort{{Name: portName, Port: 8080, TargetPort: intstr.FromInt32(3000)}},
		},
	}
}

func (a echoApp) deployment() *appsv1.Deployment {
	labels := map[string]string{"app": a.name}
	grace := int64(podGrace / time.Second)
	zero, one := intstr.FromInt32(0), intstr.FromInt32(1)
	env := []corev1.EnvVar{
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		{Name: "SERVICE_NAME", Value: a.name},
		{Name: "VERSION", Value: "1"}, // the rollout changes it
	}
	if a.grpc {
		env = append(env, corev1.EnvVar{Name: "GRPC_ECHO_SERVER", Value: "1"})
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: a.name},
		Spec: appsv1.DeploymentSpec{
			Replicas:        &a.replicas,
			MinReadySeconds: minReady,
			Selector:        &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{
				Type:          appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &zero, MaxSurge: &one},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: &grace,
					Containers: []corev1.Container{{
						Name: "echo", Image: "registry.k8s.io/gateway-api/conformance/echo-basic:v0.1.0", Env: env,
					}},
				},
			},
		},
	}
}

// creator is any typed client's Create.
type creator[T any] interface {
	Create(context.Context, T, metav1.CreateOptions) (T, error)
}

func create[T any](ctx context.Context, c creator[T], obj T) error {
	_, err := c.Create(ctx, obj, metav1.CreateOptions{})
	return err
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// randomLoopback returns a random address of 127.0.0.0/8 outside
// 127.0.0.0/16 (which the clients' source addresses use), so that
// parallel runs do not meet on port 80.
func randomLoopback(t *testing.T) string {
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.%d.%d.%d", 1+b[0]%250, b[1], 1+b[0]%200)
}

// checkStatus waits until the GatewayClass is Accepted, the Gateway
// Accepted and Programmed with address ip, both its listeners Programmed
// with one route each, and both routes Accepted with their refs resolved,
// every condition at its object's generation.
func checkStatus(t *testing.T, ctx context.Context, api gwapi.GatewayV1Interface, ns, ip string) {
	t.Helper()
	kubetest.Poll(t, ctx, "GatewayClass accepted", func() error {
		gc, err := api.GatewayClasses().Get(ctx, className, metav1.GetOptions{})
		if err != nil {
			return err
		}
		return conditionsTrue(gc.Status.Conditions, gc.Generation, "Accepted")
	})
	kubetest.Poll(t, ctx, "Gateway accepted and programmed", func() error {
		g, err := api.Gateways(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		errs := []error{conditionsTrue(g.Status.Conditions, g.Generation, "Accepted", "Programmed")}
		if len(g.Status.Addresses) != 1 || g.Status.Addresses[0].Value != ip ||
			g.Status.Addresses[0].Type == nil || *g.Status.Addresses[0].Type != gwv1.IPAddressType {
			errs = append(errs, fmt.Errorf("addresses %+v, want IPAddress %s", g.Status.Addresses, ip))
		}
		if len(g.Status.Listeners) != 2 {
			return errors.Join(append(errs, fmt.Errorf("%d listener statuses, want 2", len(g.Status.Listeners)))...)
		}
		for _, l := range g.Status.Listeners {
			errs = append(errs, conditionsTrue(l.Conditions, g.Generation, "Accepted", "Programmed", "ResolvedRefs"))
			if l.AttachedRoutes != 1 {
				errs = append(errs, fmt.Errorf("listener %s has %d routes, want 1", l.Name, l.AttachedRoutes))
			}
		}
		return errors.Join(errs...)
	})
	parents := func(kind string, ps []gwv1.RouteParentStatus, gen int64) error {
		if len(ps) != 1 || ps[0].ControllerName != config.GatewayController || ps[0].ParentRef.Name != "web" {
			return fmt.Errorf("%s parents %+v, want one, web, of %s", kind, ps, config.GatewayController)
		}
		return conditionsTrue(ps[0].Conditions, gen, "Accepted", "ResolvedRefs")
	}
	kubetest.Poll(t, ctx, "HTTPRoute accepted", func() error {
		r, err := api.HTTPRoutes(ns).Get(ctx, "echo", metav1.GetOptions{})
		if err != nil {
			return err
		}
		return parents("HTTPRoute", r.Status.Parents, r.Generation)
	})
	kubetest.Poll(t, ctx, "GRPCRoute accepted", func() error {
		r, err := api.GRPCRoutes(ns).Get(ctx, "grpc-echo", metav1.GetOptions{})
		if err != nil {
			return err
		}
		return parents("GRPCRoute", r.Status.Parents, r.Generation)
	})
}

// conditionsTrue checks that cs holds each of types with status True,
// observed at generation gen.
func conditionsTrue(cs []metav1.Condition, gen int64, types ...string) error {
	var errs []error
	for _, typ := range types {
		i := slices.IndexFunc(cs, func(c metav1.Condition) bool { return c.Type == typ })
		switch {
		case i < 0:
			errs = append(errs, fmt.Errorf("no condition %s", typ))
		case cs[i].Status != metav1.ConditionTrue || cs[i].ObservedGeneration != gen:
			errs = append(errs, fmt.Errorf("%s is %s (%s: %s) at generation %d, want True at %d",
				typ, cs[i].Status, cs[i].Reason, cs[i].Message, cs[i].ObservedGeneration, gen))
		}
	}
	return errors.Join(errs...)
}

// rollout is what waitRollout saw.
type rollout struct {
	ready       map[string]map[string]bool // Service -> its ready pods at the end
	terminating map[string]bool            // pods seen terminating in the slices
	killAt      map[string]time.Time       // pod -> its deletion timestamp (kill time), if seen
}

// waitRollout waits until the EndpointSlices of the Services echo and
// grpc-echo hold exactly their Deployments' replicas as endpoints, all
// ready, none terminating and none of a pod in old (by Service), and no
// pod of old is left in the API. It polls both Services at once, noting
// the terminating endpoints and the deletion timestamps of old pods it
// sees meanwhile.
func waitRollout(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns string, old map[string]map[string]bool) rollout {
	t.Helper()
	ro := rollout{terminating: map[string]bool{}, killAt: map[string]time.Time{}}
	want := map[string]int{"echo": httpReplicas, "grpc-echo": grpcReplicas}
	kubetest.Poll(t, ctx, "the Deployments' endpoints ready", func() error {
		ro.ready = map[string]map[string]bool{}
		var errs []error
		for svc, n := range want {
			sl, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
			if err != nil {
				return err
			}
			ready := map[string]bool{}
			total := 0
			for _, s := range sl.Items {
				for _, e := range s.Endpoints {
					total++
					switch {
					case e.TargetRef == nil:
					case e.Conditions.Terminating != nil && *e.Conditions.Terminating:
						ro.terminating[e.TargetRef.Name] = true
					case !old[svc][e.TargetRef.Name] && e.Conditions.Ready != nil && *e.Conditions.Ready:
						ready[e.TargetRef.Name] = true
					}
				}
			}
			ro.ready[svc] = ready
			if len(ready) != n || total != n {
				errs = append(errs, fmt.Errorf("%s: %d ready of %d endpoints", svc, len(ready), total))
			}
		}
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		var left []string
		for _, p := range pods.Items {
			if old["echo"][p.Name] || old["grpc-echo"][p.Name] {
				left = append(left, p.Name)
				if dt := p.DeletionTimestamp; dt != nil && ro.killAt[p.Name].IsZero() {
					ro.killAt[p.Name] = dt.Time
				}
			}
		}
		if len(left) > 0 {
			errs = append(errs, fmt.Errorf("old pods still in the API: %v", left))
		}
		return errors.Join(errs...)
	})
	return ro
}

func mapsEqualKeys(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// dialerFrom dials from the loopback address ip, so that the listeners'
// client-ip hash spreads clients.
func dialerFrom(ip string) *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
}

// newClient is an HTTP/1.1 keep-alive client dialling from ip.
func newClient(ip string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: dialerFrom(ip).DialContext, MaxIdleConnsPerHost: 1}, Timeout: 10 * time.Second}
}

func getStatus(addr, path string) error {
	hc := newClient("127.0.0.1")
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return nil
}

// echoGet sends GET path with Host host to addr and decodes the echo.
func echoGet(hc *http.Client, addr, host, path string) (podrunner.Echo, error) {
	var e podrunner.Echo
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return e, err
	}
	req.Host = host
	resp, err := hc.Do(req)
	if err != nil {
		return e, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return e, fmt.Errorf("GET %s: body: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return e, fmt.Errorf("GET %s: %s: %q", path, resp.Status, body)
	}
	if err := json.Unmarshal(body, &e); err != nil {
		return e, fmt.Errorf("GET %s: %w: %q", path, err, body)
	}
	if e.Path != path {
		return e, fmt.Errorf("GET %s: echoed path %q", path, e.Path)
	}
	return e, nil
}

func statusOf(hc *http.Client, addr, host, path string) int {
	defer hc.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	req.Host = host
	resp, err := hc.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// spread sends one request from each of n client addresses and returns
// the pods that answered.
func spread(t *testing.T, addr string, n int) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	for i := range n {
		hc := newClient(fmt.Sprintf("127.0.2.%d", i+1))
		e, err := echoGet(hc, addr, echoHost, "/echo/spread-"+strconv.Itoa(i))
		hc.CloseIdleConnections()
		if err != nil {
			t.Errorf("request from client %d: %v", i, err)
			continue
		}
		seen[e.Pod] = true
	}
	return seen
}

func grpcConn(t *testing.T, addr, from string) *grpc.ClientConn {
	t.Helper()
	d := dialerFrom(from)
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// grpcEcho calls the echo's Echo and returns who answered.
func grpcEcho(ctx context.Context, cc *grpc.ClientConn) (namespace, service, pod string, err error) {
	reqDesc, respDesc := podrunner.GRPCEchoSchema()
	resp := dynamicpb.NewMessage(respDesc)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := cc.Invoke(cctx, "/"+podrunner.GRPCEchoService+"/Echo", dynamicpb.NewMessage(reqDesc), resp); err != nil {
		return "", "", "", err
	}
	namespace, service, pod = podrunner.GRPCEchoIdentity(resp)
	return namespace, service, pod, nil
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The rollout's load: how many clients of each kind, and how often each
// sends.
const (
	httpClients = 6
	grpcClients = 4
	wsSessions  = 12
	loadPause   = 10 * time.Millisecond // between two requests or calls of a client
	wsInterval  = 20 * time.Millisecond // between two windows of WebSocket messages
	wsNoEcho    = 5 * time.Second
)

// load is the traffic of the rollout: HTTP/1.1 keep-alive clients on the
// HTTPRoute, gRPC unary clients on the GRPCRoute and WebSocket sessions
// carrying sequence numbers on the HTTPRoute, each client from a loopback
// address of its own, each loop bounded by its context and maxIterations.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	httpOK, httpFail, httpConns atomic.Int64
	grpcOK, grpcFail            atomic.Int64
	wsConnected, wsMsgs         atomic.Int64
	wsLost, wsDup               atomic.Int64
	wsUnclean, wsDialFail       atomic.Int64
	wsload.Tally

	mu      sync.Mutex
	answers map[string]map[string]int // kind (http, grpc, ws) -> pod -> answers (ws: connections)

	ws [wsSessions]wsSession // each written by its client only, read once all ended
}

// wsSession is what one WebSocket client saw.
type wsSession struct {
	seq  wsload.Seq
	pods []string    // the pod of each connection, in order
	ends []string    // how each connection ended: "1012", "open at the end", or the error
	at   []time.Time // when each ended
}

func startLoad(ctx context.Context, t *testing.T, httpAddr, grpcAddr string) *load {
	ctx, cancel := context.WithCancel(ctx)
	l := &load{cancel: cancel, answers: map[string]map[string]int{"http": {}, "grpc": {}, "ws": {}}}
	for i := range httpClients {
		l.wg.Go(func() { l.httpClient(ctx, httpAddr, fmt.Sprintf("127.0.3.%d", i+1), i) })
	}
	for i := range grpcClients {
		cc := grpcConn(t, grpcAddr, fmt.Sprintf("127.0.4.%d", i+1))
		l.wg.Go(func() { l.grpcClient(ctx, cc) })
	}
	for i := range wsSessions {
		l.wg.Go(func() { l.wsClient(ctx, httpAddr, fmt.Sprintf("127.0.5.%d", i+1), &l.ws[i]) })
	}
	t.Cleanup(l.stop)
	return l
}

// stop ends the load and waits for every client.
func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

func (l *load) record(kind, pod string) {
	l.mu.Lock()
	l.answers[kind][pod]++
	l.mu.Unlock()
}

// snapshot returns a copy of the answers so far.
func (l *load) snapshot() map[string]map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]map[string]int{}
	for k, m := range l.answers {
		out[k] = maps.Clone(m)
	}
	return out
}

// waitWarm waits until every kind of client has been answered a few times.
func (l *load) waitWarm(t *testing.T, ctx context.Context) {
	t.Helper()
	kubetest.Poll(t, ctx, "the load under way", func() error {
		if l.httpOK.Load() < 20 || l.grpcOK.Load() < 20 || l.wsConnected.Load() < wsSessions || l.wsMsgs.Load() < 5*wsSessions {
			return fmt.Errorf("%d requests, %d calls, %d WebSockets with %d messages answered; failed: %d, %d, %d%s",
				l.httpOK.Load(), l.grpcOK.Load(), l.wsConnected.Load(), l.wsMsgs.Load(),
				l.httpFail.Load(), l.grpcFail.Load(), l.wsUnclean.Load()+l.wsDialFail.Load(), l.Errors())
		}
		return nil
	})
}

func (l *load) httpClient(ctx context.Context, addr, from string, id int) {
	d := dialerFrom(from)
	tr := &http.Transport{MaxIdleConnsPerHost: 1, DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		l.httpConns.Add(1)
		return d.DialContext(ctx, network, a)
	}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for i := 0; i < maxIterations && ctx.Err() == nil; i++ {
		e, err := echoGet(hc, addr, echoHost, fmt.Sprintf("/echo/load-%d-%d", id, i))
		if err != nil {
			l.httpFail.Add(1)
			l.Sample("http", "%v", err)
		} else {
			l.httpOK.Add(1)
			l.record("http", e.Pod)
		}
		if !wsload.Sleep(ctx, wsload.Jitter(loadPause)) {
			return
		}
	}
}

func (l *load) grpcClient(ctx context.Context, cc *grpc.ClientConn) {
	for i := 0; i < maxIterations && ctx.Err() == nil; i++ {
		_, _, pod, err := grpcEcho(ctx, cc)
		if err != nil {
			l.grpcFail.Add(1)
			l.Sample("grpc", "%v", err)
		} else {
			l.grpcOK.Add(1)
			l.record("grpc", pod)
		}
		if !wsload.Sleep(ctx, wsload.Jitter(loadPause)) {
			return
		}
	}
}

// wsClient keeps a WebSocket session through the HTTPRoute: on a close
// 1012 it reconnects, through longhaul, and resends what was not echoed.
func (l *load) wsClient(ctx context.Context, addr, from string, s *wsSession) {
	d := websocket.Dialer{NetDialContext: dialerFrom(from).DialContext, HandshakeTimeout: 5 * time.Second}
	url := "ws://" + addr + podrunner.WebSocketPath
	for i := 0; i < 100 && ctx.Err() == nil; i++ {
		c, resp, err := d.DialContext(ctx, url, http.Header{"Host": {echoHost}})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			l.wsDialFail.Add(1)
			l.Sample("ws dial", "%v", err)
			wsload.Sleep(ctx, 50*time.Millisecond)
			continue
		}
		pod := resp.Header.Get(podrunner.HeaderEchoPod)
		if i == 0 {
			l.wsConnected.Add(1)
		}
		s.pods = append(s.pods, pod)
		l.record("ws", pod)
		err = s.seq.Run(ctx, c, wsInterval, wsNoEcho, wsload.Counter{Msgs: &l.wsMsgs, Lost: &l.wsLost, Dup: &l.wsDup, Sample: l.Sample})
		c.Close()
		var ce *websocket.CloseError
		switch {
		case err == nil:
			s.ends = append(s.ends, "open at the end")
			s.at = append(s.at, time.Now())
			return
		case errors.As(err, &ce) && ce.Code == websocket.CloseServiceRestart:
			s.ends = append(s.ends, "1012")
			s.at = append(s.at, time.Now())
		default:
			s.ends = append(s.ends, err.Error())
			s.at = append(s.at, time.Now())
			l.wsUnclean.Add(1)
			l.Sample("ws", "on %s: %v", pod, err)
		}
	}
}

// check asserts what the load saw of the rollout from old pods to next:
// nothing failed, lost or duplicated; each HTTP client kept its one
// connection; old and new pods answered every
// kind, and no old pod after the rollout (from the answers of after on);
// every WebSocket session left each old pod on a 1012 before the pod's
// kill time (killAt: its deletion timestamp), reconnected and ended on a
// new pod. It logs the figures.
func (l *load) check(t *testing.T, old, next map[string]map[string]bool, after map[string]map[string]int, killAt map[string]time.Time) {
	t.Helper()
	for _, set := range old {
		for pod := range set {
			if killAt[pod].IsZero() {
				t.Errorf("old pod %s never seen with a deletion timestamp", pod)
			}
		}
	}
	var minMargin time.Duration // the least time from a 1012 to its pod's kill time
	margins := 0
	if n := l.httpFail.Load() + l.grpcFail.Load() + l.wsUnclean.Load() + l.wsDialFail.Load() + l.wsLost.Load() + l.wsDup.Load(); n > 0 {
		t.Errorf("%d failed requests, %d failed calls, %d WebSocket connections ended without 1012, %d failed WebSocket dials, %d messages lost, %d duplicated:%s",
			l.httpFail.Load(), l.grpcFail.Load(), l.wsUnclean.Load(), l.wsDialFail.Load(), l.wsLost.Load(), l.wsDup.Load(), l.Errors())
	}
	// Keep-alive held: the rollout cost the clients no connection to
	// longhaul (requests are balanced each on its own, affinity none).
	if n := l.httpConns.Load(); n != httpClients {
		t.Errorf("the %d HTTP clients dialled %d connections, want one each", httpClients, n)
	}
	answers := l.snapshot()
	for kind, svc := range map[string]string{"http": "echo", "grpc": "grpc-echo", "ws": "echo"} {
		var fromOld, fromNew int
		for pod, n := range answers[kind] {
			switch {
			case old[svc][pod]:
				fromOld += n
				if n > after[kind][pod] {
					t.Errorf("old pod %s answered %d %s after the rollout", pod, n-after[kind][pod], kind)
				}
			case next[svc][pod]:
				fromNew += n
			default:
				t.Errorf("%s answered by %q, neither an old pod %v nor a new one %v of %s", kind, pod, old[svc], next[svc], svc)
			}
		}
		if fromOld == 0 || fromNew == 0 {
			t.Errorf("%s: %d answers from old pods, %d from new ones; want both", kind, fromOld, fromNew)
		}
	}
	moves := map[int]int{} // moves -> sessions
	total, ontoOld := 0, 0
	for i := range l.ws {
		s := &l.ws[i]
		m := len(s.pods) - 1
		moves[m]++
		total += m
		for j, pod := range s.pods {
			if j > 0 && old["echo"][pod] {
				ontoOld++
			}
			if j == len(s.pods)-1 {
				continue
			}
			if s.ends[j] != "1012" {
				t.Errorf("WebSocket session %d: its connection to %s ended with %q, want a close 1012", i, pod, s.ends[j])
			}
			if kill := killAt[pod]; !kill.IsZero() {
				margin := kill.Sub(s.at[j])
				if margin <= 0 {
					t.Errorf("WebSocket session %d: closed on %s %v after the pod's kill time", i, pod, -margin)
				}
				if margins == 0 || margin < minMargin {
					minMargin = margin
				}
				margins++
			}
		}
		if m < 1 || !old["echo"][s.pods[0]] || !next["echo"][s.pods[m]] || s.ends[m] != "open at the end" {
			t.Errorf("WebSocket session %d went through pods %v (ends %v): want an old pod first, then moves on 1012, last a new pod open at the end", i, s.pods, s.ends)
		}
		if s.seq.Acked == 0 {
			t.Errorf("WebSocket session %d: no message echoed", i)
		}
	}
	keys := slices.Sorted(maps.Keys(moves))
	var hist []string
	for _, k := range keys {
		hist = append(hist, fmt.Sprintf("%d sessions moved %d times", moves[k], k))
	}
	t.Logf("HTTP: %d requests, %d failed, over %d connections (keep-alive); gRPC: %d calls, %d failed; "+
		"WebSocket: %d sessions, %d messages echoed, %d lost, %d duplicated, %d moves (%.2f per session: %s; %d onto an old pod), %d ended without 1012; the latest 1012 came %v before its pod's kill time",
		l.httpOK.Load()+l.httpFail.Load(), l.httpFail.Load(), l.httpConns.Load(), l.grpcOK.Load()+l.grpcFail.Load(), l.grpcFail.Load(),
		wsSessions, l.wsMsgs.Load(), l.wsLost.Load(), l.wsDup.Load(), total, float64(total)/wsSessions, strings.Join(hist, ", "), ontoOld, l.wsUnclean.Load(), minMargin.Round(time.Millisecond))
	t.Logf("answers by pod: %v", answers)
}
