// Package podrunner is a stand-in for a kubelet and a scheduler, for tests
// against a real API server on a machine without a container runtime. It
// registers one Node, binds every pending pod of the default scheduler to
// it, and runs each pod bound to it as echo servers (EchoHandler) in a
// network namespace of the pod's own, with an address from 198.18.0.0/15
// that the test's namespace reaches over a veth pair (internal/netns). It
// then reports the pod Running and ready, so that the EndpointSlice
// controller publishes it.
//
// Each container of a pod is one echo server, whatever its image, with the
// identity its environment gives (POD_NAME, NAMESPACE, SERVICE_NAME,
// INGRESS_NAME: values and the downward API's metadata.name,
// metadata.namespace, metadata.uid, spec.nodeName, spec.serviceAccountName,
// status.podIP, status.hostIP) listening on HTTP_PORT (default 3000, HTTP/1.1
// and h2c, with a WebSocket echo at WebSocketPath whose sessions end with
// the pod) and H2C_PORT (default 3001, h2c only), and, when
// TLS_SERVER_CERT and TLS_SERVER_PRIVKEY name files of the pod's Secret or
// ConfigMap volumes, on HTTPS_PORT (default 8443, TLS with HTTP/1.1 and
// HTTP/2; client certificates verified against TLS_CLIENT_CACERTS if set).
// A container with GRPC_ECHO_SERVER set is a gRPC echo (NewGRPCEcho)
// instead, on HTTP_PORT and, with TLS_SERVER_CERT and TLS_SERVER_PRIV_KEY,
// over TLS on HTTPS_PORT; one with TCP_ECHO_SERVER a TCP echo (TCPWelcome,
// then TEST, IS_TLS, PING) on TCP_PORT (default 3000) and, with
// TLS_SERVER_CERT and TLS_SERVER_PRIV_KEY, over TLS on TLS_PORT (default
// 8443); one with UDP_ECHO_SERVER a UDP echo (each datagram answered with
// the UDPEcho JSON) on UDP_PORT (default 8080). Probes, resources and images
// are ignored.
//
// A pod being deleted keeps serving until its deletion grace period ends
// (or Options.MaxGrace, if shorter), and is then stopped, its namespace
// removed and the pod deleted with grace 0, as a kubelet does.
//
// Goroutines: the informer's; one worker that owns all pod state (the map
// of running pods and the address slots), event handlers only enqueuing pod
// keys; and one per echo server (its Serve and its connections'), ended when
// the worker tears the pod down. Stop ends the informer and the worker and
// then tears down whatever still runs; the Node and the pods stay in the
// API. Nothing heartbeats the Node: without the node lifecycle controller
// (kubetest does not run it) nothing marks it unhealthy or evicts its pods.
package podrunner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/longhaul-proxy/longhaul/internal/netns"
)

// Options configure a Runner. The zero value is usable.
type Options struct {
	// NodeName is the Node to register; default podrunner-<random id>.
	NodeName string
	// Subnet is the part of 198.18.0.0/15 that pod addresses come from, a
	// /30 each (netns.SlotsIn: 63 pods at a time in a /24, 255 in a /22);
	// default a /24 that no interface uses.
	Subnet netip.Prefix
	// MaxGrace, if positive, caps how long a deleted pod keeps serving.
	MaxGrace time.Duration
	// Logf, if set, receives what the runner does (binds, starts, stops).
	Logf func(format string, args ...any)
}

// Runner runs the pods bound to its Node. Start it with Start; Stop it.
type Runner struct {
	client kubernetes.Interface
	node   string
	run    string // random id in every namespace and link name
	subnet netip.Prefix
	opts   Options

	factory informers.SharedInformerFactory
	pods    corelisters.PodLister
	queue   workqueue.TypedRateLimitingInterface[string]
	cancel  context.CancelFunc
	done    chan struct{} // closed when the worker has returned
	working bool          // the worker was started (set before Start returns)
	stop    sync.Once

	// Owned by the worker goroutine, then by Stop once the worker is done.
	running map[string]*pod // by namespace/name
	slots   []bool          // by slot of subnet (netns.Slot): taken

	mu    sync.Mutex
	count int // len(running), for Running
}

