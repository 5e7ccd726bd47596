package ui

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strings"
	"time"
)

// Charts are drawn on the server as inline SVG: no script, no library.
// Each is a fixed viewBox scaled to the width of its container.

const (
	chartW, chartH = 440.0, 160.0
	padLeft        = 46.0
	padRight       = 10.0
	padTop         = 10.0
	padBottom      = 22.0
)

// point is one value at one instant.
type point struct {
	at time.Time
	v  float64
}

// series is a named, coloured sequence of points, or of bar heights (one
// per bucket) when drawn as bars.
type series struct {
	Name   string
	Color  string
	points []point
}

// chart is a drawn chart and the legend the template shows beside it.
type chart struct {
	SVG    template.HTML
	Legend []series
}

// frame maps times in [from, to] and values in [0, top] to the plot area.
type frame struct {
	from, to time.Time
	top      float64
	label    func(float64) string
}

func (f frame) x(t time.Time) float64 {
	span := f.to.Sub(f.from).Seconds()
	if span <= 0 {
		return padLeft
	}
	return padLeft + (chartW-padLeft-padRight)*t.Sub(f.from).Seconds()/span
}

func (f frame) y(v float64) float64 {
	return chartH - padBottom - (chartH-padTop-padBottom)*v/f.top
}

// open writes the SVG element, the grid, the y labels and the x labels:
// the clock time (UTC) every quarter of an hour.
func (f frame) open(b *strings.Builder, label string) {
	fmt.Fprintf(b, `<svg class="chart" viewBox="0 0 %g %g" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`, chartW, chartH, html.EscapeString(label))
	for i := 0; i <= 4; i++ {
		v := f.top * float64(i) / 4
		y := f.y(v)
		fmt.Fprintf(b, `<line x1="%g" x2="%g" y1="%.1f" y2="%.1f" stroke="#e3e6ea" stroke-width="1"/>`, padLeft, chartW-padRight, y, y)
		fmt.Fprintf(b, `<text x="%g" y="%.1f" text-anchor="end" font-size="11" fill="#5b6470">%s</text>`, padLeft-6, y+4, html.EscapeString(f.label(v)))
	}
	const tick = 15 * time.Minute
	for t := f.from.Truncate(tick); !t.After(f.to); t = t.Add(tick) {
		if t.Before(f.from) {
			continue
		}
		x, anchor := f.x(t), "middle"
		if x > chartW-padRight-16 {
			anchor = "end"
		}
		fmt.Fprintf(b, `<line x1="%.1f" x2="%.1f" y1="%g" y2="%g" stroke="#c9ced6" stroke-width="1"/>`, x, x, chartH-padBottom, chartH-padBottom+4)
		fmt.Fprintf(b, `<text x="%.1f" y="%g" text-anchor="%s" font-size="11" fill="#5b6470">%s</text>`, x, chartH-5, anchor, t.UTC().Format("15:04"))
	}
}

// empty writes the "no data" notice in the middle of the plot.
func empty(b *strings.Builder, msg string) {
	fmt.Fprintf(b, `<text x="%g" y="%g" text-anchor="middle" font-size="13" fill="#8a929c">%s</text>`, (chartW+padLeft)/2, chartH/2, html.EscapeString(msg))
}

// lineChart draws ss as lines over [from, to]; label formats y values.
func lineChart(label string, from, to time.Time, format func(float64) string, ss ...series) chart {
	f := frame{from: from, to: to, top: niceTop(maxOf(ss, nil)), label: format}
	var b strings.Builder
	f.open(&b, label)
	n := 0
	for _, s := range ss {
		n += len(s.points)
		if len(s.points) == 0 {
			continue
		}
		var path strings.Builder
		for i, p := range s.points {
			cmd := "L"
			if i == 0 {
				cmd = "M"
			}
			fmt.Fprintf(&path, "%s%.1f %.1f ", cmd, f.x(p.at), f.y(p.v))
		}
		fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="2" stroke-linejoin="round"/>`, strings.TrimSpace(path.String()), s.Color)
		last := s.points[len(s.points)-1]
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s: %s</title></circle>`, f.x(last.at), f.y(last.v), s.Color, html.EscapeString(s.Name), html.EscapeString(format(last.v)))
	}
	if n == 0 {
		empty(&b, "No samples yet")
	}
	b.WriteString(`</svg>`)
	return chart{SVG: template.HTML(b.String()), Legend: ss}
}

