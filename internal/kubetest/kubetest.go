// Package kubetest runs a real kube-apiserver and etcd on loopback for tests,
// and on request kube-controller-manager (StartControllerManager).
//
// The binaries are built from Go modules by hack/kube-binaries.sh (no
// container runtime is needed); Start finds them through LONGHAUL_KUBE_BIN or
// the script's default cache directory. Each Cluster has its own key
// material, ports and etcd data directory under t.TempDir().
//
// Lifetime: the processes live until Stop or the end of the test that
// started them (t.Cleanup), and they are also killed by the kernel if the
// test binary dies (PR_SET_PDEATHSIG), so a panicking test leaves nothing
// behind. Setting LONGHAUL_SKIP_KUBE=1 makes Start skip the test; without it
// missing binaries fail the test.
package kubetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Version is the Kubernetes version that hack/kube-binaries.sh builds.
const Version = "v1.37.2"

// startTimeout bounds one start of either process, until it is healthy.
// Under the race detector on two busy cores the API server takes seconds.
const startTimeout = 2 * time.Minute

// Cluster is a running etcd and kube-apiserver.
type Cluster struct {
	// Config reaches the API server as a member of system:masters. Use
	// rest.CopyConfig before changing it.
	Config *rest.Config
	// Client is a clientset built from Config.
	Client kubernetes.Interface
	// Dir holds the key material, the etcd data and both processes' logs
	// (etcd.log, kube-apiserver.log).
	Dir string

	bin     string
	pki     *pki
	spawner *spawner

	mu        sync.Mutex
	etcdPort  int // client port; its peer port is only in etcd's flags
	port      int // kube-apiserver's secure port
	etcd      *proc
	apiserver *proc
	kcm       *proc // kube-controller-manager, once StartControllerManager ran
	stopped   bool
}

// BinDir returns the directory holding kube-apiserver and etcd: the
// environment variable LONGHAUL_KUBE_BIN, or else hack/kube-binaries.sh's
// default, ${XDG_CACHE_HOME:-$HOME/.cache}/longhaul/kube-<Version>.
func BinDir() (string, error) {
	if d := os.Getenv("LONGHAUL_KUBE_BIN"); d != "" {
		return d, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no LONGHAUL_KUBE_BIN and no cache directory: %w", err)
	}
	return filepath.Join(cache, "longhaul", "kube-"+Version), nil
}

// Start starts etcd and kube-apiserver and waits until the API server is
// ready. It stops the test with t.Fatal when they cannot be started (after
// retries with fresh ports) or are missing, and with t.Skip only when
// LONGHAUL_SKIP_KUBE=1. Both processes are stopped when the test ends.
func Start(t testing.TB) *Cluster {
	t.Helper()
	if os.Getenv("LONGHAUL_SKIP_KUBE") == "1" {
		t.Skip("LONGHAUL_SKIP_KUBE=1: not starting a kube-apiserver")
	}
	bin, err := BinDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"kube-apiserver", "etcd"} {
		if fi, err := os.Stat(filepath.Join(bin, name)); err != nil || fi.Mode()&0o111 == 0 {
			t.Fatalf("kubetest: %s not found in %s. Build the real kube-apiserver and etcd with "+
				"hack/kube-binaries.sh (about 7.5 minutes the first time; `make test` runs it) and point "+
				"LONGHAUL_KUBE_BIN at the directory it prints, or set LONGHAUL_SKIP_KUBE=1 to skip these tests",
				name, bin)
		}
	}
	c := &Cluster{Dir: t.TempDir(), bin: bin, spawner: newSpawner()}
	t.Cleanup(func() {
		if t.Failed() {
			c.logTails(t)
		}
		c.Stop()
	})
	if c.pki, err = newPKI(c.Dir); err != nil {
		t.Fatalf("kubetest: key material: %v", err)
	}
	c.Config = &rest.Config{
		Host: "", // set once the port is known
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   c.pki.caPEM,
			CertData: c.pki.adminCertPEM,
			KeyData:  c.pki.adminKeyPEM,
		},
		QPS:   1000,
		Burst: 2000,
	}

	// Ports are chosen free and then handed to the processes, so another
	// process may take one in between: retry with fresh ports.
	const attempts = 3
	var errs []error
	for i := range attempts {
		err := c.start()
		if err == nil {
			break
		}
		errs = append(errs, fmt.Errorf("attempt %d: %w", i+1, err))
		c.stopProcs()
		if i == attempts-1 {
			t.Fatalf("kubetest: cannot start the cluster: %v", errors.Join(errs...))
		}
		t.Logf("kubetest: start failed, retrying with new ports: %v", err)
	}
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		t.Fatalf("kubetest: clientset: %v", err)
	}
	return c
}

