package podrunner

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/dynamicpb"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/longhaul-proxy/longhaul/internal/kubetest"
	"github.com/longhaul-proxy/longhaul/internal/netns"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"))
}

// TestRunner runs a Deployment through the runner against a real API
// server and controller manager: its pods are bound, run and published in
// the Service's EndpointSlice, answer the echo JSON naming themselves, are
// scaled and replaced by a rolling update (the old ones terminating, and
// still serving, in the slice meanwhile), and leave no network namespace or
// veth behind once the Deployment is deleted. Then a bare pod serves HTTPS
// with the certificate of its secret volume (checkTLSPod).
func TestRunner(t *testing.T) {
	if err := netns.Check(); err != nil {
		t.Skipf("the pod runner makes network namespaces: %v", err)
	}
	begin := time.Now()
	c := kubetest.Start(t)
	c.StartControllerManager(t)
	t.Logf("cluster up in %v", time.Since(begin).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r, err := Start(ctx, c.Client, Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Stop()
		assertNoLeak(t, r)
	})
	ns := c.CreateNamespace(t, "podrunner-")
	cs := c.Client

	labels := map[string]string{"app": "echo"}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(3000)}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	replicas, grace := int32(2), int64(2)
	zero, one := intstr.FromInt32(0), intstr.FromInt32(1)
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{
				Type:          appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &zero, MaxSurge: &one},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: &grace,
					Containers: []corev1.Container{{
						Name:  "echo",
						Image: "registry.k8s.io/gateway-api/conformance/echo-basic:v0.1.0",
						Env: []corev1.EnvVar{
							{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
							{Name: "NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
							{Name: "SERVICE_NAME", Value: "echo"},
						},
					}},
				},
			},
		},
	}
	step := time.Now()
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	first := waitEndpoints(t, ctx, cs, ns, 2, nil, nil)
	t.Logf("2 ready endpoints %v after %v", first, time.Since(step).Round(time.Millisecond))
	for pod, addr := range first {
		checkStatus(t, ctx, cs, ns, pod, addr, r.NodeName())
		e := get(t, "http://"+netip.AddrPortFrom(addr, 3000).String()+"/a//b?q=1", http.Header{"X-Test": {pod}})
		if e.Pod != pod || e.Namespace != ns || e.Service != "echo" || e.Path != "/a//b?q=1" ||
			e.Method != "GET" || e.Proto != "HTTP/1.1" || e.HTTPPort != "3000" || !slices.Equal(e.Headers["X-Test"], []string{pod}) {
			t.Errorf("echo from %s at %v: %+v", pod, addr, e)
		}
		h2 := getH2C(t, "http://"+netip.AddrPortFrom(addr, 3001).String()+"/h2c")
		if h2.Pod != pod || h2.Proto != "HTTP/2.0" {
			t.Errorf("h2c echo from %s: %+v", pod, h2)
		}
	}

	step = time.Now()
	scale, err := cs.AppsV1().Deployments(ns).GetScale(ctx, "echo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = 3
	if _, err := cs.AppsV1().Deployments(ns).UpdateScale(ctx, "echo", scale, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	old := waitEndpoints(t, ctx, cs, ns, 3, nil, nil)
	t.Logf("scaled to 3 in %v", time.Since(step).Round(time.Millisecond))

	// Rolling update: a new template replaces every pod, one at a time.
	step = time.Now()
	patch := `{"spec":{"template":{"metadata":{"labels":{"version":"2"}}}}}`
	if _, err := cs.AppsV1().Deployments(ns).Patch(ctx, "echo", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	terminating := map[string]bool{}
	onTerminating := func(pod string, addr netip.Addr) {
		if _, isOld := old[pod]; !isOld || terminating[pod] {
			return
		}
		terminating[pod] = true
		// A terminating pod keeps serving through its grace period.
		if e := get(t, "http://"+netip.AddrPortFrom(addr, 3000).String()+"/", nil); e.Pod != pod {
			t.Errorf("terminating %s answered as %q", pod, e.Pod)
		}
	}
	next := waitEndpoints(t, ctx, cs, ns, 3, old, onTerminating)
	for pod := range next {
		if _, isOld := old[pod]; isOld {
			t.Errorf("pod %s of the old template still an endpoint after the rollout", pod)
		}
	}
	for pod := range old {
		if !terminating[pod] {
			t.Errorf("old pod %s never seen terminating in the EndpointSlice", pod)
		}
	}
	t.Logf("rolled out in %v: %d old pods seen terminating", time.Since(step).Round(time.Millisecond), len(terminating))

	step = time.Now()
	if err := cs.AppsV1().Deployments(ns).Delete(ctx, "echo", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	kubetest.Poll(t, ctx, "pods gone", func() error {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(pods.Items) > 0 || r.Running() > 0 {
			return fmt.Errorf("%d pods in the API, %d running", len(pods.Items), r.Running())
		}
		return nil
	})
	t.Logf("deleted in %v", time.Since(step).Round(time.Millisecond))
	assertNoLeak(t, r)

	step = time.Now()
	checkTLSPod(t, ctx, cs, ns, r)
	t.Logf("TLS and gRPC pods checked in %v", time.Since(step).Round(time.Millisecond))
	step = time.Now()
	checkL4Pods(t, ctx, cs, ns, r)
	t.Logf("TCP and UDP pods checked in %v", time.Since(step).Round(time.Millisecond))
	assertNoLeak(t, r)
	t.Logf("test took %v", time.Since(begin).Round(time.Millisecond))
}

// checkTLSPod runs a pod as the conformance suite's TLS backends are
// configured (a secret volume, TLS_SERVER_CERT and TLS_SERVER_PRIVKEY) and
// checks that it serves HTTPS with that certificate over HTTP/2 and echoes
// the TLS state, then deletes it; then the same for a gRPC backend, in
// plaintext and over TLS.
func checkTLSPod(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns string, r *Runner) {
	t.Helper()
	certPEM, keyPEM, pool := selfSigned(t, "tls.example.com")
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "tls-cert"},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	grace := int64(1)
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "tls-backend"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &grace,
			Volumes: []corev1.Volume{{Name: "secret-volume", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: "tls-cert",
				Items:      []corev1.KeyToPath{{Key: corev1.TLSCertKey, Path: "crt"}, {Key: corev1.TLSPrivateKeyKey, Path: "key"}},
			}}}},
			Containers: []corev1.Container{{
				Name:         "tls-backend",
				Image:        "registry.k8s.io/gateway-api/conformance/echo-basic:v0.1.0",
				VolumeMounts: []corev1.VolumeMount{{Name: "secret-volume", MountPath: "/etc/secret-volume"}},
				Env: []corev1.EnvVar{
					{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
					{Name: "NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
					{Name: "TLS_SERVER_CERT", Value: "/etc/secret-volume/crt"},
					{Name: "TLS_SERVER_PRIVKEY", Value: "/etc/secret-volume/key"},
				},
			}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ip := runningIP(t, ctx, cs, ns, "tls-backend")
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "tls.example.com"}, ForceAttemptHTTP2: true}
	e := roundTrip(t, tr, "https://"+net.JoinHostPort(ip, "8443")+"/secure", nil)
	if e.Pod != "tls-backend" || e.Namespace != ns || e.Proto != "HTTP/2.0" || e.TLS == nil ||
		e.TLS.ServerName != "tls.example.com" || e.TLS.Version != "TLSv1.3" || e.TLS.NegotiatedProtocol != "h2" || e.TLS.CipherSuite == "" {
		t.Errorf("TLS echo: %+v (tls %+v)", e, e.TLS)
	}
	deletePods(t, ctx, cs, ns, r, "tls-backend")

	// A gRPC backend as the suite's grpc-infra-backend-v1: plaintext on
	// 3000, TLS on 8443 (its key variable is TLS_SERVER_PRIV_KEY).
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "grpc-backend"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &grace,
			Volumes: []corev1.Volume{{Name: "secret-volume", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: "tls-cert",
				Items:      []corev1.KeyToPath{{Key: corev1.TLSCertKey, Path: "crt"}, {Key: corev1.TLSPrivateKeyKey, Path: "key"}},
			}}}},
			Containers: []corev1.Container{{
				Name:         "grpc-backend",
				Image:        "registry.k8s.io/gateway-api/conformance/echo-basic:v0.1.0",
				VolumeMounts: []corev1.VolumeMount{{Name: "secret-volume", MountPath: "/etc/secret-volume"}},
				Env: []corev1.EnvVar{
					{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
					{Name: "NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
					{Name: "GRPC_ECHO_SERVER", Value: "1"},
					{Name: "TLS_SERVER_CERT", Value: "/etc/secret-volume/crt"},
					{Name: "TLS_SERVER_PRIV_KEY", Value: "/etc/secret-volume/key"},
				},
			}},
		},
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ip = runningIP(t, ctx, cs, ns, "grpc-backend")
	reqDesc, respDesc := echoSchema(t)
	for _, creds := range []credentials.TransportCredentials{
		insecure.NewCredentials(),
		credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "tls.example.com"}),
	} {
		port := "3000"
		if creds.Info().SecurityProtocol == "tls" {
			port = "8443"
		}
		conn, err := grpc.NewClient(net.JoinHostPort(ip, port), grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		resp := dynamicpb.NewMessage(respDesc)
		err = conn.Invoke(ctx, "/"+GRPCEchoService+"/Echo", dynamicpb.NewMessage(reqDesc), resp)
		conn.Close()
		if err != nil {
			t.Fatalf("gRPC Echo on port %s: %v", port, err)
		}
		a := resp.Get(respDesc.Fields().ByName("assertions")).Message()
		ad := a.Descriptor()
		c := a.Get(ad.Fields().ByName("context")).Message()
		if got := c.Get(c.Descriptor().Fields().ByName("pod")).String(); got != "grpc-backend" {
			t.Errorf("gRPC echo on port %s from pod %q", port, got)
		}
		if tlsOn := a.Has(ad.Fields().ByName("tls_assertions")); tlsOn != (port == "8443") {
			t.Errorf("gRPC echo on port %s: tls_assertions present %v", port, tlsOn)
		} else if tlsOn {
			ta := a.Get(ad.Fields().ByName("tls_assertions")).Message()
			if got := ta.Get(ta.Descriptor().Fields().ByName("server_name")).String(); got != "tls.example.com" {
				t.Errorf("gRPC TLS server_name %q", got)
			}
		}
	}
	deletePods(t, ctx, cs, ns, r, "grpc-backend")
}

