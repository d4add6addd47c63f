package pipeline

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/internal/testsize"
)

// boxEvents makes `minutes` minutes of perMinute events, each a new rider
// at a random place in a square of side span degrees whose south-west
// corner minute m puts at corner(m), products alternating among nProducts.
func boxEvents(seed uint64, minutes, perMinute int, span float64, nProducts int, corner func(m int) (lat, lng float64)) []string {
	rng := rand.New(rand.NewPCG(seed, seed))
	var lines []string
	t0 := time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC).UnixMilli()
	step := int64(60_000 / perMinute)
	for m := range minutes {
		lat, lng := corner(m)
		for i := range perMinute {
			lines = append(lines, fmt.Sprintf(`{"ts":%d,"rider_id":"r%d-%d","lat":%.6f,"lng":%.6f,"product_type":%q}`,
				t0+int64(m)*60_000+int64(i)*step, m, i, lat+rng.Float64()*span, lng+rng.Float64()*span, testProducts[i%nProducts]))
		}
	}
	return lines
}

// movingCity is an endless-run stand-in: 90 minutes of 300 events a
// minute around a centre that moves ~4 km east every minute, so every
// minute brings cells never seen before and the old ones fall out of the
// windows.
func movingCity() []string {
	perMinute := testsize.Pick(100, 300) // the same minutes and movement, a third of the sources
	return boxEvents(3, 90, perMinute, 0.3, 2, func(m int) (float64, float64) { return 40, -100 + 0.05*float64(m) })
}

// TestCellIndexFollowsTheInput: with moving cells the state stays flat
// (the cell index is renumbered to the cells still held), while without
// renumbering it grows every minute; rows are the reference's either way.
func TestCellIndexFollowsTheInput(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	lines := movingCity()
	def := feature.Definition{Resolution: 9, Rings: []int{0, 1, 3}, Windows: []int{1, 4}}
	want := reference(t, lines, def, 30_000)
	run := func(compactAt int) (states []int64, compactions int64) {
		cfg := DefaultConfig()
		cfg.compactAt = compactAt
		cfg.Def, cfg.Parallelism, cfg.Kring.SparseBelow = def, 2, 0
		e, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		e.OnClose = func(int64, int64, time.Duration) { states = append(states, e.Stats.StateBytes.Load()) }
		snk := &collect{}
		if err := e.Run(context.Background(), strings.NewReader(strings.Join(lines, "\n")), snk); err != nil {
			t.Fatal(err)
		}
		diffRows(t, snk.rows, want)
		return states, e.Stats.Compactions.Load()
	}
	peak := func(s []int64) int64 {
		var p int64
		for _, v := range s {
			p = max(p, v)
		}
		return p
	}
	grown, n := run(1 << 62)
	if n != 0 || peak(grown[70:]) < 2*peak(grown[10:30]) {
		t.Fatalf("without renumbering: %d compactions, state %d bytes at minutes 10-30, %d at 70-90: the test no longer shows growth", n, peak(grown[10:30]), peak(grown[70:]))
	}
	flat, n := run(1 << 12)
	if n < 3 || peak(flat[70:]) > peak(flat[10:30])*5/4 {
		t.Fatalf("with renumbering: %d compactions, state %d bytes at minutes 10-30, %d at 70-90", n, peak(flat[10:30]), peak(flat[70:]))
	}
	t.Logf("state after 90 minutes: %d bytes renumbered, %d not (%d compactions)", flat[len(flat)-1], grown[len(grown)-1], n)
}
