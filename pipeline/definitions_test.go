package pipeline

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/feature"
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
// one sharing the default's resolution, computed in one pass: each
// definition's rows equal a run of that definition alone, row for row and
// in order; a definition given twice under two names gives the same rows
// twice.
func TestDefinitionsInOnePassEqualSeparateRuns(t *testing.T) {
	t.Parallel()
	lines := genLines(t, 12_000, 23, time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC))
	fine := feature.Named{Name: "fine", Definition: feature.Definition{Resolution: 9, Rings: []int{0, 2, 7}, Windows: []int{3, 5, 1}}}
	wide := feature.Named{Name: "wide", Definition: feature.Definition{Resolution: 8, Rings: []int{0, 3}, Windows: []int{2}}}
	again := feature.Named{Name: "again", Definition: fine.Definition}
	all, e := runDefs(t, lines, feature.Default(), []feature.Named{fine, wide, again})
	for i, d := range []feature.Definition{feature.Default(), fine.Definition, wide.Definition} {
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
