package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/util/retry"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	gwinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"

	"github.com/longhaul-proxy/longhaul/config"
)

// Options configure a Controller.
type Options struct {
	// Kube reads Services, Namespaces and TLS Secrets and holds the Lease.
	// Required.
	Kube kubernetes.Interface
	// Gateway reads the Gateway API's objects and writes their status.
	// Required.
	Gateway gwclient.Interface
	// Metadata, if set, reads the Gateway API CRDs' bundle-version
	// annotations (metadata only) for the GatewayClasses'
	// SupportedVersion condition; nil leaves the condition out.
	Metadata metadata.Interface
	// ControllerName is the GatewayClasses' spec.controllerName served.
	// Required.
	ControllerName gwv1.GatewayController
	// Class, if set, serves only the GatewayClass of that name
	// (Params.Class).
	Class string
	// Address gives each Gateway its bind IP address (Params.Address).
	// Required.
	Address func(*gwv1.Gateway) string
	// StatusAddresses, if set, gives the addresses a Gateway's status
	// reports (Params.StatusAddresses).
	StatusAddresses func(*gwv1.Gateway) []gwv1.GatewayStatusAddress
	// Template is the starting point of every listener (Params.Template);
	// nil means DefaultTemplate.
	Template *config.Listener
	// Publish receives the desired listeners, sorted by name, each time
	// they change (and once at start); it is called from one goroutine at
	// a time and must not block for long. Required.
	Publish func(listeners []config.Listener)
	// ReportsApplied says that the data path calls Controller.Applied after
	// each Publish; without it a published listener counts as running.
	ReportsApplied bool
	// Coalesce is how long changes are gathered before one translation;
	// 0 means 100ms.
	Coalesce time.Duration
	// Lease names the coordination Lease (in LeaseNamespace) that elects
	// the replica writing status; "" makes this replica write always.
	// Every replica translates and publishes.
	Lease, LeaseNamespace string
	// Identity names this replica in the Lease (the pod's name).
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod tune the election;
	// 0 means 15s, 10s and 2s.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Log logs; nil logs nothing.
	Log *zap.Logger
	// Now is the clock of lastTransitionTime; nil means time.Now.
	Now func() time.Time
}

// bundleVersionAnnotation is the annotation of the Gateway API CRDs that
// names their release.
const bundleVersionAnnotation = "gateway.networking.k8s.io/bundle-version"

// Controller watches the Gateway API's objects, publishes the listeners
// they call for and, when it holds the Lease, writes their status.
type Controller struct {
	o       Options
	kick    chan struct{}
	leader  atomic.Bool
	mu      sync.Mutex
	applied map[string]error
	// writes counts status updates sent, for tests and metrics.
	writes atomic.Int64
}

