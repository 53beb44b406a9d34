package rollout_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/discovery"
	"github.com/longhaul-proxy/longhaul/discovery/kube"
	"github.com/longhaul-proxy/longhaul/internal/app"
	"github.com/longhaul-proxy/longhaul/internal/kubetest"
)

// TestRollingReplacementKubernetes is the rolling replacement with the
// pods' endpoints published as EndpointSlices in a real kube-apiserver,
// one slice per pod and Service, with the conditions the slice controller
// sets during a rollout. The API server refuses loopback addresses in
// slices, so each pod is advertised with an address from 192.0.2.0/24
// (TEST-NET-1) and longhaul's dialer maps it to the pod's loopback
// listener: nothing is sent to 192.0.2.x.
func TestRollingReplacementKubernetes(t *testing.T) {
	rollingReplacement(t, "", newSliceSource(t))
}

// sliceSource publishes pods as EndpointSlices, one per pod and listener
// (each pod listens on its own loopback ports, and a slice has one port
// list), labelled with the listener's name as the Service's.
type sliceSource struct {
	t       *testing.T
	c       *kubetest.Cluster
	ns      string
	ips     int             // advertised addresses handed out
	current map[string]bool // slices that exist
}

const advertisedNet = "192.0.2."

func newSliceSource(t *testing.T) *sliceSource {
	c := kubetest.Start(t)
	s := &sliceSource{t: t, c: c, ns: c.CreateNamespace(t, "rollout"), current: map[string]bool{}}
	// Pods need the namespace's default service account (no controller
	// manager makes it here).
	if _, err := c.Client.CoreV1().ServiceAccounts(s.ns).Create(context.Background(), &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "default"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("default service account: %v", err)
	}
	return s
}

func (s *sliceSource) path(l string) string { return "kubernetes:" + l }

// revisions is true: each pod with a revision has a Pod object labelled
// with it (pod-template-hash), which the kubernetes source reads while an
// endpoint is terminating.
func (s *sliceSource) revisions() bool { return true }

func (s *sliceSource) rewrite(yaml string) string {
	for _, l := range listeners {
		yaml = strings.Replace(yaml, fmt.Sprintf("endpoints: {file: %q}", s.path(l)),
			fmt.Sprintf("endpoints: {kubernetes: {namespace: %s, service: %s, port: p}}", s.ns, l), 1)
	}
	return yaml
}

func (s *sliceSource) options() app.Options {
	d := net.Dialer{KeepAlive: -1}
	return app.Options{
		Kubernetes: func(l config.Listener, log *zap.Logger) (discovery.Source, error) {
			k := l.Endpoints.Kubernetes
			return kube.New(kube.Config{Client: s.c.Client, Namespace: k.Namespace, Service: k.Service, Port: k.Port, Logger: log})
		},
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil || !strings.HasPrefix(host, advertisedNet) {
				return nil, fmt.Errorf("dial %s: not a test pod's address", addr)
			}
			return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
		},
	}
}

func (s *sliceSource) write(pods []*pod, terminating map[*pod]bool) {
	s.t.Helper()
	ctx := context.Background()
	api := s.c.Client.DiscoveryV1().EndpointSlices(s.ns)
	want := map[string]*discoveryv1.EndpointSlice{}
	for _, p := range pods {
		if p.advertised == "" {
			s.ips++
			p.advertised = advertisedNet + strconv.Itoa(s.ips)
			s.createPod(p)
		}
		ready, serving, term := true, true, false
		if terminating[p] {
			ready, term = false, true
		}
		for _, l := range listeners {
			_, ps, _ := net.SplitHostPort(podAddr(p, l))
			port, _ := strconv.Atoi(ps)
			name, proto := "p", corev1.ProtocolTCP
			want[l+"-"+p.name] = &discoveryv1.EndpointSlice{
				ObjectMeta:  metav1.ObjectMeta{Name: l + "-" + p.name, Labels: map[string]string{discoveryv1.LabelServiceName: l}},
				AddressType: discoveryv1.AddressTypeIPv4,
				Endpoints: []discoveryv1.Endpoint{{
					Addresses:  []string{p.advertised},
					Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &term},
					TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: s.ns, Name: p.name},
				}},
				Ports: []discoveryv1.EndpointPort{{Name: &name, Port: ptr(int32(port)), Protocol: &proto}},
			}
		}
	}
	for name, es := range want {
		cur, err := api.Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = api.Create(ctx, es, metav1.CreateOptions{})
		case err == nil:
			es.ResourceVersion = cur.ResourceVersion
			_, err = api.Update(ctx, es, metav1.UpdateOptions{})
		}
		if err != nil {
			s.t.Fatalf("EndpointSlice %s: %v", name, err)
		}
		s.current[name] = true
	}
	for name := range s.current {
		if want[name] == nil {
			if err := api.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				s.t.Fatalf("delete EndpointSlice %s: %v", name, err)
			}
			delete(s.current, name)
		}
	}
}

// createPod makes p's Pod object, labelled with its revision as a
// Deployment's ReplicaSet labels its pods, when it has one. Nothing
// schedules or runs it: the kubernetes source only reads its labels.
func (s *sliceSource) createPod(p *pod) {
	s.t.Helper()
	if p.revision == "" {
		return
	}
	_, err := s.c.Client.CoreV1().Pods(s.ns).Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.name, Labels: map[string]string{"app": "rollout", "pod-template-hash": p.revision}},
		Spec: corev1.PodSpec{
			NodeName:                     "node-1",
			AutomountServiceAccountToken: ptr(false),
			Containers:                   []corev1.Container{{Name: "app", Image: "app:" + p.revision}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		s.t.Fatalf("pod %s: %v", p.name, err)
	}
}

func ptr[T any](v T) *T { return &v }
