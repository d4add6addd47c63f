package pipeline

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/internal/testsize"
	"github.com/demandpipe/demandpipe/sink"
)

// runDefs runs lines once with cfg's definition and extra, returning each
// definition's rows (the run's first).
func runDefs(t *testing.T, lines []string, def feature.Definition, extra []feature.Named) ([][]row, *Engine) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Def, cfg.Extra, cfg.Parallelism, cfg.ChunkBytes = def, extra, 2, 32<<10
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sinks := []*collect{{}}
	for range extra {
		c := &collect{}
		sinks = append(sinks, c)
		e.ExtraSinks = append(e.ExtraSinks, c)
	}
	if err := e.Run(context.Background(), strings.NewReader(strings.Join(lines, "\n")+"\n"), sinks[0]); err != nil {
		t.Fatal(err)
	}
	out := make([][]row, len(sinks))
	for i, c := range sinks {
		out[i] = c.rows
	}
	return out, e
}

// TestDefinitionsInOnePassEqualSeparateRuns (issue 23): the default
// definition, one at a finer resolution with other rings and windows, and
// one sharing the default's resolution, and a max over minutes (an
// aggregate other than count), computed in one pass: each
// definition's rows equal a run of that definition alone, row for row and
// in order; a definition given twice under two names gives the same rows
// twice.
func TestDefinitionsInOnePassEqualSeparateRuns(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	lines := genLines(t, testsize.Pick(6_000, 12_000), 23, time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC))
	// The first: the default definition in the long set, a cheaper one of
	// the same resolution in the short (k=20 under -race is most of the time).
	first := testsize.Pick(feature.Definition{Resolution: 8, Rings: []int{0, 1, 5}, Windows: []int{1, 4, 8}}, feature.Default())
	fine := feature.Named{Name: "fine", Definition: feature.Definition{Resolution: 9, Rings: []int{0, 2, 7}, Windows: []int{3, 5, 1}}}
	wide := feature.Named{Name: "wide", Definition: feature.Definition{Resolution: 8, Rings: []int{0, 3}, Windows: []int{2}}}
	again := feature.Named{Name: "again", Definition: fine.Definition}
	peak := feature.Named{Name: "peak", Definition: feature.Definition{Resolution: 8, Rings: []int{0, 3}, Windows: []int{4, 2}, Aggregate: "max"}}
	all, e := runDefs(t, lines, first, []feature.Named{fine, wide, again, peak})
	for i, d := range []feature.Definition{first, fine.Definition, wide.Definition, peak.Definition} {
		if i == 3 {
			i = 4 // after again
		}
		alone, _ := runDefs(t, lines, d, nil)
		if len(alone[0]) == 0 {
			t.Fatalf("%s: no rows", d)
		}
		t.Run(d.String(), func(t *testing.T) { diffRows(t, all[i], alone[0]) })
	}
	diffRows(t, all[3], all[1])
	if e.Stats.Rows.Load() != int64(len(all[0])) || e.ExtraStats[0].Rows.Load() != int64(len(all[1])) {
		t.Errorf("rows counted %d and %d, written %d and %d", e.Stats.Rows.Load(), e.ExtraStats[0].Rows.Load(), len(all[0]), len(all[1]))
	}
}

// TestDefinitionsRefused: names must be unique and valid, further
// definitions need a sink each, and (for now) no sink that keeps state.
func TestDefinitionsRefused(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.Extra = []feature.Named{{Name: "default", Definition: feature.Default()}}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), `name "default" given twice`) {
		t.Errorf("a second definition named default: %v", err)
	}
	cfg.Extra[0].Name = "fine"
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Run(context.Background(), strings.NewReader(""), &collect{}); err == nil || !strings.Contains(err.Error(), "1 further definitions and 0 sinks") {
		t.Errorf("no sink for the further definition: %v", err)
	}
	e.ExtraSinks = []sink.Writer{&stateSink{}}
	if err := e.Run(context.Background(), strings.NewReader(""), &collect{}); err == nil || !strings.Contains(err.Error(), "definition fine: its sink keeps state") {
		t.Errorf("a stateful sink for the further definition: %v", err)
	}
}

// stateSink is a sink that keeps state (and drops it).
type stateSink struct{ collect }