// New checks o and returns a Controller; Run starts it.
func New(o Options) (*Controller, error) {
	switch {
	case o.Kube == nil || o.Gateway == nil:
		return nil, errors.New("gateway: Options.Kube and Options.Gateway are required")
	case o.ControllerName == "":
		return nil, errors.New("gateway: Options.ControllerName is required")
	case o.Address == nil || o.Publish == nil:
		return nil, errors.New("gateway: Options.Address and Options.Publish are required")
	case o.Lease != "" && (o.LeaseNamespace == "" || o.Identity == ""):
		return nil, errors.New("gateway: Options.Lease needs LeaseNamespace and Identity")
	}
	if o.Template == nil {
		t := DefaultTemplate()
		o.Template = &t
	}
	if o.Coalesce == 0 {
		o.Coalesce = 100 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Controller{o: o, kick: make(chan struct{}, 1), applied: map[string]error{}}, nil
}

// Applied reports what the data path made of the last listeners
// published: by listener name, nil for running and an error for refused.
// Listeners not named keep what was reported before. It is safe to call
// from any goroutine; status follows within Coalesce.
func (c *Controller) Applied(errs map[string]error) {
	c.mu.Lock()
	for k, v := range errs {
		c.applied[k] = v
	}
	c.mu.Unlock()
	c.trigger()
}

// Leader reports whether this replica holds the Lease (always true
// without one).
func (c *Controller) Leader() bool { return c.leader.Load() }

func (c *Controller) trigger() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// listers are the informers' caches.
type listers struct {
	classes   func() ([]*gwv1.GatewayClass, error)
	gateways  func() ([]*gwv1.Gateway, error)
	http      func() ([]*gwv1.HTTPRoute, error)
	grpc      func() ([]*gwv1.GRPCRoute, error)
	tcp       func() ([]*gwv1.TCPRoute, error)
	tls       func() ([]*gwv1.TLSRoute, error)
	grants    func() ([]*gwv1.ReferenceGrant, error)
	services  func() ([]*corev1.Service, error)
	namespace func() ([]*corev1.Namespace, error)
	secrets   func() ([]*corev1.Secret, error)
	crds      func() (map[string]string, error) // nil without Options.Metadata
}

// Run runs the informers, translates on every change (coalesced) and
// writes status while leading, until ctx ends. It returns once every
// goroutine it started has stopped.
func (c *Controller) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	gf := gwinformers.NewSharedInformerFactory(c.o.Gateway, 0)
	kf := informers.NewSharedInformerFactory(c.o.Kube, 0)
	defer kf.Shutdown()
	// Only Secrets of type kubernetes.io/tls can be a listener's
	// certificate: the others are neither listed nor cached.
	sf := informers.NewSharedInformerFactoryWithOptions(c.o.Kube, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = "type=" + string(corev1.SecretTypeTLS)
	}))
	defer sf.Shutdown()
	defer gf.Shutdown()
	g := gf.Gateway().V1()
	ls := listers{
		classes:  func() ([]*gwv1.GatewayClass, error) { return g.GatewayClasses().Lister().List(labels.Everything()) },
		gateways: func() ([]*gwv1.Gateway, error) { return g.Gateways().Lister().List(labels.Everything()) },
		http:     func() ([]*gwv1.HTTPRoute, error) { return g.HTTPRoutes().Lister().List(labels.Everything()) },
		grpc:     func() ([]*gwv1.GRPCRoute, error) { return g.GRPCRoutes().Lister().List(labels.Everything()) },
		tcp:      func() ([]*gwv1.TCPRoute, error) { return g.TCPRoutes().Lister().List(labels.Everything()) },
		tls:      func() ([]*gwv1.TLSRoute, error) { return g.TLSRoutes().Lister().List(labels.Everything()) },
		grants:   func() ([]*gwv1.ReferenceGrant, error) { return g.ReferenceGrants().Lister().List(labels.Everything()) },
		services: func() ([]*corev1.Service, error) { return kf.Core().V1().Services().Lister().List(labels.Everything()) },
		namespace: func() ([]*corev1.Namespace, error) {
			return kf.Core().V1().Namespaces().Lister().List(labels.Everything())
		},
		secrets: func() ([]*corev1.Secret, error) { return sf.Core().V1().Secrets().Lister().List(labels.Everything()) },
	}
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.trigger() },
		UpdateFunc: func(any, any) { c.trigger() },
		DeleteFunc: func(any) { c.trigger() },
	}
	infs := []cache.SharedIndexInformer{
		g.GatewayClasses().Informer(), g.Gateways().Informer(), g.HTTPRoutes().Informer(), g.GRPCRoutes().Informer(),
		g.TCPRoutes().Informer(), g.TLSRoutes().Informer(),
		g.ReferenceGrants().Informer(), kf.Core().V1().Services().Informer(), kf.Core().V1().Namespaces().Informer(),
		sf.Core().V1().Secrets().Informer(),
	}
	var mf metadatainformer.SharedInformerFactory
	if c.o.Metadata != nil {
		mf = metadatainformer.NewSharedInformerFactory(c.o.Metadata, 0)
		defer mf.Shutdown()
		crds := mf.ForResource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
		infs = append(infs, crds.Informer())
		ls.crds = func() (map[string]string, error) {
			objs, err := crds.Lister().List(labels.Everything())
			out := map[string]string{}
			for _, o := range objs {
				if m, ok := o.(metav1.Object); ok && slices.Contains(CRDs, m.GetName()) {
					out[m.GetName()] = m.GetAnnotations()[bundleVersionAnnotation]
				}
			}
			return out, err
		}
	}
	for _, inf := range infs {
		if _, err := inf.AddEventHandler(h); err != nil {
			return fmt.Errorf("gateway: add event handler: %w", err)
		}
	}
	gf.Start(ctx.Done())
	kf.Start(ctx.Done())
	sf.Start(ctx.Done())
	for typ, ok := range gf.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("gateway: informer of %v did not sync: %w", typ, ctx.Err())
		}
	}
	for _, f := range []informers.SharedInformerFactory{kf, sf} {
		for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok {
				return fmt.Errorf("gateway: informer of %v did not sync: %w", typ, ctx.Err())
			}
		}
	}
	if mf != nil {
		mf.Start(ctx.Done())
		for gvr, ok := range mf.WaitForCacheSync(ctx.Done()) {
			if !ok {
				return fmt.Errorf("gateway: informer of %v did not sync: %w", gvr, ctx.Err())
			}
		}
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	if c.o.Lease == "" {
		c.leader.Store(true)
	} else {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: &resourcelock.LeaseLock{
				LeaseMeta:  metav1.ObjectMeta{Namespace: c.o.LeaseNamespace, Name: c.o.Lease},
				Client:     c.o.Kube.CoordinationV1(),
				LockConfig: resourcelock.ResourceLockConfig{Identity: c.o.Identity},
			},
			LeaseDuration:   or(c.o.LeaseDuration, 15*time.Second),
			RenewDeadline:   or(c.o.RenewDeadline, 10*time.Second),
			RetryPeriod:     or(c.o.RetryPeriod, 2*time.Second),
			ReleaseOnCancel: true,
			Name:            c.o.Lease,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(context.Context) { c.leader.Store(true); c.trigger() },
				OnStoppedLeading: func() { c.leader.Store(false) },
			},
		})
		if err != nil {
			return fmt.Errorf("gateway: leader election: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil { // a lost lease is contested again
				le.Run(ctx)
			}
		}()
	}

	c.trigger()
	var last []config.Listener
	published := false
	timer := time.NewTimer(0)
	<-timer.C
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.kick:
		}
		timer.Reset(c.o.Coalesce)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
		objs, err := ls.read()
		if err != nil {
			c.o.Log.Error("gateway: read the informers' caches", zap.Error(err))
			continue
		}
		c.mu.Lock()
		applied := make(map[string]error, len(c.applied))
		for k, v := range c.applied {
			applied[k] = v
		}
		c.mu.Unlock()
		params := Params{ControllerName: c.o.ControllerName, Class: c.o.Class, Address: c.o.Address, StatusAddresses: c.o.StatusAddresses,
			Template: *c.o.Template, Applied: applied}
		res := Translate(objs, params)
		if !published || !reflect.DeepEqual(last, res.Listeners) {
			// A listener new or changed is pending until the data path
			// reports on it; forget those no longer published. This
			// happens before Publish, which may report at once.
			c.mu.Lock()
			prev := map[string]*config.Listener{}
			for i := range last {
				prev[last[i].Name] = &last[i]
			}
			keep := map[string]error{}
			for i := range res.Listeners {
				l := &res.Listeners[i]
				if err, ok := c.applied[l.Name]; ok && prev[l.Name] != nil && reflect.DeepEqual(prev[l.Name], l) {
					keep[l.Name] = err
				}
			}
			c.applied = keep
			c.mu.Unlock()
			c.o.Publish(res.Listeners)
			last, published = res.Listeners, true
			c.mu.Lock()
			if !c.o.ReportsApplied {
				for _, l := range res.Listeners {
					c.applied[l.Name] = nil
				}
			}
			params.Applied = make(map[string]error, len(c.applied))
			for k, v := range c.applied {
				params.Applied[k] = v
			}
			c.mu.Unlock()
			res = Translate(objs, params) // with what is known of the listeners published
		}
		if c.leader.Load() {
			if err := c.writeStatus(ctx, objs, res); err != nil && ctx.Err() == nil {
				c.o.Log.Warn("gateway: write status", zap.Error(err))
				c.retryLater(ctx, &wg)
			}
		}
	}
}

