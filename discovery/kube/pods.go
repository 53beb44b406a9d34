package kube

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

// Pod lookup outcomes, as Hooks.PodLookup receives them.
const (
	PodLookupKillTime  = "kill_time" // the pod has a deletion timestamp
	PodLookupNoKill    = "no_kill"   // the pod is not being deleted (yet), or is another pod now
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

// podTimes finds the kill times (metadata.deletionTimestamp) of the pods
// behind terminating endpoints, for drain deadlines. Reading pods is an
// optional permission: without it, endpoints simply carry no kill time.
//
// It never blocks a snapshot: killTime answers from a cache and queues a
// lookup for a pod it does not know; a few workers GET the pods and, when a
// kill time is found, wake the sync loop, whose next build carries it. A
// pod is fetched once while its endpoint is terminating (again, at most
// every podRetry, while it shows no deletion timestamp), so a hundred
// terminating pods cost a hundred GETs in all, not per snapshot. A kill time
// once found is kept while the endpoint stays terminating (a second delete
// with a shorter grace period is not seen).
type podTimes struct {
	pods   corev1client.PodInterface
	log    *zap.Logger
	lookup func(outcome string) // may be nil
	wake   func()

	queue chan podRef

	mu      sync.Mutex
	entries map[podRef]*podEntry
	paused  time.Time // no lookups before this (after a 403)
	told    bool      // the missing permission was logged
}

type podEntry struct {
	kill     time.Time
	fetched  time.Time // zero until a lookup ended
	inflight bool
	wanted   bool // by the current build
}

func newPodTimes(pods corev1client.PodInterface, log *zap.Logger, lookup func(string), wake func()) *podTimes {
	return &podTimes{
		pods:    pods,
		log:     log,
		lookup:  lookup,
		wake:    wake,
		queue:   make(chan podRef, podQueue),
		entries: make(map[podRef]*podEntry),
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

// build brackets one snapshot build: killTime is called inside it, and the
// pods no build asked for are forgotten after it.
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

// killTime returns the pod's kill time if known, else zero, and queues a
// lookup when one is due. It never blocks.
func (p *podTimes) killTime(ref podRef) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.entries[ref]
	if e == nil {
		e = &podEntry{}
		p.entries[ref] = e
	}
	e.wanted = true
	if !e.kill.IsZero() || e.inflight {
		return e.kill
	}
	now := time.Now()
	if now.Before(p.paused) || (!e.fetched.IsZero() && now.Sub(e.fetched) < podRetry) {
		return e.kill
	}
	select {
	case p.queue <- ref:
		e.inflight = true
	default: // full: a later build asks again
	}
	return e.kill
}

// fetch GETs one pod and records what it says.
func (p *podTimes) fetch(ctx context.Context, ref podRef) {
	gctx, cancel := context.WithTimeout(ctx, podTimeout)
	pod, err := p.pods.Get(gctx, ref.name, metav1.GetOptions{})
	cancel()
	var kill time.Time
	outcome := PodLookupNoKill
	switch {
	case err == nil:
		if dt := pod.DeletionTimestamp; dt != nil && (ref.uid == "" || string(pod.UID) == ref.uid) {
			kill, outcome = dt.Time, PodLookupKillTime
		}
	case apierrors.IsNotFound(err):
		outcome = PodLookupNotFound
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
	p.mu.Lock()
	if e := p.entries[ref]; e != nil {
		e.inflight = false
		e.fetched = time.Now()
		e.kill = kill
	}
	first := false
	if outcome == PodLookupForbidden {
		p.paused = time.Now().Add(podForbiddenPause)
		first, p.told = !p.told, true
	}
	p.mu.Unlock()
	switch {
	case first:
		p.log.Info("no permission to get pods: drain deadlines ignore pods' kill times (grant the optional Role of deploy/rbac-pods.yaml to use them)",
			zap.String("pod", ref.name), zap.Error(err))
	case outcome == PodLookupError:
		p.log.Debug("pod lookup failed; retried", zap.String("pod", ref.name), zap.Error(err))
	}
	if !kill.IsZero() {
		p.wake()
	}
}
