// Package kube is the Kubernetes origin of endpoints: a discovery.Source that
// watches the discovery.k8s.io/v1 EndpointSlices of one Service and publishes
// a discovery.Snapshot of one of its ports each time they change.
//
// It is the only package that imports client-go: discovery, balancer and
// proxy never see Kubernetes types.
//
// Shape: a client-go shared informer, namespace-scoped and filtered by the
// label kubernetes.io/service-name=<service>, feeds event handlers that only
// record which slice changed and wake the sync loop through a one-slot
// channel. The sync loop folds the recorded changes into a per-slice cache
// and builds a Snapshot at most once per Config.Coalesce, publishing it only
// when it differs from the last one published. The pods of terminating
// endpoints are read (a cached GET per pod, off the sync loop) for their
// kill time, the deletion timestamp; that permission is optional, and a
// kill time found after the endpoint turned terminating comes in the next
// snapshot. Watch errors and API server
// restarts are handled by client-go's reflector (it relists and rewatches
// with backoff); meanwhile the last published Snapshot stays in force.
package kube

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/longhaul-proxy/longhaul/discovery"
)

// DefaultCoalesce is the default of Config.Coalesce.
const DefaultCoalesce = 50 * time.Millisecond

// Hooks receive the source's events, for metrics. Each field may be nil.
// They are called from client-go's and the sync loop's goroutines, so they
// must be safe for concurrent use, and they must be quick.
type Hooks struct {
	// Relist is called each time the source starts a full list of the
	// Service's slices: the first sync, and each relist after a watch
	// error or an API server restart.
	Relist func()
	// Error is called for each failed list or broken watch that client-go
	// reports (it then retries with backoff; refused connections while the
	// API server is down are retried quietly) and for each snapshot that
	// could not be built.
	Error func(err error)
	// Published is called after each published Snapshot with its number of
	// endpoints and the time taken to convert the changed slices and merge
	// all of them into it.
	Published func(endpoints int, build time.Duration)
	// PodLookup is called after each GET of a terminating endpoint's pod
	// with its outcome: PodLookupKillTime, PodLookupNoKill,
	// PodLookupNotFound, PodLookupForbidden (the optional permission is
	// missing; not an Error) or PodLookupError.
	PodLookup func(outcome string)
}

// Config describes one Service port to follow.
type Config struct {
	// Client talks to the API server. Required.
	Client kubernetes.Interface
	// Namespace and Service name the Service. Required.
	Namespace, Service string
	// Port selects the port: a port name as the Service names it (the
	// EndpointSlice port name; "" is never a name), or a number 1-65535,
	// which matches the endpoints' TCP target port. Empty selects the only
	// port of each slice (a single-port Service). The port is resolved in
	// each slice separately, so one name may map to different numbers.
	Port string
	// Coalesce is the longest a change waits before it is published and
	// the shortest time between two snapshot builds. A change after a
	// quiet period is built at once; a burst of changes is folded into one
	// snapshot per Coalesce. Default DefaultCoalesce.
	Coalesce time.Duration
	// Identity says where endpoints' hash identities come from (see
	// discovery.Identity). Default discovery.IdentityAddress. An identity
	// read from the pod (a label or an annotation) needs the optional
	// permission to get pods; without it endpoints hash by address.
	Identity discovery.Identity
	// Logger receives warnings and errors. Default: none.
	Logger *zap.Logger
	// Metrics receives counts of relists, errors and snapshots.
	Metrics Hooks
}

// Source follows the EndpointSlices of one Service port. Create it with New;
// Run it once at a time.
type Source struct {
	cfg     Config
	port    portSelector
	name    string // "namespace/service", the Snapshot's Service
	log     *zap.Logger
	running atomic.Bool
	synced  atomic.Bool

	// changes is what the informer's handlers recorded since the sync
	// loop last looked: slice name to its new state, nil when deleted.
	mu      sync.Mutex
	changes map[string]*discoveryv1.EndpointSlice
	wake    chan struct{} // one slot: a change is pending
}

var _ discovery.Source = (*Source)(nil)

