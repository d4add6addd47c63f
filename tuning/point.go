package tuning

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"

	"github.com/demandpipe/demandpipe/pipeline"
	"github.com/demandpipe/demandpipe/sink"
)

// Point is one setting of the swept knobs.
type Point struct {
	Parallelism int
	Writers     int
	BatchRows   int
}

func (p Point) String() string {
	return fmt.Sprintf("parallelism=%d writers=%d batch-rows=%d", p.Parallelism, p.Writers, p.BatchRows)
}

// InFlightRows is the most rows the point's writers have in flight at once
// (Writers x BatchRows): what the recommendation keeps small.
func (p Point) InFlightRows() int { return p.Writers * p.BatchRows }

// How a point's run ended (Result.Stop).
const (
	StopSteady    = "steady"
	StopInputEnd  = "input ended"
	StopTimeBound = "time bound"
)

// Result is one point's measurements, over the measured span: the steady
// windows, or else every window after the warm-up.
type Result struct {
	Point
	// RowsPerSec are rows acknowledged by the store per second;
	// EventsPerSec raw events the engine consumed per second, or, when it
	// had read its whole input before the span (the sink is the slower:
	// a replay is read ahead, and the table said 0 events/s), the events
	// that rate of rows stands for at the run's events per row
	// (eventsRate).
	RowsPerSec, EventsPerSec float64
	// P99Write is the upper bound of the write-latency histogram bucket
	// that holds the 99th percentile of write attempts (the sink queue's
	// demandpipe_sink_write_duration_seconds: buckets double from 0.25 ms,
	// so a 2.1 ms write reads as <= 4 ms); +Inf past the last bucket (8 s),
	// 0 with no write measured. MeanWrite is exact (sum / count).
	P99Write, MeanWrite time.Duration
	// Writes and Failures are write attempts (batches) in the span, and
	// those that failed (each retried by the queue).
	Writes, Failures int64
	// RowsPerBatch is the mean size of the batches sent in the span: a
	// batch holds one partition's rows, so it falls short of BatchRows
	// when partitions hold fewer rows than that.
	RowsPerBatch float64
	// PeakHeapBytes is the largest live heap beyond the replayed events
	// (the heap marked live by a GC: engine, queue, driver and, with
	// cqltest:, the double's stored rows), sampled every 100 ms;
	// PeakRSSBytes the process's resident size, sampled alike (events, the
	// in-process double and the garbage GOGC allows included).
	PeakHeapBytes, PeakRSSBytes int64
	// Steady says whether the point was steady (Config.SteadyWindows);
	// Stop says how its run ended: StopSteady, StopInputEnd or
	// StopTimeBound.
	Steady bool
	Stop   string
	// Windows are the rows/s of every complete window from the first
	// acknowledged row on, warm-up included.
	Windows []float64
	// Measured is the span the rates cover; Seconds the point's wall time
	// (opening the sink to closing it); Rows rows acknowledged in the span.
	Measured time.Duration
	Seconds  float64
	Rows     int64
	// Err is why the point failed ("" if it did not); a failed point is
	// never recommended.
	Err string
}

// mark is the counters at a window boundary.
type mark struct {
	t        time.Time
	rows     int64
	lines    int64
	failures int64
	hist     sink.Histogram
	batches  sink.Histogram
}

// runPoint replays data through a fresh engine into a fresh sink set to p,
// measuring windows until the point is steady, the input ends or the time
// bound passes.
func (c Config) runPoint(ctx context.Context, data []byte, p Point) (res Result) {
	res.Point = p
	runtime.GC()
	debug.FreeOSMemory() // the previous point's garbage must not count as this one's RSS
	// -parallelism is the cores used, as in `demandpipe run`.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(p.Parallelism))
	start := time.Now()
	defer func() { res.Seconds = time.Since(start).Seconds() }()

	tgt, closeTarget, err := c.open(ctx, p)
	if err != nil {
		res.Err = err.Error()
		return res
	}
	// MaxPointTime bounds the run, not opening the sink (a schema made
	// of statements that each take the service time).
	runStart := time.Now()
	ecfg := c.Engine
	ecfg.Parallelism = p.Parallelism
	e, err := pipeline.New(ecfg)
	if err != nil {
		tgt.Close()
		closeTarget()
		res.Err = err.Error()
		return res
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx, bytes.NewReader(data), tgt) }()

	snap := func() mark {
		qs := tgt.QueueStats()
		return mark{t: time.Now(), rows: qs.SentItems, lines: e.Stats.Lines.Load(), failures: qs.Failures, hist: qs.SendSeconds, batches: qs.BatchItems}
	}
	origin := mark{t: runStart, hist: tgt.QueueStats().SendSeconds, batches: tgt.QueueStats().BatchItems}
	var marks []mark // marks[0]: the first acknowledged row; then one per window
	mem := newMemSampler(int64(len(data)))
	tick := time.NewTicker(min(c.Window/4, 100*time.Millisecond))
	defer tick.Stop()
	var runErr error
	stopped := false // by us: the Run's context error is ours
