package tuning

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"

	"github.com/demandpipe/demandpipe/gen"
	"github.com/demandpipe/demandpipe/pipeline"
	"github.com/demandpipe/demandpipe/sink/cassandra"
)

// DefaultSink is the in-process CQL test double (internal/cqltest), one
// fresh server per point with Config.ServiceTime added to every statement.
const DefaultSink = "cqltest:"

// Config is a sweep. The engine, generator and sink carry their own
// packages' configs, so a point is exactly what `demandpipe run` would do
// with the same flags.
type Config struct {
	// Parallelism, Writers and BatchRows are the grids swept (-parallelism,
	// -sink.writers, -sink.batch-rows; syntax on Grid). Defaults: the
	// number of CPUs; 4,16,64; 1,50,200: the corners and the middle of
	// sink/CASSANDRA.md's grid, 9 points per parallelism.
	Parallelism Grid
	Writers     Grid
	BatchRows   Grid
	// Sink is where rows go (-sink): "cqltest:" (default), the in-process
	// CQL test double, or a real "cassandra://HOST/KEYSPACE?..." URL (its
	// parameters as for `demandpipe run`; add create=true for a new
	// keyspace; tuning writes real rows there, with the table's TTL).
	Sink string
	// ServiceTime is what the test double adds to every statement
	// (-tune.service-time, default 2ms: a healthy node's write latency,
	// the figure CASSANDRA.md's grid used). Ignored with cassandra://.
	ServiceTime time.Duration
	// Events is how many raw events are generated once, in memory, and
	// replayed from the start at every point (-tune.events, default
	// 2,000,000: ~1 GB, ~2 s to generate; 20 minutes of the default city,
	// enough for the engine alone, at ~540k events/s on 2 cores, to run
	// 3.7 s, and more as soon as the sink slows it down).
	Events int
	// Window is the length of one throughput measurement
	// (-tune.window, default 1s: 2-3 minute closes of the default city
	// at full speed, so a window's rows/s is not one close's burst).
	Window time.Duration
	// WarmupWindows are skipped after the first row is acknowledged
	// (-tune.warmup-windows, default 1: connections, the queue and the
	// first minutes' growing row counts settle).
	WarmupWindows int
	// SteadyWindows and Tolerance define steady: the last SteadyWindows
	// complete windows after the warm-up each within ±Tolerance of their
	// mean rows/s (-tune.steady-windows, default 3; -tune.tolerance,
	// default 0.1). A point stops as soon as it is steady and reports that
	// mean. SteadyWindows=0: run every point to the end of the events.
	SteadyWindows int
	Tolerance     float64
	// MaxPointTime bounds one point's run, from the moment its sink is
	// open (-tune.max-point-time, default 10s):
	// a point that is not steady by then reports the mean of its windows
	// after the warm-up, marked "time bound". 9 points of the default grid
	// take ~5 s each when steady (first rows ~1 s, 1 warm-up and 3 steady
	// windows): under a minute; at most 9 x 10 s.
	MaxPointTime time.Duration
	// Within and MaxP99 are the recommendation rule (Recommend): the
	// cheapest point with at least Within of the best rows/s
	// (-tune.within, default 0.9: one point's rows/s varies by ~10%
	// between runs on a quiet 2-core box, e.g. 64 writers x 50 rows at
	// 2 ms made 184,855 rows/s in CASSANDRA.md's benchmark, 202,712 and
	// 214,436 here) whose p99 write latency is at most MaxP99
	// (-tune.max-p99, default 250ms: an eighth of Cassandra's 2 s
	// write_request_timeout; p99 is a histogram bucket's bound, so the
	// test is in effect p99 <= 128 ms, ~6x a 20 ms service time: past it
	// the store or the client's CPU is saturated).
	Within float64
	MaxP99 time.Duration

	// Engine is the pipeline's config; its Parallelism is set per point.
	Engine pipeline.Config
	// Gen shapes the generated city (default: gen.DefaultConfig, the live
	// city's 100,000 events a minute).
	Gen gen.Config
	// Cassandra is the sink's base config: its Queue's Writers and
	// BatchRows are set per point, everything else is kept. For the test
	// double the hosts and schema options are filled in.
	Cassandra cassandra.Config
	// StopDrain bounds how long a point's sink may drain once the point is
	// measured (default 500ms): rows still queued are abandoned (and not
	// counted), so a slow point does not spend 16k queued rows' worth of
	// service time after its measurement.
	StopDrain time.Duration
	// Logf receives the sink's open and drop lines. Default: discarded.
	Logf func(format string, args ...any)
	// Progress, when set, receives one line per point as it finishes.
	Progress io.Writer
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		Parallelism:   Grid{runtime.NumCPU()},
		Writers:       Grid{4, 16, 64},
		BatchRows:     Grid{1, 50, 200},
		Sink:          DefaultSink,
		ServiceTime:   2 * time.Millisecond,
		Events:        2_000_000,
		Window:        time.Second,
		WarmupWindows: 1,
		SteadyWindows: 3,
		Tolerance:     0.1,
		MaxPointTime:  10 * time.Second,
		Within:        0.9,
		MaxP99:        250 * time.Millisecond,
		Engine:        pipeline.DefaultConfig(),
		Gen:           gen.DefaultConfig(),
		Cassandra:     cassandra.DefaultConfig(),
		StopDrain:     500 * time.Millisecond,
	}
}