// start runs etcd then kube-apiserver on fresh ports, each until healthy.
func (c *Cluster) start() error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.etcdPort, c.port = ports[0], ports[2]
	c.Config.Host = "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port))
	c.mu.Unlock()
	if err := c.startEtcd(ports[0], ports[1]); err != nil {
		return err
	}
	return c.startAPIServer()
}

func (c *Cluster) startEtcd(client, peer int) error {
	dataDir := filepath.Join(c.Dir, "etcd")
	if err := os.RemoveAll(dataDir); err != nil {
		return err
	}
	clientURL := "http://127.0.0.1:" + strconv.Itoa(client)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peer)
	p, err := c.spawn("etcd",
		"--name=kubetest",
		"--data-dir="+dataDir,
		"--listen-client-urls="+clientURL,
		"--advertise-client-urls="+clientURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=kubetest="+peerURL,
		"--initial-cluster-state=new",
		"--unsafe-no-fsync",
		"--log-level=warn",
	)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.etcd = p
	c.mu.Unlock()
	hc := &http.Client{Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	return waitHealthy(p, hc, clientURL+"/health", "etcd")
}

func (c *Cluster) startAPIServer() error {
	p, err := c.spawn("kube-apiserver",
		"--etcd-servers=http://127.0.0.1:"+strconv.Itoa(c.etcdPort),
		"--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(c.port),
		// A loopback advertise address needs the endpoint reconciler off.
		"--advertise-address=127.0.0.1",
		"--endpoint-reconciler-type=none",
		"--cert-dir="+filepath.Join(c.Dir, "certs"),
		"--tls-cert-file="+c.pki.servingCert,
		"--tls-private-key-file="+c.pki.servKey,
		"--client-ca-file="+c.pki.caCert,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+c.pki.saKey,
		"--service-account-signing-key-file="+c.pki.saKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--authorization-mode=RBAC",
		// Without it, open watches hold a graceful stop until SIGKILL:
		// the HTTP server waits for their connections to end.
		"--shutdown-watch-termination-grace-period=1s",
		"--profiling=false",
		"--v=1",
	)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.apiserver = p
	c.mu.Unlock()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.pki.caPEM)
	cert, err := tls.X509KeyPair(c.pki.adminCertPEM, c.pki.adminKeyPEM)
	if err != nil {
		return err
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: tr}
	return waitHealthy(p, hc, c.Config.Host+"/readyz", "kube-apiserver")
}

// Restart stops kube-apiserver (gracefully, as in a rollout) and starts it
// again on the same port with the same etcd, so clients see their watches
// end and must relist. It returns when the API server is ready again.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	p := c.apiserver
	c.apiserver = nil
	c.mu.Unlock()
	if p != nil {
		start := time.Now()
		killed := p.stop(10 * time.Second)
		t.Logf("kubetest: kube-apiserver stopped in %v (killed after the grace period: %v)", time.Since(start).Round(time.Millisecond), killed)
	}
	// The port was just released; should another process grab it, retry
	// for a while (the clients must find the server at the same address).
	var err error
	for range 5 {
		if err = c.startAPIServer(); err == nil {
			return
		}
		c.mu.Lock()
		p := c.apiserver
		c.apiserver = nil
		c.mu.Unlock()
		if p != nil {
			p.stop(time.Second)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("kubetest: restart kube-apiserver: %v", err)
}

// Stop stops kube-controller-manager (if started), kube-apiserver then etcd and waits for both to exit. It is
// idempotent and safe to call from a Cleanup after a panic.
func (c *Cluster) Stop() {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	c.stopped = true
	c.mu.Unlock()
	c.stopProcs()
	c.spawner.close()
}

func (c *Cluster) stopProcs() {
	c.mu.Lock()
	kcm, api, etcd := c.kcm, c.apiserver, c.etcd
	c.kcm, c.apiserver, c.etcd = nil, nil, nil
	c.mu.Unlock()
	if kcm != nil {
		kcm.stop(5 * time.Second)
	}
	if api != nil {
		api.stop(10 * time.Second)
	}
	if etcd != nil {
		etcd.stop(5 * time.Second)
	}
}

// CreateNamespace creates a namespace named prefix plus a random suffix and
// returns its name. It is not deleted: the cluster is thrown away whole.
func (c *Cluster) CreateNamespace(t testing.TB, prefix string) string {
	t.Helper()
	ns, err := c.Client.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace %s*: %v", prefix, err)
	}
	return ns.Name
}

