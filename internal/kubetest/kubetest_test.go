package kubetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv("KUBETEST_ORPHAN_DIR"); dir != "" {
		orphan(dir)
		return
	}
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"))
}

func TestStartRestartStop(t *testing.T) {
	start := time.Now()
	c := Start(t)
	t.Logf("started in %v", time.Since(start))
	ctx := context.Background()
	v, err := c.Client.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != Version {
		t.Errorf("server version %q, want %q", v.GitVersion, Version)
	}
	ns := c.CreateNamespace(t, "kubetest-")
	// An open watch must not hold up the restart.
	w, err := c.Client.CoreV1().ConfigMaps(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	start = time.Now()
	c.Restart(t)
	t.Logf("restarted in %v", time.Since(start))
	// Same port, same etcd: the namespace is still there.
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		t.Fatalf("after restart: %v", err)
	}

	start = time.Now()
	c.Stop()
	t.Logf("stopped in %v", time.Since(start))
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err == nil {
		t.Fatal("API server still answers after Stop")
	}
	c.Stop() // idempotent
}

// TestChildrenDieWithTheTest starts a cluster in a child test process that
// then exits without running any cleanup (as a crash would); etcd,
// kube-apiserver and kube-controller-manager must die with it.
func TestChildrenDieWithTheTest(t *testing.T) {
	if os.Getenv("LONGHAUL_SKIP_KUBE") == "1" {
		t.Skip("LONGHAUL_SKIP_KUBE=1")
	}
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pids")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "KUBETEST_ORPHAN_DIR="+dir)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("child: %v, want exit status 3; output:\n%s", err, out)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("child wrote no pids: %v; output:\n%s", err, out)
	}
	for _, f := range strings.Fields(string(b)) {
		pid, _ := strconv.Atoi(f)
		deadline := time.Now().Add(10 * time.Second)
		for alive(pid) {
			if time.Now().After(deadline) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				t.Fatalf("process %d outlived the test process that started it", pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// orphan is the child of TestChildrenDieWithTheTest: it starts a cluster
// with kube-controller-manager in dir, writes the pids to dir/pids and exits
// at once.
func orphan(dir string) {
	pidFile := filepath.Join(dir, "pids")
	tb := &fakeTB{dir: filepath.Join(dir, "cluster")}
	c := Start(tb)
	c.StartControllerManager(tb)
	pids := fmt.Sprintf("%d %d %d\n", c.etcd.cmd.Process.Pid, c.apiserver.cmd.Process.Pid, c.kcm.cmd.Process.Pid)
	if err := os.WriteFile(pidFile, []byte(pids), 0o600); err != nil {
		os.Exit(1)
	}
	os.Exit(3) // no cleanup
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) state ...
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// fakeTB is enough of a testing.TB for Start outside a test.
type fakeTB struct {
	testing.TB
	dir string
}

func (f *fakeTB) Helper()                   {}
func (f *fakeTB) Cleanup(func())            {}
func (f *fakeTB) Failed() bool              { return false }
func (f *fakeTB) Logf(string, ...any)       {}
func (f *fakeTB) Skip(args ...any)          { fmt.Fprintln(os.Stderr, args...); os.Exit(4) }
func (f *fakeTB) Fatal(args ...any)         { fmt.Fprintln(os.Stderr, args...); os.Exit(2) }
func (f *fakeTB) Fatalf(s string, a ...any) { fmt.Fprintf(os.Stderr, s+"\n", a...); os.Exit(2) }
func (f *fakeTB) TempDir() string {
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		f.Fatal(err)
	}
	return f.dir
}

// TestControllerManager: with kube-controller-manager running, a new
// namespace gets its default service account (with a token the API server
// accepts: the signing key is shared) and a Deployment gets a ReplicaSet and
// pods.
func TestControllerManager(t *testing.T) {
	c := Start(t)
	start := time.Now()
	c.StartControllerManager(t)
	t.Logf("kube-controller-manager healthy in %v", time.Since(start))
	ctx := context.Background()
	ns := c.CreateNamespace(t, "kcm-")
	poll(t, "default service account", func() error {
		_, err := c.Client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	poll(t, "kube-root-ca.crt", func() error {
		_, err := c.Client.CoreV1().ConfigMaps(ns).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		return err
	})
	// A token for the service account, signed by the API server with the
	// key the controller manager shares, authenticates.
	tr, err := c.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "default", &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(c.Config)
	cfg.BearerToken = tr.Status.Token
	sa, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ssr, err := sa.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("self subject review with the service account token: %v", err)
	}
	if want := "system:serviceaccount:" + ns + ":default"; ssr.Status.UserInfo.Username != want {
		t.Errorf("token authenticates as %q, want %q", ssr.Status.UserInfo.Username, want)
	}

	replicas := int32(2)
	labels := map[string]string{"app": "x"}
	_, err = c.Client.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "x"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "none"}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	poll(t, "2 pods of the Deployment", func() error {
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=x"})
		if err != nil {
			return err
		}
		if len(pods.Items) != 2 {
			return fmt.Errorf("%d pods", len(pods.Items))
		}
		return nil
	})
}

// poll calls f until it returns nil, failing the test after a minute.
func poll(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
