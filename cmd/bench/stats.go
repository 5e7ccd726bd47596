package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// A sample is one figure's value in one run.
type sample struct {
	name  string  // e.g. pickup/longpoll/p50
	unit  string  // ms, jobs/s, MB/s, MB, s
	value float64 // in unit
	note  string  // e.g. n=200
}

// A goal is the target for a figure: the median must stay below
// (or reach at least) value.
type goal struct {
	atLeast bool
	value   float64
}

// A figure is one summary line: a named value measured in each run.
type figure struct {
	name   string
	unit   string
	values []float64
	note   string
	goal   *goal
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method; 0 for no data.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// ms converts d to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// latencies returns the p50 and p99 samples of durations, named prefix/p50
// and prefix/p99, in ms. It sorts durations.
func latencies(prefix string, durations []time.Duration) []sample {
	slices.Sort(durations)
	note := fmt.Sprintf("n=%d", len(durations))
	return []sample{
		{name: prefix + "/p50", unit: "ms", value: ms(percentile(durations, 50)), note: note},
		{name: prefix + "/p99", unit: "ms", value: ms(percentile(durations, 99)), note: note},
	}
}

// median returns the median of values (the mean of the middle two for an
// even count) and their minimum and maximum.
func median(values []float64) (med, lo, hi float64) {
	if len(values) == 0 {
		return 0, 0, 0
	}
	s := slices.Sorted(slices.Values(values))
	n := len(s)
	med = s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return med, s[0], s[n-1]
}

// collect groups the samples of every run into figures, in the order of
// their first appearance.
func collect(runs [][]sample) []*figure {
	var figs []*figure
	byName := map[string]*figure{}
	for _, run := range runs {
		for _, s := range run {
			f := byName[s.name]
			if f == nil {
				f = &figure{name: s.name, unit: s.unit}
				byName[s.name] = f
				figs = append(figs, f)
			}
			f.values = append(f.values, s.value)
			if s.note != "" {
				f.note = s.note
			}
		}
	}
	return figs
}

// formatValue prints v with three significant digits, without exponent.
func formatValue(v float64) string {
	a := math.Abs(v)
	switch {
	case a == 0:
		return "0"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// line is a figure's summary: the median, the spread over the runs, and
// the goal's verdict when it has one.
func (f *figure) line() string {
	med, lo, hi := median(f.values)
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s", f.name, formatValue(med), f.unit)
	if len(f.values) > 1 {
		fmt.Fprintf(&b, " (%s–%s, %d runs)", formatValue(lo), formatValue(hi), len(f.values))
	}
	if f.note != "" {
		fmt.Fprintf(&b, " %s", f.note)
	}
	if g := f.goal; g != nil {
		op, met := "<", med < g.value
		if g.atLeast {
			op, met = ">=", med >= g.value
		}
		verdict := "met"
		if !met {
			verdict = "NOT met"
		}
		fmt.Fprintf(&b, " [goal %s %s %s: %s]", op, formatValue(g.value), f.unit, verdict)
	}
	return b.String()
}

// writeText prints one summary line per figure.
func writeText(w io.Writer, figs []*figure) {
	for _, f := range figs {
		fmt.Fprintln(w, f.line())
	}
}

// writeBenchstat prints each run of each figure as a Go benchmark result
// line, which benchstat reads: it computes the median and spread itself.
func writeBenchstat(w io.Writer, figs []*figure) {
	for _, f := range figs {
		name := "Benchmark" + strings.ToUpper(f.name[:1]) + f.name[1:]
		for _, v := range f.values {
			fmt.Fprintf(w, "%s 1 %g %s\n", name, v, strings.ReplaceAll(f.unit, " ", "-"))
		}
	}
}
