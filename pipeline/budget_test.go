package pipeline

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/internal/testsize"
)

// hostileCity is cardinality without end: every event a new rider at a
// new place in a 2-degree box, 3,000 a minute for 6 minutes, so every
// minute brings ~3,000 sources in places the state does not hold yet.
func hostileCity() []string {
	perMinute := testsize.Pick(2200, 3000) // the short form: still over twice the 16 MiB budget (the least -max-memory takes)
	return boxEvents(11, 6, perMinute, 2, 1, func(int) (float64, float64) { return 40, -100 })
}

// TestMemoryBudgetHolds: under hostile cardinality the close state stays
// within -max-memory, the events shed are counted, the same input sheds
// the same events, and shedding only ever lowers a feature (it removes
// sources): every row of the bounded run is at most the unbounded one's.
func TestMemoryBudgetHolds(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	lines := hostileCity()
	def := feature.Definition{Resolution: 9, Rings: []int{0, 1, 3}, Windows: []int{1, 4, 8}}
	const budget = 16 << 20
	run := func(maxMem int64) ([]row, int64, Summary) {
		cfg := DefaultConfig()
		cfg.Def, cfg.Parallelism, cfg.MaxMemory = def, 2, maxMem
		// Every source in the panes: spread this thin, the per-source path
		// would hold them in little memory (sparse.go); the budget is for
		// what gets past it.
		cfg.Kring.SparseBelow = 0
		e, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		var peak int64
		e.OnClose = func(int64, int64, time.Duration) { peak = max(peak, e.Stats.StateBytes.Load()) }
		snk := &collect{}
		if err := e.Run(context.Background(), strings.NewReader(strings.Join(lines, "\n")), snk); err != nil {
			t.Fatal(err)
		}
		sortRows(snk.rows)
		return snk.rows, peak, e.Stats.Snapshot()
	}
	free, freePeak, fs := run(0)
	if fs.OverBudget != 0 || freePeak < 2*budget {
		t.Fatalf("unbounded: %d shed, peak state %d bytes: the input no longer outgrows %d", fs.OverBudget, freePeak, budget)
	}
	bound, peak, s := run(budget)
	if peak > budget {
		t.Fatalf("bounded: peak state %d bytes over the budget %d", peak, budget)
	}
	if s.OverBudget == 0 || s.ShedSources == 0 || s.OverBudget > s.Counted {
		t.Fatalf("bounded: %d events of %d sources shed, of %d counted", s.OverBudget, s.ShedSources, s.Counted)
	}
	again, _, s2 := run(budget)
	diffRows(t, again, bound)
	if s2.OverBudget != s.OverBudget {
		t.Fatalf("shed %d events, then %d on the same input", s.OverBudget, s2.OverBudget)
	}
	// Every bounded row is at most the unbounded row of its key.
	j := 0
	for _, r := range bound {
		for j < len(free) && (free[j].minute != r.minute || free[j].product != r.product || free[j].cell != r.cell) {
			j++
		}
		if j == len(free) {
			t.Fatalf("bounded row %v has no unbounded row", r)
		}
		for i, v := range r.features {
			if v > free[j].features[i] {
				t.Fatalf("bounded row %v above the unbounded %v", r, free[j])
			}
		}
	}
	t.Logf("peak state %d bytes unbounded, %d within %d; %d of %d counted events shed (%d sources)", freePeak, peak, budget, s.OverBudget, s.Counted, s.ShedSources)
}
