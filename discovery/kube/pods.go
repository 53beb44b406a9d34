package kube

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/longhaul-proxy/longhaul/discovery"
)

// Pod lookup outcomes, as Hooks.PodLookup receives them.
const (
	PodLookupKillTime  = "kill_time" // the pod has a deletion timestamp
	PodLookupNoKill    = "no_kill"   // the pod is not being deleted (yet: its revision was read), or is another pod now
	PodLookupNotFound  = "not_found" // the pod is gone
	PodLookupForbidden = "forbidden" // no permission to get pods: lookups pause
	PodLookupError     = "error"     // anything else; retried
)

const (
	// podWorkers bounds the pod GETs in flight per source.
	podWorkers = 4
	// podQueue bounds the lookups waiting; more wait for a later build.
	podQueue = 256
	// podTimeout bounds one GET.
	podTimeout = 5 * time.Second
	// podRetry is the least time between two GETs of a pod that gave no
	// kill time (or an error).
	podRetry = 2 * time.Second
	// podForbiddenPause is how long lookups stop after a 403; then one is
	// tried again, in case the optional Role was granted since.
	podForbiddenPause = time.Minute
)

// Revision labels, read in this order: a Deployment's ReplicaSet labels its
// pods with the hash of the pod template, a StatefulSet or DaemonSet with
// its ControllerRevision.
var revisionLabels = []string{"pod-template-hash", "controller-revision-hash"}

// identifyWait bounds how long an endpoint whose identity is read from its
// pod (discovery.Identity.FromPod) is held back while its pod cannot be
// read (errors); after it, the endpoint hashes by address.
const identifyWait = 10 * time.Second

// podTimes reads the pods behind endpoints for what the EndpointSlice does
// not say: the kill times (metadata.deletionTimestamp) of terminating ones,
// for drain deadlines; the revisions (revisionLabels) of all of them while
// some endpoint is terminating, so that new sessions prefer the new
// revision during a rollout (discovery.Placement); and, when the identity
// is read from the pod (a label or an annotation), every endpoint's hash
// identity. Reading pods is an optional permission: without it, endpoints
// carry no kill time, no revision, and hash by address.
//
// It never blocks a snapshot: get answers from a cache and queues a GET for
// a pod it does not know; a few workers GET the pods and, when something
// was learnt, wake the sync loop, whose next build carries it. A pod is
// fetched once while it is looked up (again, at most every podRetry, while
// it is terminating and shows no deletion timestamp, or after an error), so
// a rollout of a hundred pods costs a hundred GETs or so, not a hundred per
// snapshot; outside rollouts, and without an identity read from pods, no
// pod is fetched. A kill time once found is kept while the endpoint stays
// terminating (a second delete with a shorter grace period is not seen); a
// revision and an identity, while the pod is looked up (a label edited on
// a running pod is not seen).
type podTimes struct {
	pods     corev1client.PodInterface
	log      *zap.Logger
	lookup   func(outcome string) // may be nil
	wake     func()
	identity discovery.Identity
	now      func() time.Time // the clock of retries and waits; tests set it

	queue chan podRef

	mu      sync.Mutex
	entries map[podRef]*podEntry
	paused  time.Time // no lookups before this (after a 403)
	told    bool      // the missing permission was logged
}

type podEntry struct {
	kill     time.Time
	revision string    // valid (discovery.ValidRevision); "" when the pod has none
	id       string    // under a FromPod identity; "" for none
	known    bool      // a GET found the pod (revision and id are its own), or found it gone
	asked    time.Time // when a build first asked for it
	fetched  time.Time // zero until a lookup ended
	inflight bool
	// queuedTerminating and fetchedTerminating say whether the GET queued,
	// and the last one that ended, were for the pod as terminating: a read
	// for its revision before it terminated does not delay the read for
	// its kill time.
	queuedTerminating, fetchedTerminating bool
	wanted                                bool // by the current build
}

// podInfo is what get knows of a pod. Identified reports whether ID is
// final: the pod was read, or cannot be (no permission, or not for
// identifyWait), so that the endpoint hashes by ID or, when ID is "", by
// address; only under a FromPod identity can it be false.
type podInfo struct {
	kill       time.Time
	revision   string
	id         string
	identified bool
}

func newPodTimes(pods corev1client.PodInterface, log *zap.Logger, lookup func(string), wake func(), identity discovery.Identity) *podTimes {
	return &podTimes{
		pods:     pods,
		log:      log,
		lookup:   lookup,
		wake:     wake,
		identity: identity,
		now:      time.Now,
		queue:    make(chan podRef, podQueue),
		entries:  make(map[podRef]*podEntry),
	}
}