func (*stateSink) StageState(int64, sink.State) {}
func (*stateSink) LoadState() ([]byte, func(int64) ([]byte, bool, error), error) {
	return nil, nil, nil
}

// TestDefinitionsResumeEachFromItsOwnCheckpoint: two definitions into
// sinks that keep state, the run crashing in one sink's commit (so the
// sinks' checkpoints are a minute apart, either way round), then resumed:
// the input is read from the earlier checkpoint, each definition restores
// its own windows and counts only the minutes it had not committed, and
// each definition's rows equal an uninterrupted run's.
func TestDefinitionsResumeEachFromItsOwnCheckpoint(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	lines := resumeInput(t)
	in := strings.Join(lines, "\n") + "\n"
	def := feature.Definition{Resolution: 8, Rings: []int{0, 1, 2}, Windows: []int{1, 4, 8}}
	fine := []feature.Named{{Name: "fine", Definition: feature.Definition{Resolution: 9, Rings: []int{0, 2}, Windows: []int{3, 1}}}}
	run := func(a, b *memDurable, resume bool) (*Resumed, error) {
		cfg := DefaultConfig()
		cfg.Def, cfg.Extra, cfg.Parallelism, cfg.ChunkBytes = def, fine, 2, 16<<10
		e, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		e.Identity, e.ExtraSinks = "defs-input", []sink.Writer{b}
		var durable []int64
		e.Durable = func(pos int64) { durable = append(durable, pos) }
		var res *Resumed
		if resume {
			if res, err = e.Resume(a, "defs-input"); err != nil || res == nil {
				t.Fatalf("resume: %v %v", res, err)
			}
		}
		err = e.Run(context.Background(), strings.NewReader(in), a)
		if !slices.IsSorted(durable) {
			t.Errorf("durable positions go back: %v", durable)
		}
		return res, err
	}
	wantA, wantB := newMemDurable(), newMemDurable()
	if _, err := run(wantA, wantB, false); err != nil {
		t.Fatal(err)
	}
	minutes := slices.Sorted(maps.Keys(wantA.rows))
	// The second definition's sink failing leaves its checkpoint the earlier
	// one: the case that reads the input from another definition's point
	// (the short form runs it alone).
	for _, failB := range testsize.Pick([]bool{true}, []bool{false, true}) {
		t.Run(fmt.Sprintf("crash-in-fine=%v", failB), func(t *testing.T) {
			a, b := newMemDurable(), newMemDurable()
			crashAt := minutes[len(minutes)/2]
			if failB {
				b.failAt = crashAt // a has committed crashAt, b not: b's checkpoint is the earlier
			} else {
				a.failAt = crashAt
			}
			if _, err := run(a, b, false); err == nil || err.Error() != "crash" {
				t.Fatalf("first run: %v", err)
			}
			a.failAt, b.failAt = -1, -1
			res, err := run(a, b, true)
			if err != nil {
				t.Fatal(err)
			}
			if res.Minute >= crashAt {
				t.Errorf("resumed after minute %d, the crash was at %d", res.Minute, crashAt)
			}
			diffRows(t, a.all(), wantA.all())
			diffRows(t, b.all(), wantB.all())
		})
	}
}