loop:
	for {
		select {
		case runErr = <-done:
			res.Stop = StopInputEnd
			marks = append(marks, snap())
			break loop
		case <-tick.C:
		}
		mem.sample()
		m := snap()
		switch {
		case len(marks) == 0:
			if m.rows > 0 {
				marks = append(marks, m)
			}
		case m.t.Sub(marks[len(marks)-1].t) >= c.Window:
			marks = append(marks, m)
			res.Windows = append(res.Windows, rate(marks[len(marks)-2], m))
			if w := res.Windows[min(c.WarmupWindows, len(res.Windows)):]; c.SteadyWindows > 0 {
				if ok, _ := Steady(w, c.SteadyWindows, c.Tolerance); ok {
					res.Steady, res.Stop = true, StopSteady
				}
			}
		}
		if !res.Steady && m.t.Sub(runStart) >= c.MaxPointTime {
			res.Stop = StopTimeBound
		}
		if res.Stop != "" || ctx.Err() != nil {
			stopped = true
			cancel()
			runErr = <-done
			break loop
		}
	}
	mem.sample()
	end := snap()
	if runErr != nil && !(stopped && errors.Is(runErr, context.Canceled)) {
		res.Err = runErr.Error()
	}
	if ctx.Err() != nil && res.Err == "" {
		res.Err = ctx.Err().Error()
	}

	// The measured span: the steady windows; else every window after the
	// warm-up (with the input's last partial window); else all of the run
	// (no row, or no whole window, before it ended).
	from, to := origin, end
	switch n := len(marks); {
	case res.Steady:
		from, to = marks[n-1-c.SteadyWindows], marks[n-1]
	case n >= 2:
		from, to = marks[min(c.WarmupWindows, n-2)], marks[n-1]
	}
	if d := to.t.Sub(from.t); d > 0 {
		s := d.Seconds()
		res.Measured = d
		res.Rows = to.rows - from.rows
		res.RowsPerSec = float64(res.Rows) / s
		res.EventsPerSec = eventsRate(from, to, end, res.RowsPerSec, s)
		res.Failures = to.failures - from.failures
		h := histDelta(from.hist, to.hist)
		res.Writes = int64(h.Count)
		if h.Count > 0 {
			res.MeanWrite = time.Duration(h.Sum / float64(h.Count) * 1e9)
			res.P99Write = quantileBound(h, 0.99)
		}
		if bh := histDelta(from.batches, to.batches); bh.Count > 0 {
			res.RowsPerBatch = bh.Sum / float64(bh.Count)
		}
	}
	res.PeakHeapBytes, res.PeakRSSBytes = mem.peakHeap, mem.peakRSS

	// Rows still queued after a stop are abandoned once StopDrain passes:
	// the queue then reports them dropped, which is ours, not the sink's.
	cerr := tgt.Close()
	closeTarget()
	if cerr != nil && res.Err == "" && !(stopped && errors.Is(cerr, sink.ErrDropped)) {
		res.Err = cerr.Error()
	}
	return res
}

// rate is rows per second between two marks.
func rate(a, b mark) float64 {
	d := b.t.Sub(a.t).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(b.rows-a.rows) / d
}

// histDelta is b - a for two snapshots of one histogram.
func histDelta(a, b sink.Histogram) sink.Histogram {
	out := sink.Histogram{Bounds: b.Bounds, Counts: make([]uint64, len(b.Counts)), Count: b.Count - a.Count, Sum: b.Sum - a.Sum}
	for i := range b.Counts {
		out.Counts[i] = b.Counts[i]
		if i < len(a.Counts) {
			out.Counts[i] -= a.Counts[i]
		}
	}
	return out
}

// quantileBound is the upper bound of the bucket holding quantile q of h:
// a bound the quantile is certainly under (+Inf past the last bucket).
func quantileBound(h sink.Histogram, q float64) time.Duration {
	if h.Count == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.Count)))
	var c uint64
	for i, b := range h.Bounds {
		c += h.Counts[i]
		if c >= rank {
			return time.Duration(b * 1e9)
		}
	}
	return time.Duration(math.MaxInt64)
}

// memSampler keeps the peak live heap (beyond base bytes) and RSS.
type memSampler struct {
	base              int64
	s                 []metrics.Sample
	peakHeap, peakRSS int64
}

func newMemSampler(base int64) *memSampler {
	return &memSampler{base: base, s: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
}

func (m *memSampler) sample() {
	metrics.Read(m.s)
	if m.s[0].Value.Kind() == metrics.KindUint64 {
		m.peakHeap = max(m.peakHeap, int64(m.s[0].Value.Uint64())-m.base)
	}
	m.peakRSS = max(m.peakRSS, rss())
}

// rss is the process's resident set (Linux /proc/self/statm), or 0.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}

// eventsRate is the events per second of the span from..to (s seconds):
// the lines read in it, or, when none was (the whole input was read before
// the span), rowsPerSec at the run's events per row (end: the whole run).
func eventsRate(from, to, end mark, rowsPerSec, s float64) float64 {
	if n := to.lines - from.lines; n > 0 || end.rows == 0 {
		return float64(n) / s
	}
	return rowsPerSec * float64(end.lines) / float64(end.rows)
}
