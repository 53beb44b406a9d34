package monitoring

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// metricNameRE matches a longhaul metric name in a PromQL expression. No
// label name or function of PromQL starts with longhaul_, and the
// expressions here quote no label value that does, so every match is a
// metric name (checked by TestMetricNamesOfExpressions).
var metricNameRE = regexp.MustCompile(`\blonghaul_[a-zA-Z0-9_]*[a-zA-Z0-9]`)

// metricNames returns the distinct longhaul metric names expr uses, sorted.
func metricNames(expr string) []string {
	names := metricNameRE.FindAllString(expr, -1)
	slices.Sort(names)
	return slices.Compact(names)
}

// histogramSuffixes are the series names a histogram family exposes
// beside its own name.
var histogramSuffixes = []string{"_bucket", "_sum", "_count"}

// familyOf returns the metric family that exports series name: name
// itself, or for a histogram's series the histogram's name. families maps
// each exported family to whether it is a histogram.
func familyOf(name string, families map[string]bool) (string, bool) {
	if _, ok := families[name]; ok {
		return name, true
	}
	for _, s := range histogramSuffixes {
		if base, ok := strings.CutSuffix(name, s); ok && families[base] {
			return base, true
		}
	}
	return "", false
}

func TestMetricNamesOfExpressions(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`sum by (listener) (rate(longhaul_request_duration_seconds_count{class=~"5xx|error"}[5m])) / sum by (listener) (rate(longhaul_request_duration_seconds_count[5m]))`,
			[]string{"longhaul_request_duration_seconds_count"}},
		{`longhaul_panics_total unless longhaul_panics_total offset 10m`, []string{"longhaul_panics_total"}},
		{`histogram_quantile(0.99, sum by (le) (rate(longhaul_picker_build_seconds_bucket[1m]))) > on() group_left longhaul_endpoints`,
			[]string{"longhaul_endpoints", "longhaul_picker_build_seconds_bucket"}},
		{`label_values(longhaul_endpoints{namespace=~"$namespace"}, pod)`, []string{"longhaul_endpoints"}},
		{`up{job="x_longhaul_y"}`, nil},
	} {
		if got := metricNames(c.expr); !slices.Equal(got, c.want) {
			t.Errorf("metricNames(%q) = %q, want %q", c.expr, got, c.want)
		}
	}
	fams := map[string]bool{"longhaul_request_duration_seconds": true, "longhaul_endpoints": false}
	for name, want := range map[string]string{
		"longhaul_request_duration_seconds_bucket": "longhaul_request_duration_seconds",
		"longhaul_request_duration_seconds":        "longhaul_request_duration_seconds",
		"longhaul_endpoints":                       "longhaul_endpoints",
		"longhaul_endpoints_count":                 "", // not a histogram
		"longhaul_nothing":                         "",
	} {
		if got, _ := familyOf(name, fams); got != want {
			t.Errorf("familyOf(%q) = %q, want %q", name, got, want)
		}
	}
}

// FuzzMetricNames: metricNames returns sorted, distinct names, each a
// valid longhaul metric name that occurs in the expression.
func FuzzMetricNames(f *testing.F) {
	for _, s := range []string{
		`sum(rate(longhaul_bytes_total{listener=~"$listener"}[5m]))`,
		`longhaul_a longhaul_a longhaul_b_`,
		`xlonghaul_x longhaul_ longhaul__x_`,
	} {
		f.Add(s)
	}
	valid := regexp.MustCompile(`^longhaul_[a-zA-Z0-9_]*[a-zA-Z0-9]$`)
	f.Fuzz(func(t *testing.T, expr string) {
		names := metricNames(expr)
		for i, n := range names {
			if !valid.MatchString(n) || !strings.Contains(expr, n) {
				t.Fatalf("metricNames(%q): %q is not a longhaul name in it", expr, n)
			}
			if i > 0 && names[i-1] >= n {
				t.Fatalf("metricNames(%q) = %q: not sorted and distinct", expr, names)
			}
		}
	})
}
