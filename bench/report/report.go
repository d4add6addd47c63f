// Package report measures Uber's list of optimizations on demandpipe's
// stack, one technique at a time, and writes bench/REPORT.md.
//
// Every figure is a ratio of the technique on against the technique off,
// everything else equal, measured side by side in one process run: the
// rounds of "off" and "on" alternate and each side's median is taken, so a
// neighbour's load on this shared machine hits both sides alike. The "off"
// side is what bench/naive does (encoding/json maps, string keys, GridDisk
// per event, a copy per window, float64s, one row per write); the "on" side
// is the engine's own package (encode, dedup, internal/cellindex, kring,
// windows, the binary row format, sink/cassandra's queue).
//
//	go run ./cmd/demandpipe bench -report bench/REPORT.md
package report

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/internal/buildinfo"
)

// Command is the one command that regenerates the report.
const Command = "go run ./cmd/demandpipe bench -report bench/REPORT.md"

// Config sizes the measurements. The defaults take a few minutes on the
// 2-core dev box; tests use tiny sizes.
type Config struct {
	// Rounds of each side of every comparison (alternating); medians are
	// compared. Default 3.
	Rounds int
	// Events is the size of the generated city corpus most sections read
	// (gen defaults at Rate events a minute). Default 200,000 at 5,000 a
	// minute: 40 minutes, so every window of the default definition
	// slides (32 minutes).
	Events, Rate int
	// DiskEvents is how many counted events the per-event GridDisk
	// comparisons use (the uncached side costs ~40 us each). Default 10,000.
	DiskEvents int
	// SinkRows is the rows per op of the batch size and writer pool
	// comparisons (CASSANDRA.md's grid uses 4,000). Default 4,000.
	SinkRows int
	// NaiveEvents is the input of the end-to-end comparison (the naive job
	// runs at a few dozen events a second on a dense city). Default 400.
	NaiveEvents int
	// Log receives progress lines; nil: none.
	Log io.Writer
}

// DefaultConfig returns the sizes of the committed report.
func DefaultConfig() Config {
	return Config{Rounds: 3, Events: 200_000, Rate: 5_000, DiskEvents: 10_000, SinkRows: 4_000, NaiveEvents: 400}
}

// Validate checks the fields.
func (c Config) Validate() error {
	switch {
	case c.Rounds < 1 || c.Rounds > 100:
		return fmt.Errorf("report rounds=%d: must be in 1..100", c.Rounds)
	case c.Events < 1000:
		return fmt.Errorf("report events=%d: must be >= 1000", c.Events)
	case c.Rate < 100:
		return fmt.Errorf("report rate=%d: must be >= 100", c.Rate)
	case c.DiskEvents < 10, c.SinkRows < 100, c.NaiveEvents < 20:
		return fmt.Errorf("report: disk events (%d), sink rows (%d) and naive events (%d) must be >= 10, 100, 20", c.DiskEvents, c.SinkRows, c.NaiveEvents)
	}
	return nil
}

