package kubetest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Controllers are the kube-controller-manager controllers that
// StartControllerManager runs: what Deployments, Services and namespaces
// need, and nothing that watches node health (no node lifecycle, so pods on
// a node without a kubelet are never evicted).
var Controllers = []string{
	"deployment-controller",
	"replicaset-controller",
	"endpointslice-controller",
	"endpointslice-mirroring-controller",
	"namespace-controller",
	"serviceaccount-controller",
	"serviceaccount-token-controller",
	"garbage-collector-controller",
	"root-ca-certificate-publisher-controller",
}

// StartControllerManager starts kube-controller-manager against the cluster
// and waits until it is healthy. It runs Controllers only, without leader
// election, as a member of system:masters, and signs service account tokens
// with the API server's key. It is stopped by Stop (before the API server)
// and, like the other processes, dies with the test binary. Its log is
// Dir/kube-controller-manager.log.
func (c *Cluster) StartControllerManager(t testing.TB) {
	t.Helper()
	if fi, err := os.Stat(filepath.Join(c.bin, "kube-controller-manager")); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("kubetest: kube-controller-manager not found in %s: rebuild with hack/kube-binaries.sh "+
			"(it builds kube-controller-manager too) and point LONGHAUL_KUBE_BIN at the directory it prints", c.bin)
	}
	kubeconfig := c.WriteKubeconfig(t, "controller-manager.kubeconfig")
	const attempts = 3
	var err error
	for i := range attempts {
		if err = c.startControllerManager(kubeconfig); err == nil {
			return
		}
		c.mu.Lock()
		p := c.kcm
		c.kcm = nil
		c.mu.Unlock()
		if p != nil {
			p.stop(time.Second)
		}
		t.Logf("kubetest: kube-controller-manager start attempt %d failed: %v", i+1, err)
	}
	t.Fatalf("kubetest: cannot start kube-controller-manager: %v", err)
}

func (c *Cluster) startControllerManager(kubeconfig string) error {
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.stopped || c.kcm != nil {
		c.mu.Unlock()
		return fmt.Errorf("cluster stopped or kube-controller-manager already running")
	}
	c.mu.Unlock()
	p, err := c.spawn("kube-controller-manager",
		"--kubeconfig="+kubeconfig,
		"--authentication-kubeconfig="+kubeconfig,
		"--authorization-kubeconfig="+kubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(ports[0]),
		"--tls-cert-file="+c.pki.servingCert,
		"--tls-private-key-file="+c.pki.servKey,
		"--controllers="+strings.Join(Controllers, ","),
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--service-account-private-key-file="+c.pki.saKey,
		"--root-ca-file="+c.pki.caCert,
		"--profiling=false",
		"--v=1",
	)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.kcm = p
	c.mu.Unlock()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.pki.caPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: tr}
	return waitHealthy(p, hc, "https://127.0.0.1:"+strconv.Itoa(ports[0])+"/healthz", "kube-controller-manager")
}

// WriteKubeconfig writes a kubeconfig file for Config (the administrator,
// a member of system:masters) as Dir/name, for programs that read one
// (kube-controller-manager, longhaul's --kubeconfig), and returns its path.
// The file names the API server's current port: write it after Start.
func (c *Cluster) WriteKubeconfig(t testing.TB, name string) string {
	t.Helper()
	path := filepath.Join(c.Dir, name)
	if err := os.WriteFile(path, c.kubeconfig(), 0o600); err != nil {
		t.Fatalf("kubetest: write kubeconfig: %v", err)
	}
	return path
}

// kubeconfig is a kubeconfig file for Config (the administrator).
func (c *Cluster) kubeconfig() []byte {
	b64 := base64.StdEncoding.EncodeToString
	c.mu.Lock()
	host := c.Config.Host
	c.mu.Unlock()
	return []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kubetest
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: kubetest
  context:
    cluster: kubetest
    user: admin
current-context: kubetest
`, host, b64(c.pki.caPEM), b64(c.pki.adminCertPEM), b64(c.pki.adminKeyPEM)))
}