// TestDefinitionAddedIsBackfilled (issue 23): a definition added to a
// deployment that has run for a while (a restart with a longer
// definitions file) starts from the count records the first definition's
// sink keeps: its rows of every minute those records cover whole are
// written at once, and from then on equal a run of that definition from
// the start, minute for minute; one of another resolution cannot be
// started that way and is refused.
func TestDefinitionAddedIsBackfilled(t *testing.T) {
	t.Parallel()
	in := strings.Join(resumeInput(t), "\n") + "\n" // 25 minutes of a small city, with a gap and a jump
	def := feature.Definition{Resolution: 8, Rings: []int{0, 1, 2}, Windows: []int{1, 4, 8}}
	// Added: another aggregate too, as a team adding a peak feature would;
	// count records are what every aggregate starts from.
	added := feature.Named{Name: "added", Definition: feature.Definition{Resolution: 8, Rings: []int{0, 3}, Windows: []int{2, 5}, Aggregate: "max"}}
	newEngine := func(extra []feature.Named, sinks ...sink.Writer) *Engine {
		cfg := DefaultConfig()
		cfg.Def, cfg.Extra, cfg.Parallelism, cfg.ChunkBytes = def, extra, 2, 16<<10
		e, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		e.Identity, e.ExtraSinks = "backfill-input", sinks
		return e
	}
	// From scratch: the added definition alone, over the whole input.
	alone := newMemDurable()
	cfgAlone := DefaultConfig()
	cfgAlone.Def, cfgAlone.Parallelism, cfgAlone.ChunkBytes = added.Definition, 2, 16<<10
	ea, _ := New(cfgAlone)
	if err := ea.Run(context.Background(), strings.NewReader(in), alone); err != nil {
		t.Fatal(err)
	}
	// The deployment: the first definition alone until a stop mid-input...
	a := newMemDurable()
	minutes := slices.Sorted(maps.Keys(alone.rows))
	a.failAt = minutes[len(minutes)/3]
	if err := newEngine(nil).Run(context.Background(), strings.NewReader(in), a); err == nil || err.Error() != "crash" {
		t.Fatalf("first run: %v", err)
	}
	a.failAt = -1
	// ...then restarted with the added definition into a new sink.
	b := newMemDurable()
	e := newEngine([]feature.Named{added}, b)
	if res, err := e.Resume(a, "backfill-input"); err != nil || res == nil {
		t.Fatalf("resume: %v %v (%d minutes, crash at %d)", res, err, len(minutes), a.failAt)
	}
	if err := e.Run(context.Background(), strings.NewReader(in), a); err != nil {
		t.Fatal(err)
	}
	if len(e.Backfills) != 1 || e.Backfills[0].From != "default" || e.Backfills[0].First > e.Backfills[0].Closed {
		t.Fatalf("backfills: %+v", e.Backfills)
	}
	bf := e.Backfills[0]
	// The first definition keeps 7 minutes of counts (windows to 8): the
	// added one (windows to 5) gets 3 minutes of history at once.
	if got := bf.Closed - bf.First + 1; got != 3 {
		t.Errorf("backfilled %d minutes, want 3", got)
	}
	var want []row
	for _, m := range minutes {
		if m >= bf.First {
			want = append(want, alone.rows[m]...)
		}
	}
	sortRows(want)
	diffRows(t, b.all(), want)
	history := 0
	for m := bf.First; m <= bf.Closed; m++ {
		history += len(b.rows[m])
	}
	if history == 0 {
		t.Errorf("no row in the backfilled minutes %d..%d: the test no longer shows the history written", bf.First, bf.Closed)
	}
	t.Logf("backfilled minutes %d..%d (%d rows) in %v; %d rows equal the run from scratch", bf.First-minutes[0], bf.Closed-minutes[0], history, bf.Took, len(want))

	// Another resolution: refused, with why.
	fine := feature.Named{Name: "fine", Definition: feature.Definition{Resolution: 9, Rings: []int{0}, Windows: []int{1}}}
	e = newEngine([]feature.Named{fine}, newMemDurable())
	if _, err := e.Resume(a, "backfill-input"); err == nil || !strings.Contains(err.Error(), "no definition of resolution 9") {
		t.Errorf("another resolution: %v", err)
	}
}

// TestDefinitionMetrics: each definition's rows, closes and last closed
// minute are exported under its name.
func TestDefinitionMetrics(t *testing.T) {
	t.Parallel()
	lines := genLines(t, 3_000, 5, time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC))
	cfg := DefaultConfig()
	cfg.Def, cfg.Parallelism = smallDef, 2
	cfg.Extra = []feature.Named{{Name: "fine", Definition: feature.Definition{Resolution: 9, Rings: []int{0, 2}, Windows: []int{3}}}}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if err := e.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	e.ExtraSinks = []sink.Writer{&collect{}}
	if err := e.Run(context.Background(), strings.NewReader(strings.Join(lines, "\n")), &collect{}); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "demandpipe_definition_rows_total" {
			for _, m := range mf.GetMetric() {
				got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	if got["default"] != float64(e.Stats.Rows.Load()) || got["fine"] != float64(e.ExtraStats[0].Rows.Load()) || got["fine"] == 0 || got["fine"] == got["default"] {
		t.Fatalf("demandpipe_definition_rows_total %v; rows %d and %d", got, e.Stats.Rows.Load(), e.ExtraStats[0].Rows.Load())
	}
}