// barChart draws buckets of width step over [from, to], one bar per
// bucket, its series stacked; points of each series are at the buckets'
// starts.
// dots, when given, are drawn as markers over the bars (e.g. a maximum).
func barChart(label string, from, to time.Time, step time.Duration, format func(float64) string, stacked []series, dots *series) chart {
	totals := map[time.Time]float64{}
	for _, s := range stacked {
		for _, p := range s.points {
			totals[p.at] += p.v
		}
	}
	var dotPoints []series
	if dots != nil {
		dotPoints = []series{*dots}
	}
	f := frame{from: from, to: to, top: niceTop(math.Max(maxOf(nil, totals), maxOf(dotPoints, nil))), label: format}
	var b strings.Builder
	f.open(&b, label)
	width := f.x(from.Add(step)) - f.x(from)
	base := map[time.Time]float64{}
	for _, s := range stacked {
		for _, p := range s.points {
			if p.v <= 0 {
				continue
			}
			y0, y1 := f.y(base[p.at]), f.y(base[p.at]+p.v)
			base[p.at] += p.v
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s–%s: %s %s</title></rect>`,
				f.x(p.at)+1.5, y1, math.Max(width-3, 1), y0-y1, s.Color,
				p.at.UTC().Format("15:04"), p.at.Add(step).UTC().Format("15:04"), html.EscapeString(format(p.v)), html.EscapeString(s.Name))
		}
	}
	if dots != nil {
		for _, p := range dots.points {
			cx := f.x(p.at) + width/2
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="3" stroke-linecap="round"><title>%s–%s: %s %s</title></line>`,
				cx-width/3, cx+width/3, f.y(p.v), f.y(p.v), dots.Color,
				p.at.UTC().Format("15:04"), p.at.Add(step).UTC().Format("15:04"), html.EscapeString(dots.Name), html.EscapeString(format(p.v)))
		}
	}
	if len(totals) == 0 {
		empty(&b, "No jobs finished in the last hour")
	}
	b.WriteString(`</svg>`)
	legend := stacked
	if dots != nil {
		legend = append(legend[:len(legend):len(legend)], *dots)
	}
	return chart{SVG: template.HTML(b.String()), Legend: legend}
}

// maxOf is the largest value among the points of ss and the values of m.
func maxOf(ss []series, m map[time.Time]float64) float64 {
	top := 0.0
	for _, s := range ss {
		for _, p := range s.points {
			top = math.Max(top, p.v)
		}
	}
	for _, v := range m {
		top = math.Max(top, v)
	}
	return top
}

// niceTop rounds v up to a value whose quarters are round: 1, 2, 4, 5, 8,
// 10, 20, 40, 50, 80... times a power of ten.
func niceTop(v float64) float64 {
	if v <= 0 {
		return 4
	}
	mag := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 4, 5, 8, 10} {
		if v <= m*mag {
			if m*mag < 4 && v <= 4 {
				return 4 // counts: ticks at whole numbers
			}
			return m * mag
		}
	}
	return 10 * mag
}

// countLabel formats a count for an axis.
func countLabel(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%d", int(v))
	}
	return fmt.Sprintf("%.1f", v)
}

// secondsLabel formats seconds for an axis: "0", "750ms", "30s", "2.5m", "1.5h".
func secondsLabel(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 1:
		return fmt.Sprintf("%dms", int(math.Round(v*1000)))
	case v < 120:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v), ".0") + "s"
	case v < 7200:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v/60), ".0") + "m"
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", v/3600), ".0") + "h"
}