// New checks cfg and returns a Source that does nothing until Run.
func New(cfg Config) (*Source, error) {
	if cfg.Client == nil {
		return nil, errors.New("kubernetes source: no client")
	}
	if errs := validation.IsDNS1123Label(cfg.Namespace); len(errs) > 0 {
		return nil, fmt.Errorf("kubernetes source: namespace %q: %s", cfg.Namespace, errs[0])
	}
	if errs := validation.IsDNS1035Label(cfg.Service); len(errs) > 0 {
		return nil, fmt.Errorf("kubernetes source: service %q: %s", cfg.Service, errs[0])
	}
	port, err := parsePort(cfg.Port)
	if err != nil {
		return nil, fmt.Errorf("kubernetes source %s/%s: %w", cfg.Namespace, cfg.Service, err)
	}
	if cfg.Coalesce < 0 {
		return nil, fmt.Errorf("kubernetes source %s/%s: negative coalesce %v", cfg.Namespace, cfg.Service, cfg.Coalesce)
	}
	if cfg.Coalesce == 0 {
		cfg.Coalesce = DefaultCoalesce
	}
	if _, err := discovery.ParseIdentity(cfg.Identity.String()); err != nil {
		return nil, fmt.Errorf("kubernetes source %s/%s: %w", cfg.Namespace, cfg.Service, err)
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	name := cfg.Namespace + "/" + cfg.Service
	return &Source{
		cfg:  cfg,
		port: port,
		name: name,
		log:  log.With(zap.String("service", name), zap.String("port", cfg.Port)),
	}, nil
}

// Synced reports whether the source has listed the Service's slices and
// built its first Snapshot; it turns true just before that Snapshot is
// published, so a publisher already finds it true, and stays true through
// relists until Run returns.
func (s *Source) Synced() bool { return s.synced.Load() }

// Run watches the Service's EndpointSlices and publishes Snapshots until ctx
// ends; then it stops the informer, waits for its goroutines and returns
// nil. The first Snapshot (possibly empty) is published once the initial
// list is complete; later ones only when the endpoints change. Errors from
// the API server are retried by client-go and never end Run.
func (s *Source) Run(ctx context.Context, publish discovery.Publisher) error {
	if !s.running.CompareAndSwap(false, true) {
		return fmt.Errorf("kubernetes source %s: already running", s.name)
	}
	defer s.running.Store(false)
	defer s.synced.Store(false)

	s.reset()
	inf := s.informer()
	if err := inf.SetWatchErrorHandlerWithContext(s.watchError); err != nil {
		return fmt.Errorf("kubernetes source %s: %w", s.name, err)
	}
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.record(obj, false) },
		UpdateFunc: func(_, obj any) { s.record(obj, false) },
		DeleteFunc: func(obj any) { s.record(obj, true) },
	})
	if err != nil {
		return fmt.Errorf("kubernetes source %s: %w", s.name, err)
	}

	ictx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		inf.RunWithContext(ictx)
	}()
	pods := s.podTimes()
	podsDone := pods.run(ictx)
	defer func() {
		stop()
		<-done
		podsDone()
	}()
	s.syncLoop(ctx, reg.HasSyncedChecker().Done(), pods, publish)
	return nil
}

// informer builds the Service's slice informer. Its ListerWatcher counts
// full lists (plain LISTs, and WATCHes that stream the initial state, which
// client-go uses instead of a LIST when the server supports it).
func (s *Source) informer() cache.SharedIndexInformer {
	slices := s.cfg.Client.DiscoveryV1().EndpointSlices(s.cfg.Namespace)
	selector := discoveryv1.LabelServiceName + "=" + s.cfg.Service
	tweak := func(o *metav1.ListOptions) { o.LabelSelector = selector }
	list := func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
		tweak(&o)
		s.relist()
		l, err := slices.List(ctx, o)
		if err != nil {
			return nil, fmt.Errorf("list endpointslices %s (%s): %w", s.cfg.Namespace, selector, err)
		}
		return l, nil
	}
	watchFn := func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		tweak(&o)
		if o.SendInitialEvents != nil && *o.SendInitialEvents {
			s.relist()
		}
		w, err := slices.Watch(ctx, o)
		if err != nil {
			return nil, fmt.Errorf("watch endpointslices %s (%s): %w", s.cfg.Namespace, selector, err)
		}
		return w, nil
	}
	lw := &cache.ListWatch{
		ListWithContextFunc:  list,
		WatchFuncWithContext: watchFn,
	}
	return cache.NewSharedIndexInformerWithOptions(
		cache.ToListWatcherWithWatchListSemantics(lw, s.cfg.Client),
		&discoveryv1.EndpointSlice{},
		cache.SharedIndexInformerOptions{ObjectDescription: "endpointslices of " + s.name},
	)
}

func (s *Source) relist() {
	if f := s.cfg.Metrics.Relist; f != nil {
		f()
	}
}

// watchError replaces client-go's default handler (a klog line): it counts
// and logs. The reflector then relists with backoff on its own.
func (s *Source) watchError(_ context.Context, _ *cache.Reflector, err error) {
	s.error(err)
	s.log.Warn("endpointslice watch failed; relisting, last snapshot stays in force", zap.Error(err))
}

