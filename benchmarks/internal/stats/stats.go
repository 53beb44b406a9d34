// Package stats holds the small statistics the comparison reports:
// latency percentiles of one run and the median and range of a figure over
// repetitions.
package stats

import (
	"math"
	"slices"
	"time"
)

// Latencies collects durations; the zero value is ready to use. It is not
// safe for concurrent use: give each goroutine its own and Merge them.
type Latencies struct {
	d      []time.Duration
	sorted bool
}

// Add records one duration.
func (l *Latencies) Add(d time.Duration) {
	l.d = append(l.d, d)
	l.sorted = false
}

// Merge adds every duration of o.
func (l *Latencies) Merge(o *Latencies) {
	l.d = append(l.d, o.d...)
	l.sorted = false
}

// Len is the number of durations recorded.
func (l *Latencies) Len() int { return len(l.d) }

// Percentile returns the p-th percentile (0 < p <= 100) by the
// nearest-rank method, or 0 when nothing was recorded.
func (l *Latencies) Percentile(p float64) time.Duration {
	if len(l.d) == 0 {
		return 0
	}
	if !l.sorted {
		slices.Sort(l.d)
		l.sorted = true
	}
	rank := int(math.Ceil(p / 100 * float64(len(l.d))))
	rank = min(max(rank, 1), len(l.d))
	return l.d[rank-1]
}

// Summary is the median and range of one figure over repetitions.
type Summary struct {
	N                int
	Median, Min, Max float64
}

// Summarize returns the median, minimum and maximum of the finite values
// of xs (NaN marks a repetition without the figure); N is 0 when none is
// finite.
func Summarize(xs []float64) Summary {
	v := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Summary{}
	}
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return Summary{N: len(v), Median: med, Min: v[0], Max: v[len(v)-1]}
}