// checkStatus checks what the runner reported of pod name: bound to node,
// Running at addr, every condition a kubelet sets true, its container ready.
func checkStatus(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns, name string, addr netip.Addr, node string) {
	t.Helper()
	p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := p.Status
	if p.Spec.NodeName != node || s.Phase != corev1.PodRunning || s.PodIP != addr.String() ||
		len(s.PodIPs) != 1 || s.PodIPs[0].IP != addr.String() || s.StartTime == nil {
		t.Errorf("pod %s: node %q, status %+v", name, p.Spec.NodeName, s)
	}
	conds := map[corev1.PodConditionType]corev1.ConditionStatus{}
	for _, c := range s.Conditions {
		conds[c.Type] = c.Status
	}
	for _, typ := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		if conds[typ] != corev1.ConditionTrue {
			t.Errorf("pod %s: condition %s is %q", name, typ, conds[typ])
		}
	}
	if len(s.ContainerStatuses) != 1 || !s.ContainerStatuses[0].Ready || s.ContainerStatuses[0].State.Running == nil {
		t.Errorf("pod %s: container statuses %+v", name, s.ContainerStatuses)
	}
}

// checkL4Pods runs a TCP echo pod and a UDP echo pod as the suite
// configures them, talks to each from the host, and deletes them.
func checkL4Pods(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns string, r *Runner) {
	t.Helper()
	grace := int64(1)
	for name, mode := range map[string]string{"tcp-backend": "TCP_ECHO_SERVER", "udp-backend": "UDP_ECHO_SERVER"} {
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: &grace,
				Containers: []corev1.Container{{
					Name:  name,
					Image: "registry.k8s.io/gateway-api/conformance/echo-basic:v0.1.0",
					Env: []corev1.EnvVar{
						{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
						{Name: "NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
						{Name: mode, Value: "1"},
					},
				}},
			},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	c, err := net.DialTimeout("tcp", net.JoinHostPort(runningIP(t, ctx, cs, ns, "tcp-backend"), "3000"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	welcome, _ := br.ReadString('\n')
	fmt.Fprint(c, "TEST\n")
	line, err := br.ReadString('\n')
	c.Close()
	var te TCPEcho
	if welcome != TCPWelcome || err != nil || json.Unmarshal([]byte(line), &te) != nil || te.Pod != "tcp-backend" || te.Namespace != ns || te.IsTLS {
		t.Errorf("TCP echo: welcome %q, TEST answered %q (%v)", welcome, line, err)
	}

	u, err := net.Dial("udp", net.JoinHostPort(runningIP(t, ctx, cs, ns, "udp-backend"), "8080"))
	if err != nil {
		t.Fatal(err)
	}
	u.SetDeadline(time.Now().Add(10 * time.Second))
	u.Write([]byte("ping"))
	buf := make([]byte, 2048)
	n, err := u.Read(buf)
	u.Close()
	var ue UDPEcho
	if err != nil || json.Unmarshal(buf[:n], &ue) != nil || ue.Request != "ping" || ue.Pod != "udp-backend" || ue.Namespace != ns {
		t.Errorf("UDP echo: %q (%v)", buf[:n], err)
	}

	deletePods(t, ctx, cs, ns, r, "tcp-backend", "udp-backend")
}

// runningIP waits until pod name runs and returns its IP.
func runningIP(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns, name string) string {
	t.Helper()
	var ip string
	kubetest.Poll(t, ctx, name+" running", func() error {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
			return fmt.Errorf("phase %q, IP %q", p.Status.Phase, p.Status.PodIP)
		}
		ip = p.Status.PodIP
		return nil
	})
	return ip
}

// deletePods deletes the named pods gracefully and waits until they are
// gone from the API and the runner runs nothing.
func deletePods(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns string, r *Runner, names ...string) {
	t.Helper()
	for _, name := range names {
		if err := cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	kubetest.Poll(t, ctx, fmt.Sprintf("%v gone", names), func() error {
		for _, name := range names {
			if _, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
				return fmt.Errorf("%s still there", name)
			}
		}
		if r.Running() > 0 {
			return fmt.Errorf("%d pods still running", r.Running())
		}
		return nil
	})
}

// selfSigned returns a self-signed certificate for name, its key, and a
// pool trusting it.
func selfSigned(t *testing.T, name string) (certPEM, keyPEM []byte, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), pool
}

// waitEndpoints waits until the Service echo's EndpointSlices hold exactly
// n endpoints, all ready, none terminating and none of a pod in old, and
// returns them by pod name. It calls onTerminating for each terminating
// endpoint it sees meanwhile.
func waitEndpoints(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns string, n int, old map[string]netip.Addr, onTerminating func(pod string, addr netip.Addr)) map[string]netip.Addr {
	t.Helper()
	var ready map[string]netip.Addr
	kubetest.Poll(t, ctx, fmt.Sprintf("%d ready endpoints", n), func() error {
		slices, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=echo"})
		if err != nil {
			return err
		}
		ready = map[string]netip.Addr{}
		total := 0
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				total++
				if e.TargetRef == nil || len(e.Addresses) == 0 {
					continue
				}
				addr, err := netip.ParseAddr(e.Addresses[0])
				if err != nil {
					return err
				}
				if e.Conditions.Terminating != nil && *e.Conditions.Terminating {
					if onTerminating != nil {
						onTerminating(e.TargetRef.Name, addr)
					}
					continue
				}
				if _, isOld := old[e.TargetRef.Name]; !isOld && e.Conditions.Ready != nil && *e.Conditions.Ready {
					ready[e.TargetRef.Name] = addr
				}
			}
		}
		if len(ready) != n || total != n {
			return fmt.Errorf("%d ready of %d endpoints", len(ready), total)
		}
		return nil
	})
	return ready
}

