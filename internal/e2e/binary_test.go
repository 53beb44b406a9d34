package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/longhaul-proxy/longhaul/internal/kubetest"
	"github.com/longhaul-proxy/longhaul/internal/testnet"
)

// TestBinaryWithKubeconfig runs the longhaul binary itself (`longhaul run
// --kubeconfig`) against a real kube-apiserver: the kubernetes endpoint
// source is wired in cmd/longhaul, /readyz turns 200 once the slices are
// listed, /debug/endpoints shows their addresses with their conditions, the
// source's metrics are exposed, and SIGTERM ends it cleanly. No traffic:
// the slices' addresses (198.18.0.0/15) are never dialled.
func TestBinaryWithKubeconfig(t *testing.T) {
	cl := kubetest.Start(t)
	ctx := context.Background()
	ns := cl.CreateNamespace(t, "binary-")
	dir := t.TempDir()

	bin := filepath.Join(dir, "longhaul")
	build := exec.Command("go", "build", "-o", bin, "./cmd/longhaul")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/longhaul: %v\n%s", err, out)
	}

	kubeconfig := cl.WriteKubeconfig(t, "longhaul.kubeconfig")

	s := endpointSliceOf("cart-a", "grpc", 8080, "198.18.0.1", "198.18.0.2")
	if _, err := cl.Client.DiscoveryV1().EndpointSlices(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	admin, debug := testnet.FreeAddr(t), testnet.FreeAddr(t)
	cfgPath := filepath.Join(dir, "longhaul.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
admin: {address: %q, debugAddress: %q}
log: {level: info, format: json}
listeners:
  - name: grpc
    address: %q
    protocol: tcp
    endpoints: {kubernetes: {namespace: %s, service: cart, port: grpc}}
`, admin, debug, testnet.FreeAddr(t), ns)), 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "run", "--config", cfgPath, "--kubeconfig", kubeconfig)
	logs := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("longhaul's output:\n%s", logs.String())
		}
	})

	url := "http://" + admin
	waitFor(t, 30*time.Second, "/readyz 200 from the binary", func() bool {
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("longhaul exited: %v", err)
		default:
		}
		code, err := httpStatus(url + "/readyz")
		return err == nil && code == http.StatusOK
	})
	_, body := httpGet(t, "http://"+debug+"/debug/endpoints")
	var views []struct {
		Listener  string `json:"listener"`
		Endpoints []struct {
			Address string `json:"address"`
			Ready   bool   `json:"ready"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal([]byte(body), &views); err != nil {
		t.Fatalf("/debug/endpoints: %v: %s", err, body)
	}
	if len(views) != 1 || len(views[0].Endpoints) != 2 ||
		views[0].Endpoints[0].Address != "198.18.0.1:8080" || views[0].Endpoints[1].Address != "198.18.0.2:8080" ||
		!views[0].Endpoints[0].Ready {
		t.Errorf("/debug/endpoints: %s", body)
	}

	// A change reaches the running binary.
	s, err := cl.Client.DiscoveryV1().EndpointSlices(ns).Get(ctx, "cart-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Endpoints = s.Endpoints[1:]
	if _, err := cl.Client.DiscoveryV1().EndpointSlices(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, within, "the change in /debug/endpoints", func() bool {
		_, body := httpGet(t, "http://"+debug+"/debug/endpoints")
		return !strings.Contains(body, "198.18.0.1:8080") && strings.Contains(body, "198.18.0.2:8080")
	})
	for _, series := range []string{
		`longhaul_kubernetes_relists_total{listener="grpc"}`,
		`longhaul_kubernetes_snapshots_total{listener="grpc"}`,
	} {
		if v := metric(t, url, series); v < 1 {
			t.Errorf("%s = %v, want >= 1", series, v)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("longhaul after SIGTERM: %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Error("longhaul still running 40 s after SIGTERM")
	}
}

// endpointSliceOf is a slice of Service cart with ready endpoints at addrs
// on one named port.
func endpointSliceOf(name, port string, number int32, addrs ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: "cart"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: new(port), Port: new(number)}},
	}
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}})
	}
	return s
}