// pod is one running pod.
type pod struct {
	uid     types.UID
	slot    int
	host    *netns.Host
	stops   []func() // close each of its servers
	started metav1.Time
	doomed  time.Time // when the runner first saw its deletion; zero before
}

// Start registers the Node and starts running pods. It returns once the
// informer has synced.
func Start(ctx context.Context, client kubernetes.Interface, opts Options) (*Runner, error) {
	if err := netns.Check(); err != nil {
		return nil, err
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	r := &Runner{
		client:  client,
		run:     hex.EncodeToString(b[:2]),
		subnet:  opts.Subnet,
		opts:    opts,
		done:    make(chan struct{}),
		running: map[string]*pod{},
	}
	r.node = opts.NodeName
	if r.node == "" {
		r.node = "podrunner-" + r.run
	}
	if !r.subnet.IsValid() {
		var err error
		if r.subnet, err = netns.FreeSubnet(uint16(b[2])<<8 | uint16(b[3])); err != nil {
			return nil, err
		}
	}
	r.subnet = r.subnet.Masked()
	if !netns.Benchmark.Contains(r.subnet.Addr()) || r.subnet.Bits() < netns.Benchmark.Bits() || netns.SlotsIn(r.subnet) == 0 {
		return nil, fmt.Errorf("subnet %v: not a prefix of %v with room for a /30", r.subnet, netns.Benchmark)
	}
	r.slots = make([]bool, netns.SlotsIn(r.subnet))
	if err := r.registerNode(ctx); err != nil {
		return nil, fmt.Errorf("register node %s: %w", r.node, err)
	}

	r.factory = informers.NewSharedInformerFactory(client, 0)
	inf := r.factory.Core().V1().Pods()
	r.pods = inf.Lister()
	r.queue = workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			r.queue.Add(key)
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.factory.Start(wctx.Done())
	for typ, ok := range r.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			r.Stop()
			return nil, fmt.Errorf("informer for %v did not sync", typ)
		}
	}
	r.working = true
	go r.work(wctx)
	return r, nil
}

// NodeName is the name of the runner's Node.
func (r *Runner) NodeName() string { return r.node }

// NamespacePrefix starts the name of every network namespace the runner
// makes, and LinkPrefix that of every veth end it keeps in the caller's
// namespace: with netns.List and netns.Links they tell what it left.
func (r *Runner) NamespacePrefix() string { return "podrunner-" + r.run + "-" }

// LinkPrefix: see NamespacePrefix.
func (r *Runner) LinkPrefix() string { return "pr" + r.run + "h" }

// Running returns how many pods the runner runs now.
func (r *Runner) Running() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// Stop stops the worker and the informer, then every pod still running
// (servers closed, namespaces removed; the pods stay in the API). It is
// idempotent.
func (r *Runner) Stop() {
	r.stop.Do(func() {
		if r.cancel != nil {
			r.cancel()
			r.queue.ShutDown()
			if r.working {
				<-r.done
			}
			r.factory.Shutdown()
		}
		for key := range r.running {
			r.teardown(key)
		}
	})
}

func (r *Runner) logf(format string, args ...any) {
	if r.opts.Logf != nil {
		r.opts.Logf(format, args...)
	}
}

func (r *Runner) registerNode(ctx context.Context) error {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("64"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse(strconv.Itoa(len(r.slots))),
	}
	n, err := r.client.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: r.node, Labels: map[string]string{
			"kubernetes.io/hostname": r.node,
			"kubernetes.io/os":       "linux",
		}},
	}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		n, err = r.client.CoreV1().Nodes().Get(ctx, r.node, metav1.GetOptions{})
	}
	if err != nil {
		return err
	}
	// Admission taints a new node not-ready; only the node lifecycle
	// controller would lift it.
	if len(n.Spec.Taints) > 0 {
		n.Spec.Taints = nil
		if n, err = r.client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("remove taints: %w", err)
		}
	}
	now := metav1.Now()
	n.Status = corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Phase:       corev1.NodeRunning,
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "podrunner is running pods", LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "127.0.0.1"},
			{Type: corev1.NodeHostName, Address: r.node},
		},
		NodeInfo: corev1.NodeSystemInfo{OperatingSystem: "linux", Architecture: "amd64", KubeletVersion: "podrunner"},
	}
	_, err = r.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	return err
}