// run starts the workers; they stop when ctx ends, and wait returns then.
func (p *podTimes) run(ctx context.Context) (wait func()) {
	var wg sync.WaitGroup
	for range podWorkers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case ref := <-p.queue:
					p.fetch(ctx, ref)
				}
			}
		})
	}
	return wg.Wait
}

// build brackets one snapshot build: get is called inside it, and the pods
// no build asked for are forgotten after it.
func (p *podTimes) build(f func()) {
	p.mu.Lock()
	for _, e := range p.entries {
		e.wanted = false
	}
	p.mu.Unlock()
	f()
	p.mu.Lock()
	for ref, e := range p.entries {
		if !e.wanted && !e.inflight {
			delete(p.entries, ref)
		}
	}
	p.mu.Unlock()
}

// get returns what is known of the pod (the kill time only when
// terminating) and queues a GET when one is due: for a terminating pod
// until its kill time is known, for another until the pod was read once.
// It never blocks.
func (p *podTimes) get(ref podRef, terminating bool) podInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	e := p.entries[ref]
	if e == nil {
		e = &podEntry{asked: now}
		p.entries[ref] = e
	}
	e.wanted = true
	info := podInfo{revision: e.revision, id: e.id,
		identified: !p.identity.FromPod() || e.known || now.Before(p.paused) || now.Sub(e.asked) >= identifyWait}
	if terminating {
		info.kill = e.kill
	}
	if e.inflight || (terminating && !e.kill.IsZero()) || (!terminating && e.known) {
		return info
	}
	recent := !e.fetched.IsZero() && now.Sub(e.fetched) < podRetry && e.fetchedTerminating == terminating
	if now.Before(p.paused) || recent {
		return info
	}
	select {
	case p.queue <- ref:
		e.inflight, e.queuedTerminating = true, terminating
	default: // full: a later build asks again
	}
	return info
}

// podRevision returns the pod's revision label (revisionLabels), or "" when
// it has none that discovery.ValidRevision accepts.
func podRevision(labels map[string]string) string {
	for _, k := range revisionLabels {
		if v := labels[k]; v != "" && discovery.ValidRevision(v) == nil {
			return v
		}
	}
	return ""
}

// fetch GETs one pod and records what it says.
func (p *podTimes) fetch(ctx context.Context, ref podRef) {
	gctx, cancel := context.WithTimeout(ctx, podTimeout)
	pod, err := p.pods.Get(gctx, ref.name, metav1.GetOptions{})
	cancel()
	var kill time.Time
	var revision, id string
	known := false
	outcome := PodLookupNoKill
	switch {
	case err == nil:
		if ref.uid == "" || string(pod.UID) == ref.uid {
			known, revision = true, podRevision(pod.Labels)
			id = p.identity.Of(pod.Labels, pod.Annotations)
			if dt := pod.DeletionTimestamp; dt != nil {
				kill, outcome = dt.Time, PodLookupKillTime
			}
		} else {
			known = true // another pod under the name: this one is gone
		}
	case apierrors.IsNotFound(err):
		known, outcome = true, PodLookupNotFound
	case apierrors.IsForbidden(err):
		outcome = PodLookupForbidden
	default:
		outcome = PodLookupError
	}
	if ctx.Err() != nil && err != nil {
		return // stopping
	}
	if p.lookup != nil {
		p.lookup(outcome)
	}
	news := false
	p.mu.Lock()
	if e := p.entries[ref]; e != nil {
		e.inflight = false
		e.fetched, e.fetchedTerminating = p.now(), e.queuedTerminating
		news = !kill.IsZero() && !kill.Equal(e.kill) || known && !e.known
		e.kill = kill
		if known {
			e.known, e.revision, e.id = true, revision, id
		}
	}
	first := false
	if outcome == PodLookupForbidden {
		p.paused = p.now().Add(podForbiddenPause)
		first, p.told = !p.told, true
		news = p.identity.FromPod() // held endpoints now hash by address
	}
	p.mu.Unlock()
	switch {
	case first:
		p.log.Info("no permission to get pods: drain deadlines ignore pods' kill times, rollouts their revisions, and identities read from pods fall back to addresses (grant the optional Role of deploy/rbac-pods.yaml to use them)",
			zap.String("pod", ref.name), zap.Error(err))
	case outcome == PodLookupError:
		p.log.Debug("pod lookup failed; retried", zap.String("pod", ref.name), zap.Error(err))
	}
	if news {
		p.wake()
	}
}