// WriteFile runs every measurement and writes the report to path.
func WriteFile(path string, cfg Config) error {
	var buf bytes.Buffer
	if err := Run(&buf, cfg); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// Run runs every measurement and writes the report as markdown to w.
func Run(w io.Writer, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	r := &run{cfg: cfg, start: time.Now()}
	r.logf("report: generating %d events at %d a minute", cfg.Events, cfg.Rate)
	c, err := newCorpus(cfg)
	if err != nil {
		return err
	}
	r.c = c
	for _, s := range []struct {
		name string
		f    func() error
	}{
		{"projection", r.projection},
		{"dedup", r.dedup},
		{"cell keys", r.cellKeys},
		{"features", r.features},
		{"caching", r.caching},
		{"panes", r.panes},
		{"sink", r.sink},
		{"end to end", r.endToEnd},
	} {
		t0 := time.Now()
		r.logf("report: %s", s.name)
		if err := s.f(); err != nil {
			return fmt.Errorf("report %s: %w", s.name, err)
		}
		r.logf("report: %s done in %.1fs", s.name, time.Since(t0).Seconds())
	}
	r.write(w)
	return nil
}

// run is one report run: the corpus, the summary lines and the sections.
type run struct {
	cfg      Config
	start    time.Time
	c        *corpus
	rows     *encode.Batch // the engine's densest minute over the corpus (features)
	summary  []summaryLine
	sections []section
}

type section struct{ name, body string }

type summaryLine struct {
	technique, measure, off, on, ratio string
}

func (r *run) logf(format string, args ...any) {
	if r.cfg.Log != nil {
		fmt.Fprintf(r.cfg.Log, format+"\n", args...)
	}
}

// sideBySide runs off and on alternately, rounds times each, and returns
// each side's samples (whatever the functions measure: usually seconds).
func (r *run) sideBySide(off, on func() (float64, error)) (offS, onS []float64, err error) {
	s, err := r.alternate(off, on)
	if err != nil {
		return nil, nil, err
	}
	return s[0], s[1], nil
}

// alternate runs every f in turn, rounds times, and returns the samples of
// each.
func (r *run) alternate(fs ...func() (float64, error)) ([][]float64, error) {
	out := make([][]float64, len(fs))
	for range r.cfg.Rounds {
		for i, f := range fs {
			runtime.GC()
			v, err := f()
			if err != nil {
				return nil, err
			}
			out[i] = append(out[i], v)
		}
	}
	return out, nil
}

// timed returns a function that times f in seconds.
func timed(f func() error) func() (float64, error) {
	return func() (float64, error) {
		t0 := time.Now()
		err := f()
		return time.Since(t0).Seconds(), err
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// spread formats the samples' range, to show the noise: from the
// slowest round to the fastest (the samples are seconds).
func spread(v []float64, format func(float64) string) string {
	a, b := format(slices.Max(v)), format(slices.Min(v))
	if a == b {
		return a
	}
	return a + " to " + b
}

func (r *run) add(name string, s summaryLine, body string) {
	r.summary = append(r.summary, s)
	r.sections = append(r.sections, section{name, body})
}

func (r *run) write(w io.Writer) {
	bi := buildinfo.Get()
	fmt.Fprintf(w, "# demandpipe against a naive Flink-style job, one technique at a time\n\n")
	fmt.Fprintf(w, "Generated by `%s` (%.0f s) on %s.\n\n", Command, time.Since(r.start).Seconds(), time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "| | |\n|---|---|\n")
	fmt.Fprintf(w, "| machine | %s, %d CPUs (GOMAXPROCS %d), %s/%s |\n", cpuModel(), runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(w, "| Go | %s |\n", runtime.Version())
	fmt.Fprintf(w, "| commit | %s |\n", commit(bi))
	fmt.Fprintf(w, "| rounds | %d per side, alternating; medians compared |\n", r.cfg.Rounds)
	fmt.Fprintf(w, "| corpus | %d generated events (gen defaults, %d a minute: %d minutes; %.0f MB) |\n\n",
		r.cfg.Events, r.cfg.Rate, (r.cfg.Events+r.cfg.Rate-1)/r.cfg.Rate, float64(len(r.c.data))/1e6)
	fmt.Fprintf(w, "**Read the ratios, not the absolute figures.** This 2-core machine is shared with other\n"+
		"sessions, so absolute rates move by tens of percent from run to run; each ratio compares the\n"+
		"technique off and on measured alternately in this one run (slowest and fastest rounds shown), and\n"+
		"the \"off\" side of every row is what `bench/naive` does. The naive job's rows equal the\n"+
		"engine's (`go test ./bench/naive`: default and a small definition, duplicates, late and\n"+
		"malformed lines; it leaves out the future rule 1a, which generated inputs never exercise).\n\n")
	fmt.Fprintf(w, "## Summary\n\n| technique | measure | off (naive) | on (engine) | on vs off |\n|---|---|---|---|---|\n")
	for _, s := range r.summary {
		fmt.Fprintf(w, "| %s | %s | %s | %s | **%s** |\n", s.technique, s.measure, s.off, s.on, s.ratio)
	}
	fmt.Fprintln(w)
	for _, s := range r.sections {
		fmt.Fprintln(w, strings.TrimSpace(s.body))
		fmt.Fprintf(w, "\nCommand: `%s` (section %q of `bench/report`).\n\n", Command, s.name)
	}
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return runtime.GOARCH
}

// commit names the source: the VCS stamp, or git's view of the working
// directory under `go run` (which does not stamp).
func commit(bi buildinfo.Info) string {
	if bi.Revision != buildinfo.Unknown {
		if bi.Modified {
			return bi.Revision + " (with uncommitted changes)"
		}
		return bi.Revision
	}
	out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return buildinfo.Unknown
	}
	s := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		s += " (with uncommitted changes)"
	}
	return s
}

// Formatting helpers.

func rate(perSec float64) string {
	switch {
	case perSec >= 1e6:
		return fmt.Sprintf("%.2fM/s", perSec/1e6)
	case perSec >= 1e3:
		return fmt.Sprintf("%.0fk/s", perSec/1e3)
	}
	return fmt.Sprintf("%.0f/s", perSec)
}

func ms(sec float64) string { return fmt.Sprintf("%.1f ms", sec*1e3) }

func ratio(x float64) string {
	if x >= 100 {
		return fmt.Sprintf("%.0fx", x)
	}
	return fmt.Sprintf("%.1fx", x)
}