func (s *Source) error(err error) {
	if f := s.cfg.Metrics.Error; f != nil {
		f(err)
	}
}

// record notes the slice's new state (nil when deleted) and wakes the sync
// loop. It never blocks: the wake channel has one slot and a pending wake
// already covers this change.
func (s *Source) record(obj any, deleted bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
		deleted = true
	}
	slice, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return
	}
	s.mu.Lock()
	if deleted {
		s.changes[slice.Name] = nil
	} else {
		s.changes[slice.Name] = slice
	}
	s.mu.Unlock()
	s.poke()
}

// podTimes returns a new pod kill time and revision lookup for the
// Service's namespace.
func (s *Source) podTimes() *podTimes {
	return newPodTimes(s.cfg.Client.CoreV1().Pods(s.cfg.Namespace), s.log, s.cfg.Metrics.PodLookup, s.poke, s.cfg.Identity)
}

// poke wakes the sync loop for a build. It never blocks.
func (s *Source) poke() {
	s.mu.Lock()
	wake := s.wake
	s.mu.Unlock()
	select {
	case wake <- struct{}{}:
	default:
	}
}

// reset forgets recorded changes, before a Run.
func (s *Source) reset() {
	s.mu.Lock()
	s.changes = make(map[string]*discoveryv1.EndpointSlice)
	s.wake = make(chan struct{}, 1)
	s.mu.Unlock()
}

// take returns the recorded changes and starts a new record.
func (s *Source) take() map[string]*discoveryv1.EndpointSlice {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.changes
	s.changes = make(map[string]*discoveryv1.EndpointSlice, len(ch))
	return ch
}

// firstHold bounds how long the first snapshot waits for the identities of
// its endpoints when they are read from pods (a wake follows each pod
// read); then it is published with the endpoints not yet identified held
// back.
const firstHold = podTimeout

// syncLoop waits for the initial list (synced closes), publishes the first
// Snapshot, then folds changes into snapshots at most once per Coalesce
// until ctx ends.
func (s *Source) syncLoop(ctx context.Context, synced <-chan struct{}, pods *podTimes, publish discovery.Publisher) {
	c := newSliceCache(s.name, s.port, s.cfg.Identity)
	var last *discovery.Snapshot // nil until the first publication
	var lastBuild time.Time
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	// retry wakes the loop while endpoints wait for what their pods tell
	// (a kill time, an identity), so that the pods are asked again (get)
	// and, after identifyWait, held endpoints hash by address.
	var retry *time.Timer
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	var firstBuild time.Time

	rebuild := func() {
		start := time.Now()
		lastBuild = start
		if firstBuild.IsZero() {
			firstBuild = start
		}
		for name, slice := range s.take() {
			if slice == nil {
				c.delete(name)
			} else if n := c.update(slice); n > 0 {
				s.log.Warn("endpoints skipped: no address, or not of the slice's address type",
					zap.String("slice", name), zap.Int("skipped", n))
			}
		}
		var snap *discovery.Snapshot
		var held, waiting int
		var err error
		pods.build(func() { snap, held, waiting, err = c.snapshot(pods.get) })
		if err != nil {
			s.error(err)
			s.log.Error("endpoint snapshot not built; last snapshot stays in force", zap.Error(err))
			return
		}
		if waiting > 0 {
			if retry == nil {
				retry = time.AfterFunc(podRetry, s.poke)
			} else {
				retry.Reset(podRetry)
			}
			if held > 0 && last == nil && start.Sub(firstBuild) < firstHold {
				return // the first snapshot waits for the identities, a while
			}
		}
		if last != nil && snap.Equal(last) {
			return
		}
		took := time.Since(start)
		if last == nil {
			// Before publishing: whoever receives the first snapshot
			// must find the source Synced.
			s.synced.Store(true)
			s.log.Debug("endpointslices synced", zap.Int("endpoints", len(snap.Endpoints)))
		}
		publish(snap)
		last = snap
		if f := s.cfg.Metrics.Published; f != nil {
			f(len(snap.Endpoints), took)
		}
	}

	select {
	case <-ctx.Done():
		return
	case <-synced:
	}
	rebuild()

	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		if wait := time.Until(lastBuild.Add(s.cfg.Coalesce)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		}
		// Changes recorded while waiting are in this build; a wake they
		// left behind leads to at most one build that finds them done.
		select {
		case <-s.wake:
		default:
		}
		rebuild()
	}
}
