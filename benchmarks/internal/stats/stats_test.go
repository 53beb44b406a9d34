package stats

import (
	"math"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var l Latencies
	if got := l.Percentile(50); got != 0 {
		t.Errorf("empty p50 = %v, want 0", got)
	}
	for i := 100; i >= 1; i-- {
		l.Add(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Microsecond}, {99, 99 * time.Microsecond}, {100, 100 * time.Microsecond}, {0.001, time.Microsecond}} {
		if got := l.Percentile(c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	var m Latencies
	m.Add(time.Millisecond)
	l.Merge(&m)
	if l.Len() != 101 || l.Percentile(100) != time.Millisecond {
		t.Errorf("after Merge: len %d, max %v", l.Len(), l.Percentile(100))
	}
}

func TestSummarize(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want Summary
	}{
		{nil, Summary{}},
		{[]float64{math.NaN(), math.Inf(1)}, Summary{}},
		{[]float64{3}, Summary{N: 1, Median: 3, Min: 3, Max: 3}},
		{[]float64{3, 1, 2}, Summary{N: 3, Median: 2, Min: 1, Max: 3}},
		{[]float64{4, math.NaN(), 1, 2, 3}, Summary{N: 4, Median: 2.5, Min: 1, Max: 4}},
	} {
		if got := Summarize(c.in); got != c.want {
			t.Errorf("Summarize(%v) = %+v, want %+v", c.in, got, c.want)
		}
	}
}