// retryLater triggers a translation after a pause, so that a status the
// API server refused is written again.
func (c *Controller) retryLater(ctx context.Context, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTimer(time.Second)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
			c.trigger()
		}
	}()
}

func (ls *listers) read() (Objects, error) {
	var o Objects
	var errs [10]error
	o.Classes, errs[0] = ls.classes()
	o.Gateways, errs[1] = ls.gateways()
	o.HTTPRoutes, errs[2] = ls.http()
	o.GRPCRoutes, errs[3] = ls.grpc()
	o.ReferenceGrants, errs[4] = ls.grants()
	o.Services, errs[5] = ls.services()
	o.Namespaces, errs[6] = ls.namespace()
	o.Secrets, errs[7] = ls.secrets()
	o.TCPRoutes, errs[8] = ls.tcp()
	o.TLSRoutes, errs[9] = ls.tls()
	var err error
	if ls.crds != nil {
		o.CRDVersions, err = ls.crds()
	}
	return o, errors.Join(append(errs[:], err)...)
}

func or(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// writeStatus writes the status res gives to every object whose status
// differs from it, ignoring lastTransitionTime, and keeps the time of
// conditions that did not change. A conflict re-reads the object and
// tries again.
func (c *Controller) writeStatus(ctx context.Context, objs Objects, res *Result) error {
	var errs []error
	now := metav1.NewTime(c.o.Now().Truncate(time.Second))
	api := c.o.Gateway.GatewayV1()
	for _, gc := range objs.Classes {
		want, ok := res.Classes[gc.Name]
		if !ok {
			continue
		}
		errs = append(errs, update(ctx, c, gc,
			func(ctx context.Context) (*gwv1.GatewayClass, error) {
				return api.GatewayClasses().Get(ctx, gc.Name, metav1.GetOptions{})
			},
			func(o *gwv1.GatewayClass) bool {
				next := o.Status
				next.Conditions = mergeConditions(o.Status.Conditions, want.Conditions, now)
				if equalStatus(o.Status, next) {
					return false
				}
				o.Status = next
				return true
			},
			func(ctx context.Context, o *gwv1.GatewayClass) error {
				_, err := api.GatewayClasses().UpdateStatus(ctx, o, metav1.UpdateOptions{})
				return err
			}))
	}
	for _, gw := range objs.Gateways {
		want, ok := res.Gateways[types.NamespacedName{Namespace: gw.Namespace, Name: gw.Name}]
		if !ok {
			continue
		}
		errs = append(errs, update(ctx, c, gw,
			func(ctx context.Context) (*gwv1.Gateway, error) {
				return api.Gateways(gw.Namespace).Get(ctx, gw.Name, metav1.GetOptions{})
			},
			func(o *gwv1.Gateway) bool {
				next := o.Status
				next.Addresses = want.Addresses
				next.Conditions = mergeConditions(o.Status.Conditions, want.Conditions, now)
				next.Listeners = nil
				for _, wl := range want.Listeners {
					var old []metav1.Condition
					for _, ol := range o.Status.Listeners {
						if ol.Name == wl.Name {
							old = ol.Conditions
						}
					}
					wl.Conditions = mergeConditions(old, wl.Conditions, now)
					next.Listeners = append(next.Listeners, wl)
				}
				if equalStatus(o.Status, next) {
					return false
				}
				o.Status = next
				return true
			},
			func(ctx context.Context, o *gwv1.Gateway) error {
				_, err := api.Gateways(o.Namespace).UpdateStatus(ctx, o, metav1.UpdateOptions{})
				return err
			}))
	}
	errs = append(errs, writeRoutes(ctx, c, objs.HTTPRoutes, res.Routes[KindHTTPRoute], func(r *gwv1.HTTPRoute) *[]gwv1.RouteParentStatus { return &r.Status.Parents },
		func(ctx context.Context, ns, name string) (*gwv1.HTTPRoute, error) {
			return api.HTTPRoutes(ns).Get(ctx, name, metav1.GetOptions{})
		},
		func(ctx context.Context, o *gwv1.HTTPRoute) error {
			_, err := api.HTTPRoutes(o.Namespace).UpdateStatus(ctx, o, metav1.UpdateOptions{})
			return err
		}, now)...)
	errs = append(errs, writeRoutes(ctx, c, objs.GRPCRoutes, res.Routes[KindGRPCRoute], func(r *gwv1.GRPCRoute) *[]gwv1.RouteParentStatus { return &r.Status.Parents },
		func(ctx context.Context, ns, name string) (*gwv1.GRPCRoute, error) {
			return api.GRPCRoutes(ns).Get(ctx, name, metav1.GetOptions{})
		},
		func(ctx context.Context, o *gwv1.GRPCRoute) error {
			_, err := api.GRPCRoutes(o.Namespace).UpdateStatus(ctx, o, metav1.UpdateOptions{})
			return err
		}, now)...)
	errs = append(errs, writeRoutes(ctx, c, objs.TCPRoutes, res.Routes[KindTCPRoute], func(r *gwv1.TCPRoute) *[]gwv1.RouteParentStatus { return &r.Status.Parents },
		func(ctx context.Context, ns, name string) (*gwv1.TCPRoute, error) {
			return api.TCPRoutes(ns).Get(ctx, name, metav1.GetOptions{})
		},
		func(ctx context.Context, o *gwv1.TCPRoute) error {
			_, err := api.TCPRoutes(o.Namespace).UpdateStatus(ctx, o, metav1.UpdateOptions{})
			return err
		}, now)...)
	errs = append(errs, writeRoutes(ctx, c, objs.TLSRoutes, res.Routes[KindTLSRoute], func(r *gwv1.TLSRoute) *[]gwv1.RouteParentStatus { return &r.Status.Parents },
		func(ctx context.Context, ns, name string) (*gwv1.TLSRoute, error) {
			return api.TLSRoutes(ns).Get(ctx, name, metav1.GetOptions{})
		},
		func(ctx context.Context, o *gwv1.TLSRoute) error {
			_, err := api.TLSRoutes(o.Namespace).UpdateStatus(ctx, o, metav1.UpdateOptions{})
			return err
		}, now)...)
	return errors.Join(errs...)
}

// writeRoutes writes the parent statuses of routes of one kind (want, by
// route) where they changed: only the entries of the controller's name.
func writeRoutes[T interface {
	metav1.Object
	DeepCopy() T
}](ctx context.Context, c *Controller, routes []T, want map[types.NamespacedName][]gwv1.RouteParentStatus,
	parents func(T) *[]gwv1.RouteParentStatus, get func(ctx context.Context, ns, name string) (T, error),
	write func(context.Context, T) error, now metav1.Time) []error {
	var errs []error
	for _, r := range routes {
		w := want[types.NamespacedName{Namespace: r.GetNamespace(), Name: r.GetName()}]
		errs = append(errs, update(ctx, c, r,
			func(ctx context.Context) (T, error) { return get(ctx, r.GetNamespace(), r.GetName()) },
			func(o T) bool {
				p := parents(o)
				next, changed := mergeParents(*p, w, c.o.ControllerName, now)
				*p = next
				return changed
			}, write))
	}
	return errs
}

// update applies change to a copy of cached (then, after a conflict, to
// the object as the API server has it) and writes it when change says it
// changed anything.
func update[T interface {
	metav1.Object
	DeepCopy() T
}](ctx context.Context, c *Controller, cached T, get func(context.Context) (T, error), change func(T) bool, write func(context.Context, T) error) error {
	first := true
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		obj := cached.DeepCopy()
		if !first {
			var err error
			if obj, err = get(ctx); err != nil {
				return err
			}
		}
		first = false
		if !change(obj) {
			return nil
		}
		c.writes.Add(1)
		return write(ctx, obj)
	})
	if apierrors.IsNotFound(err) {
		return nil // deleted meanwhile
	}
	if err != nil {
		return fmt.Errorf("status of %s/%s: %w", cached.GetNamespace(), cached.GetName(), err)
	}
	return nil
}