// logTails writes the end of the processes' logs to the test log.
func (c *Cluster) logTails(t testing.TB) {
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
		if _, err := os.Stat(filepath.Join(c.Dir, name+".log")); err != nil {
			continue
		}
		t.Logf("kubetest: last lines of %s.log:\n%s", name, tail(filepath.Join(c.Dir, name+".log"), 40))
	}
}

// proc is one running process and its exit.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited
	err  error         // its exit status, once done is closed
	log  string
}

// spawn starts bin/name with args, appending its output to Dir/name.log.
func (c *Cluster) spawn(name string, args ...string) (*proc, error) {
	logPath := filepath.Join(c.Dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "=== %s %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Dir = c.Dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := c.spawner.start(cmd); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// stop sends SIGTERM, waits up to grace, then kills; it returns once the
// process has exited, and whether it had to be killed.
func (p *proc) stop(grace time.Duration) (killed bool) {
	select {
	case <-p.done:
		return false
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return false
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return true
	}
}

// waitHealthy polls url until it answers 200, the process exits, or
// startTimeout passes.
func waitHealthy(p *proc, hc *http.Client, url, what string) error {
	deadline := time.Now().Add(startTimeout)
	var last string
	for {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited during startup (%v); last lines of %s:\n%s", what, p.err, p.log, tail(p.log, 20))
		default:
		}
		resp, err := hc.Get(url)
		if err == nil {
			body := make([]byte, 512)
			n, _ := resp.Body.Read(body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(body[:n]))
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not healthy after %v (last: %s); last lines of %s:\n%s", what, startTimeout, last, p.log, tail(p.log, 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freePorts returns n distinct ports that were free on 127.0.0.1 a moment
// ago.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// spawner starts processes from one OS thread that stays alive until every
// process it started has been stopped. The kernel's parent-death signal
// (Pdeathsig) fires when the thread that forked a child exits, not the
// process, so starting children from arbitrary goroutines would let the Go
// runtime's thread churn kill them early; a locked thread cannot be reused
// or retired under them.
type spawner struct {
	reqs chan spawnReq
	once sync.Once
}

type spawnReq struct {
	cmd *exec.Cmd
	err chan error
}

func newSpawner() *spawner {
	s := &spawner{reqs: make(chan spawnReq)}
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: when this goroutine returns, the thread exits
		// with it, which is fine once no child is left.
		for r := range s.reqs {
			r.err <- r.cmd.Start()
		}
	}()
	return s
}

func (s *spawner) start(cmd *exec.Cmd) error {
	r := spawnReq{cmd: cmd, err: make(chan error, 1)}
	s.reqs <- r
	return <-r.err
}

// close ends the spawner's thread; call it only after every child exited.
func (s *spawner) close() { s.once.Do(func() { close(s.reqs) }) }

// Poll calls f every 50ms until it returns nil, failing the test (with
// what and f's last error) when ctx ends first: for states of the API
// server that no watch in the test is there to announce.
func Poll(t testing.TB, ctx context.Context, what string, f func() error) {
	t.Helper()
	for {
		err := f()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v (%v)", what, err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
