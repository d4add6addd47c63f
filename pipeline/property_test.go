package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/uber/h3-go/v4"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/internal/testsize"
)

var testProducts = []string{
	"a1b2c3d4-0000-4000-8000-000000000001",
	"0fedcba9-1111-4111-8111-111111111111",
	"5E5E5E5E-2222-4222-8222-222222222222", // upper case: output lower-cased
}

// scenario makes a random event stream: few riders (duplicates), few cells
// (overlapping disks), several products, jitter, late events, gaps of empty
// minutes, and some broken lines.
type scenario struct {
	def        feature.Definition
	latenessMs int64
	lines      []string
}

func randomScenario(rng *rand.Rand, center h3.LatLng, def feature.Definition) scenario {
	sc := scenario{def: def, latenessMs: int64(rng.IntN(4)) * 20_000}
	cellRes := def.Resolution
	origin, _ := h3.LatLngToCell(center, cellRes)
	area, _ := h3.GridDisk(origin, 3)
	var cells []h3.Cell
	for range 1 + rng.IntN(6) {
		cells = append(cells, area[rng.IntN(len(area))])
	}
	riders := 2 + rng.IntN(10)
	ts := int64(1717236000000) + int64(rng.IntN(60_000))
	n := 20 + rng.IntN(150)
	for range n {
		switch rng.IntN(20) {
		case 0: // a gap of empty minutes
			ts += int64(rng.IntN(40)) * 60_000
		case 1: // late
			sc.lines = append(sc.lines, eventLine(ts-int64(rng.IntN(300_000)), rng.IntN(riders), rng, cells))
			continue
		case 2: // broken
			sc.lines = append(sc.lines, `{"ts":`+fmt.Sprint(ts)+`,"rider_id":"x"`)
			continue
		case 3: // a bad clock: minutes to hours ahead, or the largest ts
			ahead := ts + int64(1+rng.IntN(180))*60_000
			if rng.IntN(4) == 0 {
				ahead = encode.MaxTS
			}
			sc.lines = append(sc.lines, eventLine(ahead, rng.IntN(riders), rng, cells))
			continue
		}
		ts += int64(rng.IntN(15_000))
		jitter := int64(rng.IntN(10_000))
		sc.lines = append(sc.lines, eventLine(ts-jitter, rng.IntN(riders), rng, cells))
	}
	return sc
}

func eventLine(ts int64, rider int, rng *rand.Rand, cells []h3.Cell) string {
	c := cells[rng.IntN(len(cells))]
	ll, _ := h3.CellToLatLng(c)
	return fmt.Sprintf(`{"x":{"ts":1},"ts":%d,"rider_id":"rider-%d","lat":%.9f,"lng":%.9f,"product_type":%q,"extra":[1,2,{"lat":0}]}`,
		ts, rider, ll.Lat, ll.Lng, testProducts[rng.IntN(len(testProducts))])
}

func randomDef(rng *rand.Rand) feature.Definition {
	pick := func(lo, hi, n int) []int {
		all := rng.Perm(hi - lo + 1)[:n]
		for i := range all {
			all[i] += lo
		}
		return all // random order on purpose
	}
	return feature.Definition{
		Resolution: 4 + rng.IntN(7),
		Rings:      pick(0, 4, 1+rng.IntN(4)),
		Windows:    pick(1, 9, 1+rng.IntN(5)),
	}
}

// randomFuture picks event time for a scenario: off (the largest ts), the
// default, or a K the scenario's few riders reach.
func randomFuture(rng *rand.Rand) FutureConfig {
	switch rng.IntN(4) {
	case 0:
		return FutureConfig{MaxSkew: 0, ConfirmRiders: 1}
	case 1:
		return DefaultFutureConfig()
	}
	return FutureConfig{MaxSkew: time.Duration(1+rng.IntN(10)) * time.Minute, ConfirmRiders: 1 + rng.IntN(6)}
}

func runEngine(t testing.TB, lines []string, def feature.Definition, latenessMs int64, par, chunk int) ([]row, *collect, *Engine) {
	return runEngineFuture(t, lines, def, latenessMs, par, chunk, DefaultFutureConfig())
}

