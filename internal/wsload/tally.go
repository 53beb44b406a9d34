package wsload

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Tally keeps, for the summary of a load run, the first few errors of each
// kind and the time of every reconnect. The zero value is ready; it is
// safe for concurrent use.
type Tally struct {
	mu         sync.Mutex
	errs       map[string][]string // kind -> its first errors
	reconnects []time.Time
}

// errsPerKind is how many errors of one kind a Tally keeps.
const errsPerKind = 5

// Sample records an error of kind, if fewer than a few of that kind are kept.
func (t *Tally) Sample(kind, format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.errs == nil {
		t.errs = map[string][]string{}
	}
	if len(t.errs[kind]) < errsPerKind {
		t.errs[kind] = append(t.errs[kind], fmt.Sprintf(format, args...))
	}
}

// Reconnected records a reconnect at at.
func (t *Tally) Reconnected(at time.Time) {
	t.mu.Lock()
	t.reconnects = append(t.reconnects, at)
	t.mu.Unlock()
}

// Reconnects returns how many reconnects were recorded.
func (t *Tally) Reconnects() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.reconnects)
}

// ReconnectPeak returns the most reconnects in one wall-clock bucket of
// width w (time.Second: whole seconds).
func (t *Tally) ReconnectPeak(w time.Duration) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return Peak(t.reconnects, w)
}

// ReconnectBuckets returns the reconnects counted by wall-clock bucket of
// width w (see Buckets): what a process sends another that sums several
// tallies before taking their peak.
func (t *Tally) ReconnectBuckets(w time.Duration) map[int64]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return Buckets(t.reconnects, w)
}

// Buckets counts ts by wall-clock bucket of width w: bucket b holds the
// times from b*w to (b+1)*w after the Unix epoch.
func Buckets(ts []time.Time, w time.Duration) map[int64]int {
	buckets := map[int64]int{}
	for _, at := range ts {
		buckets[at.UnixNano()/int64(w)]++
	}
	return buckets
}

// Peak returns the most of ts in one wall-clock bucket of width w.
func Peak(ts []time.Time, w time.Duration) int {
	peak := 0
	for _, n := range Buckets(ts, w) {
		peak = max(peak, n)
	}
	return peak
}

// Errors returns the errors kept, by kind in order, each on a line of its
// own that starts with "\n  kind: ", or "" if there were none.
func (t *Tally) Errors() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	kinds := make([]string, 0, len(t.errs))
	for k := range t.errs {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	var b strings.Builder
	for _, k := range kinds {
		for _, e := range t.errs[k] {
			fmt.Fprintf(&b, "\n  %s: %s", k, strings.Join(strings.Fields(e), " "))
		}
	}
	return b.String()
}