// RegisterFlags binds the grids (-parallelism, -sink.writers,
// -sink.batch-rows), -sink and the -tune.* flags to fs. The engine's and
// the queue's other flags are the caller's (they belong to pipeline and
// sink).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.Var(gridFlag{&c.Parallelism, "parallelism", 1, 256}, "parallelism", "grid of engine parallelism (cores) values, e.g. 1,2 (syntax: N, A..B, A..B+S, A..BxF, comma-separated)")
	fs.Var(gridFlag{&c.Writers, "sink.writers", 1, 1024}, "sink.writers", "grid of concurrent sink writes, e.g. 4..64x2 = 4,8,16,32,64")
	fs.Var(gridFlag{&c.BatchRows, "sink.batch-rows", 1, 65535}, "sink.batch-rows", "grid of rows per write batch, e.g. 1,50,200")
	fs.StringVar(&c.Sink, "sink", c.Sink, "cqltest: (an in-process CQL test double per point, -tune.service-time per statement) or cassandra://HOST[,HOST...][:PORT]/KEYSPACE?... (a real cluster: rows are really written; create=true makes the table)")
	fs.DurationVar(&c.ServiceTime, "tune.service-time", c.ServiceTime, "service time the test double adds to every statement (cqltest: only)")
	fs.IntVar(&c.Events, "tune.events", c.Events, "raw events generated once in memory and replayed at every point (~520 bytes each)")
	fs.IntVar(&c.Gen.EventsPerMinute, "tune.rate", c.Gen.EventsPerMinute, "generated raw events per minute of event time")
	fs.DurationVar(&c.Window, "tune.window", c.Window, "length of one rows/s measurement window")
	fs.IntVar(&c.WarmupWindows, "tune.warmup-windows", c.WarmupWindows, "windows skipped after the first acknowledged row")
	fs.IntVar(&c.SteadyWindows, "tune.steady-windows", c.SteadyWindows, "a point is steady when this many successive windows are within -tune.tolerance of their mean; 0: run each point to the end of the events")
	fs.Float64Var(&c.Tolerance, "tune.tolerance", c.Tolerance, "steady: each window within this fraction of the windows' mean rows/s")
	fs.DurationVar(&c.MaxPointTime, "tune.max-point-time", c.MaxPointTime, "bound on one point; a point not steady by then reports its mean after the warm-up")
	fs.Float64Var(&c.Within, "tune.within", c.Within, "recommend the cheapest point with at least this fraction of the best rows/s")
	fs.DurationVar(&c.MaxP99, "tune.max-p99", c.MaxP99, "and whose p99 write latency is at most this")
}