// mergeConditions returns want with each condition's lastTransitionTime
// kept from old when its status did not change, else now; conditions of
// other types in old are kept.
func mergeConditions(old, want []metav1.Condition, now metav1.Time) []metav1.Condition {
	out := make([]metav1.Condition, 0, len(want))
	for _, w := range want {
		w.LastTransitionTime = now
		for _, o := range old {
			if o.Type == w.Type && o.Status == w.Status {
				w.LastTransitionTime = o.LastTransitionTime
			}
		}
		out = append(out, w)
	}
	for _, o := range old {
		if !containsType(want, o.Type) {
			out = append(out, o)
		}
	}
	return out
}

func containsType(cs []metav1.Condition, typ string) bool {
	for _, c := range cs {
		if c.Type == typ {
			return true
		}
	}
	return false
}

// mergeParents replaces the parent statuses of controller in old by want
// (their conditions merged), keeping other controllers' entries in place.
func mergeParents(old, want []gwv1.RouteParentStatus, controller gwv1.GatewayController, now metav1.Time) ([]gwv1.RouteParentStatus, bool) {
	var out []gwv1.RouteParentStatus
	ours := 0
	for _, o := range old {
		if o.ControllerName != controller {
			out = append(out, o)
		} else {
			ours++
		}
	}
	if ours == 0 && len(want) == 0 {
		return old, false
	}
	for _, w := range want {
		var prev []metav1.Condition
		for _, o := range old {
			if o.ControllerName == controller && reflect.DeepEqual(o.ParentRef, w.ParentRef) {
				prev = o.Conditions
			}
		}
		w.Conditions = mergeConditions(prev, w.Conditions, now)
		out = append(out, w)
	}
	if out == nil {
		out = []gwv1.RouteParentStatus{}
	}
	return out, !equalStatus(old, out)
}

// equalStatus compares statuses as the API server stores them: nil and
// empty lists alike.
func equalStatus(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}