func get(t *testing.T, url string, h http.Header) Echo {
	t.Helper()
	return roundTrip(t, http.DefaultTransport.(*http.Transport).Clone(), url, h)
}

func getH2C(t *testing.T, url string) Echo {
	t.Helper()
	protos := new(http.Protocols)
	protos.SetUnencryptedHTTP2(true)
	return roundTrip(t, &http.Transport{Protocols: protos}, url, nil)
}

func roundTrip(t *testing.T, tr *http.Transport, url string, h http.Header) Echo {
	t.Helper()
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	maps := req.Header
	for k, v := range h {
		maps[k] = v
	}
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET %s: %s %v %q: %s", url, resp.Status, err, resp.Header.Get("Content-Type"), body)
	}
	var e Echo
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, body)
	}
	return e
}

// assertNoLeak fails the test if any namespace or veth of the runner is
// left.
func assertNoLeak(t *testing.T, r *Runner) {
	t.Helper()
	names, err := netns.List(r.NamespacePrefix())
	if err != nil {
		t.Error(err)
	}
	links, err := netns.Links(r.LinkPrefix())
	if err != nil {
		t.Error(err)
	}
	if len(names) > 0 || len(links) > 0 {
		t.Errorf("left behind: network namespaces %v, links %v", names, links)
	}
}