// Points returns the sweep's points in the order they run: parallelism,
// then batch rows, then writers, each ascending.
func (c Config) Points() []Point {
	var out []Point
	for _, p := range c.Parallelism {
		for _, b := range c.BatchRows {
			for _, w := range c.Writers {
				out = append(out, Point{Parallelism: p, Writers: w, BatchRows: b})
			}
		}
	}
	return out
}

// MaxPoints bounds a sweep (a 64-value grid of one knob is allowed; three
// of them are not).
const MaxPoints = 512

// Validate reports the first bad field.
func (c Config) Validate() error {
	for _, g := range []struct {
		name   string
		g      Grid
		lo, hi int
	}{{"parallelism", c.Parallelism, 1, 256}, {"sink.writers", c.Writers, 1, 1024}, {"sink.batch-rows", c.BatchRows, 1, 65535}} {
		if len(g.g) == 0 {
			return fmt.Errorf("-%s: %w", g.name, ErrGridEmpty)
		}
		for _, v := range g.g {
			if v < g.lo || v > g.hi {
				return fmt.Errorf("-%s=%s: %w: %d is not in %d..%d", g.name, g.g, ErrGridRange, v, g.lo, g.hi)
			}
		}
	}
	if n := len(c.Parallelism) * len(c.Writers) * len(c.BatchRows); n > MaxPoints {
		return fmt.Errorf("tuning: %d points (-parallelism x -sink.writers x -sink.batch-rows): at most %d", n, MaxPoints)
	}
	switch {
	case c.Sink != DefaultSink && !strings.HasPrefix(c.Sink, "cassandra://"):
		return fmt.Errorf("-sink=%q: want cqltest: or cassandra://HOST/KEYSPACE?...", c.Sink)
	case c.ServiceTime < 0 || c.ServiceTime > time.Second:
		return fmt.Errorf("-tune.service-time=%v: must be in 0..1s", c.ServiceTime)
	case c.Events < 1000 || c.Events > 50_000_000:
		return fmt.Errorf("-tune.events=%d: must be in 1000..50000000 (~520 bytes each, held in memory)", c.Events)
	case c.Window < 10*time.Millisecond || c.Window > time.Minute:
		return fmt.Errorf("-tune.window=%v: must be in 10ms..1m", c.Window)
	case c.WarmupWindows < 0 || c.WarmupWindows > 100:
		return fmt.Errorf("-tune.warmup-windows=%d: must be in 0..100", c.WarmupWindows)
	case c.SteadyWindows < 0 || c.SteadyWindows == 1 || c.SteadyWindows > 100:
		return fmt.Errorf("-tune.steady-windows=%d: must be 0 (run to the end) or in 2..100", c.SteadyWindows)
	case !(c.Tolerance > 0 && c.Tolerance < 1):
		return fmt.Errorf("-tune.tolerance=%g: must be in (0, 1)", c.Tolerance)
	case c.MaxPointTime < c.Window || c.MaxPointTime > time.Hour:
		return fmt.Errorf("-tune.max-point-time=%v: must be in -tune.window (%v)..1h", c.MaxPointTime, c.Window)
	case !(c.Within > 0 && c.Within <= 1):
		return fmt.Errorf("-tune.within=%g: must be in (0, 1]", c.Within)
	case c.MaxP99 <= 0:
		return fmt.Errorf("-tune.max-p99=%v: must be > 0", c.MaxP99)
	case c.StopDrain <= 0 || c.StopDrain > time.Minute:
		return errors.New("tuning: StopDrain must be in (0, 1m]")
	}
	e := c.Engine
	e.Parallelism = c.Parallelism[0]
	if err := e.Validate(); err != nil {
		return err
	}
	if err := c.Gen.Validate(); err != nil {
		return err
	}
	q := c.Cassandra.Queue
	q.Writers, q.BatchRows = c.Writers[len(c.Writers)-1], c.BatchRows[len(c.BatchRows)-1]
	q.DrainTimeout = c.StopDrain
	if q.Capacity < q.BatchRows {
		return fmt.Errorf("-sink.queue-capacity=%d: must be at least the largest -sink.batch-rows (%d)", q.Capacity, q.BatchRows)
	}
	return q.Validate()
}