// work is the worker goroutine: it syncs pod keys until the queue shuts
// down.
func (r *Runner) work(ctx context.Context) {
	defer close(r.done)
	for {
		key, quit := r.queue.Get()
		if quit {
			return
		}
		if err := r.sync(ctx, key); err != nil {
			if ctx.Err() == nil {
				r.logf("podrunner: %s: %v (retrying)", key, err)
			}
			r.queue.AddRateLimited(key)
		} else {
			r.queue.Forget(key)
		}
		r.queue.Done(key)
	}
}

// sync brings pod key to what its API object asks: bound, running and
// reported, or stopped.
func (r *Runner) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	p, err := r.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		r.teardown(key) // deleted (forcibly, or by us)
		return nil
	}
	if err != nil {
		return err
	}
	st := r.running[key]
	if st != nil && st.uid != p.UID {
		r.teardown(key) // a new pod of the same name
		st = nil
	}
	switch {
	case p.Spec.NodeName == "":
		if p.DeletionTimestamp != nil || (p.Spec.SchedulerName != "" && p.Spec.SchedulerName != corev1.DefaultSchedulerName) {
			return nil
		}
		return r.bind(ctx, p)
	case p.Spec.NodeName != r.node:
		return nil
	case p.DeletionTimestamp != nil:
		return r.terminate(ctx, key, p, st)
	case p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed:
		return nil
	}
	if st == nil {
		if st, err = r.start(ctx, p); err != nil {
			return fmt.Errorf("start: %w", err)
		}
		r.running[key] = st
		r.setCount()
		r.logf("podrunner: %s runs at %v", key, st.host.Addr)
	}
	if reported(p, st) {
		return nil
	}
	status := runningStatus(p, st)
	up := p.DeepCopy()
	up.Status = status
	if _, err := r.client.CoreV1().Pods(ns).UpdateStatus(ctx, up, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update status: %w", err)
	}
	return nil
}

func (r *Runner) bind(ctx context.Context, p *corev1.Pod) error {
	err := r.client.CoreV1().Pods(p.Namespace).Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: r.node},
	}, metav1.CreateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil // bound meanwhile, or gone: the informer tells
	}
	if err != nil {
		return fmt.Errorf("bind to %s: %w", r.node, err)
	}
	r.logf("podrunner: bound %s/%s to %s", p.Namespace, p.Name, r.node)
	return nil
}

// terminate keeps a deleted pod serving until its grace period (or
// MaxGrace since the runner saw the deletion) ends, then stops it and
// deletes it for good.
func (r *Runner) terminate(ctx context.Context, key string, p *corev1.Pod, st *pod) error {
	if st != nil {
		now := time.Now()
		if st.doomed.IsZero() {
			st.doomed = now
		}
		// As a kubelet does, count the grace period from when the deletion
		// is seen: the deletion timestamp has a resolution of seconds.
		end := p.DeletionTimestamp.Time
		if g := p.DeletionGracePeriodSeconds; g != nil {
			end = st.doomed.Add(time.Duration(*g) * time.Second)
		}
		if r.opts.MaxGrace > 0 && st.doomed.Add(r.opts.MaxGrace).Before(end) {
			end = st.doomed.Add(r.opts.MaxGrace)
		}
		if wait := end.Sub(now); wait > 0 {
			r.queue.AddAfter(key, wait)
			return nil
		}
		r.teardown(key)
	}
	zero := int64(0)
	err := r.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero,
		Preconditions:      &metav1.Preconditions{UID: &p.UID},
	})
	switch {
	case err == nil:
		r.logf("podrunner: %s deleted", key)
	case !apierrors.IsNotFound(err) && !apierrors.IsConflict(err):
		return fmt.Errorf("delete: %w", err)
	}
	return nil
}

// teardown stops pod key's servers and removes its namespace, if it runs.
func (r *Runner) teardown(key string) {
	st := r.running[key]
	if st == nil {
		return
	}
	stopAll(st.stops)
	if err := st.host.Delete(); err != nil {
		r.logf("podrunner: %s: remove namespace: %v", key, err)
	}
	r.slots[st.slot] = false
	delete(r.running, key)
	r.setCount()
	r.logf("podrunner: %s stopped", key)
}

func (r *Runner) setCount() {
	r.mu.Lock()
	r.count = len(r.running)
	r.mu.Unlock()
}