func runEngineFuture(t testing.TB, lines []string, def feature.Definition, latenessMs int64, par, chunk int, fc FutureConfig) ([]row, *collect, *Engine) {
	t.Helper()
	return runEngineSparse(t, lines, def, latenessMs, par, chunk, fc, DefaultConfig().Kring.SparseBelow)
}

// runEngineSparse also sets kring.sparse-below: 0 keeps every source in the
// panes, a large value smooths every source on its own (sparse.go).
func runEngineSparse(t testing.TB, lines []string, def feature.Definition, latenessMs int64, par, chunk int, fc FutureConfig, sparseBelow int) ([]row, *collect, *Engine) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Kring.SparseBelow = sparseBelow
	cfg.Future = fc
	cfg.Def = def
	cfg.Lateness = time.Duration(latenessMs) * time.Millisecond
	cfg.Parallelism = par
	cfg.ChunkBytes = chunk
	cfg.Dedup.InitialKeys = 16
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sink := &collect{}
	in := strings.Join(lines, "\n") + "\n"
	if err := e.Run(context.Background(), bytes.NewReader([]byte(in)), sink); err != nil {
		t.Fatal(err)
	}
	return sink.rows, sink, e
}

// TestEngineMatchesReference is the main property test: on random inputs and
// random definitions (every fourth with an aggregate other than count) the
// engine's rows equal the reference's, in canonical
// order, whatever the parallelism and chunking, and whichever sources take
// the per-source path (all, the default rule's, none).
func TestEngineMatchesReference(t *testing.T) {
	t.Parallel()
	centers := []h3.LatLng{{Lat: 40.75, Lng: -73.98}, {Lat: -33.87, Lng: 151.21}, {Lat: 51.5, Lng: -0.12}}
	for seed := range 60 {
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		def := randomDef(rng)
		if aggs := feature.Aggregates(); seed%4 == 3 {
			def.Aggregate = aggs[1+(seed/4)%(len(aggs)-1)].Name // each further aggregate in turn
		}
		center := centers[seed%len(centers)]
		if seed%5 == 4 {
			// next to a pentagon: disks there have fewer cells
			pents, _ := h3.Pentagons(def.Resolution)
			center, _ = h3.CellToLatLng(pents[seed%len(pents)])
		}
		sc := randomScenario(rng, center, def)
		fc := randomFuture(rng)
		want := referenceRule(t, sc.lines, def, sc.latenessMs, fc.rule())
		t.Run(fmt.Sprintf("seed=%d/%s/late=%d/future=%v", seed, def, sc.latenessMs, fc), func(t *testing.T) {
			for _, run := range []struct{ par, sparse int }{{1, 1 << 20}, {3, 4}, {2, 0}} {
				got, sink, _ := runEngineSparse(t, sc.lines, def, sc.latenessMs, run.par, 4096, fc, run.sparse)
				diffRows(t, got, want)
				if !slices.IsSorted(sink.closed) {
					t.Fatalf("minutes closed out of order: %v", sink.closed)
				}
			}
		})
	}
}

// TestEngineDefaultDefinition runs the default definition (rings to 20,
// windows to 32) against the reference on a denser stream.
func TestEngineDefaultDefinition(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	rng := rand.New(rand.NewPCG(42, 42))
	def := feature.Default()
	sc := randomScenario(rng, h3.LatLng{Lat: 40.75, Lng: -73.98}, def)
	want := reference(t, sc.lines, def, 30_000)
	if len(want) == 0 {
		t.Fatal("scenario made no rows")
	}
	// The production default (sparse-below 32: both paths, as a real city
	// mixes them); the long set adds every source on panes and every source
	// sparse.
	for _, sparse := range testsize.Pick([]int{DefaultConfig().Kring.SparseBelow}, []int{0, 4, 32, 1 << 20}) {
		got, _, _ := runEngineSparse(t, sc.lines, def, 30_000, 2, 4096, DefaultFutureConfig(), sparse)
		diffRows(t, got, want)
	}
}
