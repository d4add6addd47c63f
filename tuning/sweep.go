package tuning

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/demandpipe/demandpipe/gen"
)

// Report is a finished sweep.
type Report struct {
	// Sink describes where rows went ("cqltest (service time 2ms)" or the
	// cluster's hosts); Events and DataBytes the replayed input.
	Sink      string
	Events    int
	DataBytes int64
	// GenSeconds is the time taken to generate the events; Seconds the
	// whole sweep's wall time, generation included.
	GenSeconds, Seconds float64
	Window              time.Duration
	SteadyWindows       int
	Tolerance           float64
	Results             []Result
	// Recommendation is valid when RecommendErr is nil.
	Recommendation Recommendation
	RecommendErr   error
	Within         float64
	MaxP99         time.Duration
}

// Run generates the events once and runs every point of the sweep in
// order (Config.Points), each with a fresh engine and sink. A point that
// fails is reported in its Result and the sweep goes on; Run fails only
// on a bad config, or when ctx is done (with the points run so far).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	data, err := gen.Generate(cfg.Gen, cfg.Events)
	if err != nil {
		return nil, err
	}
	rep := &Report{
		Sink: cfg.describeSink(), Events: cfg.Events, DataBytes: int64(len(data)),
		GenSeconds: time.Since(start).Seconds(), Window: cfg.Window,
		SteadyWindows: cfg.SteadyWindows, Tolerance: cfg.Tolerance, Within: cfg.Within, MaxP99: cfg.MaxP99,
	}
	points := cfg.Points()
	for i, p := range points {
		if ctx.Err() != nil {
			break
		}
		r := cfg.runPoint(ctx, data, p)
		rep.Results = append(rep.Results, r)
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "demandpipe tune: %d/%d %s\n", i+1, len(points), r.String())
		}
	}
	rep.Recommendation, rep.RecommendErr = Recommend(rep.Results, cfg.Within, cfg.MaxP99)
	rep.Seconds = time.Since(start).Seconds()
	return rep, ctx.Err()
}

func (c Config) describeSink() string {
	if c.Sink == DefaultSink {
		return fmt.Sprintf("cqltest (in-process CQL test double, service time %v)", c.ServiceTime)
	}
	// Hosts and keyspace only: the parameters stay out of reports.
	if u, err := url.Parse(c.Sink); err == nil {
		return "cassandra " + u.Host + u.Path
	}
	return "cassandra"
}

// String is the result on one line (progress output, the chart's tooltips).
func (r Result) String() string {
	if r.Err != "" {
		return fmt.Sprintf("%s: FAILED after %.1fs: %s", r.Point, r.Seconds, r.Err)
	}
	return fmt.Sprintf("%s: %s rows/s, %s events/s, p99 write %s, mean %s, %.1f rows/batch, heap %s MB, RSS %s MB (%s, %.1fs)",
		r.Point, groupDigits(r.RowsPerSec), groupDigits(r.EventsPerSec), p99String(r.P99Write), fmtDuration(r.MeanWrite), r.RowsPerBatch,
		megabytes(r.PeakHeapBytes), megabytes(r.PeakRSSBytes), r.Stop, r.Seconds)
}
