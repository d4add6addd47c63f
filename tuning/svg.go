package tuning

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// The chart's geometry, in SVG user units (pixels).
const (
	svgWidth       = 760
	svgPanelHeight = 340
	svgTop         = 56 // the title
	svgLeft        = 84
	svgRight       = 170 // the legend
	svgPanelTop    = 36  // a panel's title above its plot
	svgPanelBottom = 52  // the x axis' labels
)

// svgColors tell batch sizes apart (the Okabe-Ito palette, readable by the
// colour-blind), in grid order; more sizes reuse them with dashes.
var svgColors = []string{"#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#000000", "#F0E442"}

// WriteSVG draws rows/s against writers, one line per batch size, one
// panel per parallelism. Writers are evenly spaced in grid order (grids
// are usually geometric). A filled marker is a steady point, a hollow one
// a point that was not; the recommended point is ringed.
func (rep *Report) WriteSVG(w io.Writer) error {
	pars := uniq(rep.Results, func(r Result) int { return r.Parallelism })
	writers := uniq(rep.Results, func(r Result) int { return r.Writers })
	batches := uniq(rep.Results, func(r Result) int { return r.BatchRows })
	height := svgTop + len(pars)*svgPanelHeight + 10
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		svgWidth, height, svgWidth, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", svgWidth, height)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", svgLeft, esc("demandpipe tune: rows/s by sink writers, one line per batch size"))
	fmt.Fprintf(&b, `<text x="%d" y="40" fill="#555">%s</text>`+"\n", svgLeft, esc("sink: "+rep.Sink))

	maxRate := 0.0
	for _, r := range rep.Results {
		if r.Err == "" {
			maxRate = max(maxRate, r.RowsPerSec)
		}
	}
	step := niceStep(maxRate / 5)
	yMax := step * math.Ceil(maxRate/step)
	if yMax <= 0 {
		yMax, step = 1, 1
	}
	plotW := float64(svgWidth - svgLeft - svgRight)
	plotH := float64(svgPanelHeight - svgPanelTop - svgPanelBottom)
	const pad = 30 // keeps the end points off the axis and the legend
	xOf := func(i int) float64 {
		if len(writers) == 1 {
			return svgLeft + plotW/2
		}
		return svgLeft + pad + (plotW-2*pad)*float64(i)/float64(len(writers)-1)
	}
	for pi, par := range pars {
		top := float64(svgTop + pi*svgPanelHeight + svgPanelTop)
		yOf := func(v float64) float64 { return top + plotH*(1-v/yMax) }
		fmt.Fprintf(&b, `<g id="parallelism-%d">`+"\n", par)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-weight="bold">parallelism=%d</text>`+"\n", svgLeft, top-12, par)
		// Axes, grid lines and labels.
		for v := 0.0; v <= yMax+step/2; v += step {
			y := yOf(v)
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", svgLeft, y, svgLeft+plotW, y)
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", svgLeft-6, y+4, esc(shortNum(v)))
		}
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#333"/>`+"\n", svgLeft, top, svgLeft, top+plotH)
		for i, wr := range writers {
			x := xOf(i)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333"/>`+"\n", x, top+plotH, x, top+plotH+4)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%d</text>`+"\n", x, top+plotH+18, wr)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">sink.writers</text>`+"\n", svgLeft+plotW/2, top+plotH+38)
		fmt.Fprintf(&b, `<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle">rows/s</text>`+"\n", top+plotH/2)
		// One line per batch size; a failed point breaks it.
		for bi, br := range batches {
			color := svgColors[bi%len(svgColors)]
			dash := ""
			if bi >= len(svgColors) {
				dash = ` stroke-dasharray="6 3"`
			}
			var seg []string
			flush := func() {
				if len(seg) > 1 {
					fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`+"\n", color, dash, strings.Join(seg, " "))
				}
				seg = seg[:0]
			}
			var marks []string
			for i, wr := range writers {
				r, found := rep.result(Point{par, wr, br})
				if !found || r.Err != "" {
					flush()
					continue
				}
				x, y := xOf(i), yOf(r.RowsPerSec)
				seg = append(seg, fmt.Sprintf("%.1f,%.1f", x, y))
				fill := color
				if !r.Steady {
					fill = "white"
				}
				marks = append(marks, fmt.Sprintf(`<circle cx="%.1f" cy="%.1f" r="4" fill="%s" stroke="%s" stroke-width="2"><title>%s</title></circle>`,
					x, y, fill, color, esc(r.String())))
				if rep.RecommendErr == nil && r.Point == rep.Recommendation.Point {
					marks = append(marks, fmt.Sprintf(`<circle cx="%.1f" cy="%.1f" r="9" fill="none" stroke="black" stroke-width="1.5"/>`, x, y),
						fmt.Sprintf(`<text x="%.1f" y="%.1f" text-anchor="end" font-weight="bold">recommended</text>`, x-12, y-10))
				}
			}
			flush()
			for _, m := range marks {
				b.WriteString(m + "\n")
			}
		}
		// The legend.
		lx := float64(svgWidth - svgRight + 20)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-weight="bold">batch rows</text>`+"\n", lx, top+4)
		for bi, br := range batches {
			y := top + 24 + 20*float64(bi)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`+"\n", lx, y-4, lx+24, y-4, svgColors[bi%len(svgColors)])
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%d</text>`+"\n", lx+30, y, br)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#555">hollow: not steady</text>`+"\n", lx, top+24+20*float64(len(batches))+8)
		b.WriteString("</g>\n")
	}
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

func (rep *Report) result(p Point) (Result, bool) {
	for _, r := range rep.Results {
		if r.Point == p {
			return r, true
		}
	}
	return Result{}, false
}

// niceStep rounds v up to 1, 2 or 5 times a power of ten.
func niceStep(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// shortNum writes an axis label: 0, 500, 20k, 1.5M.
func shortNum(v float64) string {
	f := func(x float64, unit string) string { return strconv.FormatFloat(x, 'f', -1, 64) + unit }
	switch {
	case v >= 1e6:
		return f(math.Round(v/1e5)/10, "M")
	case v >= 1e3:
		return f(math.Round(v/1e2)/10, "k")
	}
	return f(math.Round(v), "")
}

func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
