package soak

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Point is one sample: when (since the run's start) and the value.
type Point struct {
	At    time.Duration
	Value float64
}

// Series is one probe's samples, the first taken after the warm-up.
type Series struct {
	Probe  Probe
	Points []Point
	// Errors counts the reads that failed; the first is kept.
	Errors   int
	FirstErr string
}

func (s *Series) read(at time.Duration) {
	v, err := s.Probe.Read()
	if err != nil {
		if s.Errors == 0 {
			s.FirstErr = err.Error()
		}
		s.Errors++
		return
	}
	s.Points = append(s.Points, Point{At: at, Value: v})
}

// Summary is a series' figures: its first sample (after the warm-up), its
// least and greatest, its last, and the least-squares slope per hour.
type Summary struct {
	Start, Min, Max, End, SlopePerHour float64
	N                                  int
}

// Summary summarizes the series; N is 0 when it has no sample.
func (s *Series) Summary() Summary {
	if len(s.Points) == 0 {
		return Summary{}
	}
	out := Summary{Start: s.Points[0].Value, End: s.Points[len(s.Points)-1].Value,
		Min: s.Points[0].Value, Max: s.Points[0].Value, N: len(s.Points)}
	var sx, sy float64
	for _, p := range s.Points {
		out.Min, out.Max = min(out.Min, p.Value), max(out.Max, p.Value)
		sx += p.At.Hours()
		sy += p.Value
	}
	n := float64(len(s.Points))
	mx, my := sx/n, sy/n
	var sxy, sxx float64
	for _, p := range s.Points {
		dx := p.At.Hours() - mx
		sxy += dx * (p.Value - my)
		sxx += dx * dx
	}
	if sxx > 0 {
		out.SlopePerHour = sxy / sxx
	}
	return out
}

// Problems lists every way the run broke the package's invariants: a
// failed call, a kind with no successful call, a client that opened more
// (or fewer) connections than it holds, an endpoint connection opened
// after the warm-up that the plan does not explain, a probe that could not
// be read or ended beyond its bound.
func (r *Result) Problems() []string {
	var out []string
	for _, t := range r.Calls {
		if t.Failed > 0 {
			out = append(out, fmt.Sprintf("%s: %d of %d failed; first: %s", t.Kind.Name, t.Failed, t.OK+t.Failed, strings.Join(t.Errors, "; ")))
		}
		if t.OK == 0 {
			out = append(out, fmt.Sprintf("%s: no call succeeded", t.Kind.Name))
		}
	}
	for _, c := range r.Conns {
		if c.Dialed != c.ClientWant {
			out = append(out, fmt.Sprintf("%s: clients opened %d connections to longhaul, want %d (one per client, none replaced but for idleness)", c.Lane, c.Dialed, c.ClientWant))
		}
		if c.BackendEnd != c.BackendWant {
			out = append(out, fmt.Sprintf("%s: longhaul opened %d connections to the backend (%d by the warm-up), want %d", c.Lane, c.BackendEnd, c.BackendWarm, c.BackendWant))
		}
	}
	for _, s := range r.Series {
		sum := s.Summary()
		switch {
		case s.Errors > 0:
			out = append(out, fmt.Sprintf("%s: %d reads failed; first: %s", s.Probe.Name, s.Errors, s.FirstErr))
		case sum.N == 0:
			out = append(out, fmt.Sprintf("%s: no sample", s.Probe.Name))
		case s.Probe.Bound > 0 && sum.End-sum.Start > s.Probe.Bound:
			out = append(out, fmt.Sprintf("%s: ended at %s, %s above its %s after the warm-up (bound %s)", s.Probe.Name,
				s.format(sum.End), s.format(sum.End-sum.Start), s.format(sum.Start), s.format(s.Probe.Bound)))
		}
	}
	return out
}

func (s *Series) format(v float64) string {
	if s.Probe.Unit == "MiB" {
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	}
	return fmt.Sprintf("%.0f", v)
}

func (s *Series) formatSlope(v float64) string {
	if s.Probe.Unit == "MiB" {
		return fmt.Sprintf("%+.2f MiB", v/(1<<20))
	}
	return fmt.Sprintf("%+.1f", v)
}

// Markdown writes the run's tables: calls, connections, figures.
func (r *Result) Markdown(w io.Writer) {
	p := r.Plan
	fmt.Fprintf(w, "Ran %v (warm-up %v, samples every %v); busy clients call every %v, quiet ones every %v.\n\n",
		r.Took.Round(time.Second), p.WarmUp, p.SampleEvery, p.Interval, p.QuietGap)
	fmt.Fprintln(w, "| calls | ok | failed |")
	fmt.Fprintln(w, "|---|---:|---:|")
	for _, t := range r.Calls {
		fmt.Fprintf(w, "| %s | %d | %d |\n", t.Kind.Name, t.OK, t.Failed)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| lane | client connections opened (want) | backend connections at warm-up, end (want) |")
	fmt.Fprintln(w, "|---|---:|---:|")
	for _, c := range r.Conns {
		fmt.Fprintf(w, "| %s | %d (%d) | %d, %d (%d) |\n", c.Lane, c.Dialed, c.ClientWant, c.BackendWarm, c.BackendEnd, c.BackendWant)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| figure | after warm-up | min | max | end | slope per hour |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
	for _, s := range r.Series {
		sum := s.Summary()
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", s.Probe.Name, s.format(sum.Start), s.format(sum.Min),
			s.format(sum.Max), s.format(sum.End), s.formatSlope(sum.SlopePerHour))
	}
	if probs := r.Problems(); len(probs) > 0 {
		fmt.Fprintf(w, "\nProblems:\n\n")
		for _, pr := range probs {
			fmt.Fprintf(w, "- %s\n", pr)
		}
	} else {
		fmt.Fprintf(w, "\nNo failure, no connection replaced.\n")
	}
}
