package pipeline

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/internal/procmem"
	"github.com/demandpipe/demandpipe/internal/testsize"
)

// townLines is a country of small markets (issue 21 point 6): towns of 4
// riders each, clustered 4 towns to a region (within ±0.1° of a centre, about
// an H3 resolution-4 cell), the regions at random places on the globe; one
// event per rider over 10 minutes, in time order, two products.
func townLines(towns int, seed uint64) []string {
	rng := rand.New(rand.NewPCG(seed, 21))
	type ev struct {
		ts   int64
		line string
	}
	var evs []ev
	var lat0, lng0 float64
	for town := range towns {
		if town%4 == 0 {
			lat0, lng0 = -60+130*rng.Float64(), -179.5+359*rng.Float64() // towns stay within ±180°
		}
		lat, lng := lat0-0.1+0.2*rng.Float64(), lng0-0.1+0.2*rng.Float64()
		for r := range 4 {
			ts := int64(1717236000000) + rng.Int64N(10*60_000)
			prod := prodP
			if r%2 == 1 {
				prod = "1dd452f5-f6de-4340-9df9-54aa30f182d0"
			}
			evs = append(evs, ev{ts, fmt.Sprintf(`{"ts":%d,"rider_id":"t%d-r%d","lat":%.7f,"lng":%.7f,"product_type":%q}`,
				ts, town, r, lat-0.01+0.02*rng.Float64(), lng-0.01+0.02*rng.Float64(), prod)})
		}
	}
	slices.SortStableFunc(evs, func(a, b ev) int { return int(a.ts - b.ts) })
	lines := make([]string, len(evs))
	for i, e := range evs {
		lines[i] = e.line
	}
	return lines
}

// TestSmallTownsStayInTheBudget is issue 21 point 6's second case: 2,500
// small towns of 4 riders, 4 towns a region, with default settings: peak RSS
// at most 512 MiB (was 2.2 GB: every region saw 8 sources of a product, over
// the per-region count of 4, and took ~1.6 KB for each of the ~1,261
// targets of every source; now a source goes per source unless its region
// and its neighbours hold 32, ~140 MB). Short: 625 towns under 128 MiB
// (was ~600 MB). The same for a max definition. The rows are the
// panes-only run's (kring SparseBelow 0) on 40 towns at a definition small
// enough to collect, for every aggregate.
func TestSmallTownsStayInTheBudget(t *testing.T) {
	if spec := os.Getenv("DEMANDPIPE_TOWNS_CHILD"); spec != "" {
		townsChild(spec)
		return
	}
	t.Parallel()
	if norace.Run(t) {
		return
	}
	seed := testsize.Seed(t)
	towns, limit := testsize.Pick(625, 2500), testsize.Pick(int64(128<<20), int64(512<<20))
	// Every aggregate: one whose rows do not add keeps isolated sources per
	// source too, merging them minute by minute (aggregate foldMinutes).
	for _, agg := range []string{"count", "max"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSmallTownsStayInTheBudget$", "-test.count=1")
		cmd.Env = append(os.Environ(), fmt.Sprintf("DEMANDPIPE_TOWNS_CHILD=%d,%d,%s", towns, seed, agg))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		var peak, rss, counted, rows int64
		i := strings.Index(string(out), "peak=")
		if i < 0 {
			t.Fatalf("child said nothing:\n%s", out)
		}
		if _, err := fmt.Sscanf(string(out[i:]), "peak=%d rss=%d counted=%d rows=%d", &peak, &rss, &counted, &rows); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		t.Logf("%d towns of 4 riders, 4 a region, default settings, %s: peak %.0f MiB mapped by Go, peak RSS %.0f MiB, %d counted, %d rows", towns, agg, float64(peak)/(1<<20), float64(rss)/(1<<20), counted, rows)
		if counted != int64(4*towns) || rows == 0 {
			t.Fatalf("%s: %d counted of %d events, %d rows", agg, counted, 4*towns, rows)
		}
		if rss > limit {
			t.Fatalf("%s: peak RSS %d MiB, over %d MiB", agg, rss>>20, limit>>20)
		}
	}

	// The same rows whichever path the sources take, for every aggregate.
	lines := townLines(40, seed)
	for _, a := range feature.Aggregates() {
		def := feature.Definition{Resolution: 8, Rings: []int{0, 1, 5}, Windows: []int{1, 4}, Aggregate: a.Name}
		late, chunk := DefaultConfig().Lateness.Milliseconds(), DefaultConfig().ChunkBytes
		perSource, _, _ := runEngineSparse(t, lines, def, late, 2, chunk, DefaultFutureConfig(), DefaultConfig().Kring.SparseBelow)
		panes, _, _ := runEngineSparse(t, lines, def, late, 2, chunk, DefaultFutureConfig(), 0)
		rowsEqual(t, perSource, panes)
	}
}

type rowCounter struct{ rows atomic.Int64 }

func (c *rowCounter) Write(_ context.Context, b *encode.Batch) error {
	c.rows.Add(int64(b.Len()))
	return nil
}
func (c *rowCounter) CloseMinute(context.Context, int64) error { return nil }
func (c *rowCounter) Close() error                             { return nil }

func townsChild(spec string) {
	f := strings.Split(spec, ",")
	towns, _ := strconv.Atoi(f[0])
	seed, _ := strconv.ParseUint(f[1], 10, 64)
	lines := townLines(towns, seed)
	cfg := DefaultConfig()
	cfg.Parallelism, cfg.Def.Aggregate = 2, f[2]
	e, err := New(cfg)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	c := &rowCounter{}
	peak, err := peakMemory(func() error {
		return e.Run(context.Background(), strings.NewReader(strings.Join(lines, "\n")+"\n"), c)
	})
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Printf("peak=%d rss=%d counted=%d rows=%d\n", peak, procmem.PeakRSS(), e.Stats.Snapshot().Counted, c.rows.Load())
	os.Exit(0)
}
