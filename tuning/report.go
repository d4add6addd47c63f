package tuning

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// WriteTable prints the sweep: a header, one line per point with every
// measurement, then rows/s as a grid (batch rows down, writers across) per
// parallelism, as in sink/CASSANDRA.md, and the recommendation. Tables are
// Markdown, so they paste into a document.
func (rep *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "sink: %s\n", rep.Sink)
	fmt.Fprintf(&b, "input: %s events (%s MB) generated in %.1fs, replayed from memory at every point\n",
		groupDigits(float64(rep.Events)), megabytes(rep.DataBytes), rep.GenSeconds)
	if rep.SteadyWindows > 0 {
		fmt.Fprintf(&b, "steady: %d windows of %v each within ±%.0f%% of their mean rows/s\n\n", rep.SteadyWindows, rep.Window, 100*rep.Tolerance)
	} else {
		fmt.Fprintf(&b, "each point runs to the end of the events (windows of %v)\n\n", rep.Window)
	}
	b.WriteString("| parallelism | writers | batch rows | rows/s | events/s | p99 write | mean write | rows/batch | heap MB | RSS MB | stop | s |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n")
	for _, r := range rep.Results {
		if r.Err != "" {
			fmt.Fprintf(&b, "| %d | %d | %d | failed: %s ||||||||| %.1f |\n", r.Parallelism, r.Writers, r.BatchRows, strings.ReplaceAll(r.Err, "|", "/"), r.Seconds)
			continue
		}
		fmt.Fprintf(&b, "| %d | %d | %d | %s | %s | %s | %s | %.1f | %s | %s | %s | %.1f |\n",
			r.Parallelism, r.Writers, r.BatchRows, groupDigits(r.RowsPerSec), groupDigits(r.EventsPerSec),
			p99String(r.P99Write), fmtDuration(r.MeanWrite), r.RowsPerBatch, megabytes(r.PeakHeapBytes), megabytes(r.PeakRSSBytes), r.Stop, r.Seconds)
	}
	for _, par := range uniq(rep.Results, func(r Result) int { return r.Parallelism }) {
		writers := uniq(rep.Results, func(r Result) int { return r.Writers })
		fmt.Fprintf(&b, "\nrows/s at parallelism=%d\n\n| batch rows \\ writers |", par)
		for _, wr := range writers {
			fmt.Fprintf(&b, " %d |", wr)
		}
		b.WriteString("\n|---|" + strings.Repeat("---:|", len(writers)) + "\n")
		for _, br := range uniq(rep.Results, func(r Result) int { return r.BatchRows }) {
			fmt.Fprintf(&b, "| %d |", br)
			for _, wr := range writers {
				cell := "-"
				for _, r := range rep.Results {
					if r.Point == (Point{par, wr, br}) {
						cell = "failed"
						if r.Err == "" {
							cell = groupDigits(r.RowsPerSec)
						}
					}
				}
				fmt.Fprintf(&b, " %s |", cell)
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("\n")
	if rep.RecommendErr != nil {
		fmt.Fprintf(&b, "no recommendation: %v\n", rep.RecommendErr)
	} else {
		fmt.Fprintf(&b, "recommended: %s\n  because %s\n", rep.Recommendation.Flags(), rep.Recommendation.Reason)
	}
	fmt.Fprintf(&b, "sweep took %.1fs (%d points)\n", rep.Seconds, len(rep.Results))
	_, err := io.WriteString(w, b.String())
	return err
}

// CSVHeader are the columns of WriteCSV.
var CSVHeader = []string{"parallelism", "writers", "batch_rows", "rows_per_second", "events_per_second",
	"p99_write_seconds", "mean_write_seconds", "writes", "write_failures", "rows_per_batch", "peak_heap_bytes", "peak_rss_bytes",
	"steady", "stop", "measured_seconds", "point_seconds", "rows", "recommended", "error"}

// WriteCSV writes one line per point under CSVHeader. p99_write_seconds is
// the bucket bound (Result.P99Write), "+Inf" past the last bucket.
func (rep *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write(CSVHeader)
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }
	for _, r := range rep.Results {
		p99 := f(r.P99Write.Seconds())
		if r.P99Write == time.Duration(math.MaxInt64) {
			p99 = "+Inf"
		}
		cw.Write([]string{
			strconv.Itoa(r.Parallelism), strconv.Itoa(r.Writers), strconv.Itoa(r.BatchRows),
			f(r.RowsPerSec), f(r.EventsPerSec), p99, f(r.MeanWrite.Seconds()),
			strconv.FormatInt(r.Writes, 10), strconv.FormatInt(r.Failures, 10), f(r.RowsPerBatch),
			strconv.FormatInt(r.PeakHeapBytes, 10), strconv.FormatInt(r.PeakRSSBytes, 10),
			strconv.FormatBool(r.Steady), r.Stop, f(r.Measured.Seconds()), f(r.Seconds), strconv.FormatInt(r.Rows, 10),
			strconv.FormatBool(rep.RecommendErr == nil && r.Point == rep.Recommendation.Point), r.Err,
		})
	}
	cw.Flush()
	return cw.Error()
}

// uniq returns the distinct values of key over rs, ascending.
func uniq(rs []Result, key func(Result) int) []int {
	var out []int
	for _, r := range rs {
		v := key(r)
		i := 0
		for i < len(out) && out[i] < v {
			i++
		}
		if i == len(out) || out[i] != v {
			out = append(out[:i], append([]int{v}, out[i:]...)...)
		}
	}
	return out
}

// groupDigits formats v rounded, with thousands separators: 182,345.
func groupDigits(v float64) string {
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// fmtDuration prints a latency compactly: 250us, 4ms, 1.02s, "-" for none.
func fmtDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d == time.Duration(math.MaxInt64):
		return "inf"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fus", float64(d)/1e3)
	case d < 10*time.Millisecond:
		return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", float64(d)/1e6), "0"), ".") + "ms"
	case d < time.Second:
		return fmt.Sprintf("%.0fms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// p99String is a p99 bound as "<= 4ms", or "-" with no write measured.
func p99String(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return "<= " + fmtDuration(d)
}

func megabytes(n int64) string { return strconv.FormatFloat(float64(n)/1e6, 'f', 0, 64) }
