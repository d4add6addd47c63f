package history

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/gen"
	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/internal/testsize"
	"github.com/demandpipe/demandpipe/pipeline"
)

// answers runs the engine over data once with the Sink (every row of
// every minute from the engine's close: the reference) and once with the
// Gatherer (counted events, the queried cells only), and returns both
// answer lists by query line.
func answers(t *testing.T, cfg pipeline.Config, data []byte, queries []Query) (sink, gathered []Answer) {
	t.Helper()
	collect := func(out *[]Answer) func(*Answer) error {
		*out = make([]Answer, len(queries))
		return func(a *Answer) error {
			a.Features = slices.Clone(a.Features)
			(*out)[a.Line] = *a
			return nil
		}
	}
	e, err := pipeline.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSink(cfg.Def, cfg.Lateness, slices.Clone(queries), collect(&sink))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Run(context.Background(), bytes.NewReader(data), s); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	e, err = pipeline.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGatherer(cfg.Def, cfg.Lateness, slices.Clone(queries), collect(&gathered))
	if err != nil {
		t.Fatal(err)
	}
	e.Emit = g
	if err := e.Run(context.Background(), bytes.NewReader(data), nil); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	return sink, gathered
}

// TestGathererEqualsSink: the Gatherer's answers are the Sink's, query for
// query (minute, found and every feature), on a dense city, a thin one
// with gaps longer than the longest window (minutes the closer skips), and
// definitions with rings and windows out of order and other aggregates;
// queries before the first close, inside, in the gaps and after the end.
func TestGathererEqualsSink(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	rng := rand.New(rand.NewPCG(testsize.Seed(t), 3))
	for _, tc := range []struct {
		name      string
		perMinute int
		events    int
		thin      int // keep one event in thin (1: all)
		def       feature.Definition
	}{
		{"dense", 3000, testsize.Pick(15_000, 30_000), 1, feature.Definition{Resolution: 8, Rings: []int{0, 1, 3, 5}, Windows: []int{1, 2, 4, 8}}},
		{"thin with gaps", 1000, 30_000, 7, feature.Definition{Resolution: 8, Rings: []int{5, 0, 2}, Windows: []int{3, 1, 5}}},
		{"fine resolution", 2000, testsize.Pick(8_000, 16_000), 1, feature.Definition{Resolution: 9, Rings: []int{0, 2, 7}, Windows: []int{3, 5, 1}}},
		// The Gatherer folds windows itself: each aggregate as the close does.
		{"dense max", 3000, testsize.Pick(9_000, 30_000), 1, feature.Definition{Resolution: 8, Rings: []int{3, 0, 1}, Windows: []int{4, 1, 2}, Aggregate: "max"}},
		{"thin with gaps, minutes", 1000, 30_000, 7, feature.Definition{Resolution: 8, Rings: []int{5, 0, 2}, Windows: []int{3, 1, 5}, Aggregate: "minutes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gc := gen.DefaultConfig()
			gc.EventsPerMinute, gc.Riders, gc.Seed = tc.perMinute, 600, rng.Uint64()
			data, err := gen.Generate(gc, tc.events)
			if err != nil {
				t.Fatal(err)
			}
			if tc.thin > 1 {
				data = thinOut(data, tc.thin, gc.Start.UnixMilli(), rng)
			}
			g, _ := gen.New(gc)
			products := append(g.Products(), encode.UUID{0xde, 0xad}) // one the stream never has
			start := gc.Start.UnixMilli()
			span := int64(tc.events/tc.perMinute+40) * 60_000
			var qs []Query
			for i := range 600 {
				qs = append(qs, Query{TS: start - 120_000 + rng.Int64N(span), Lat: 40.70 + rng.Float64()*0.12, Lng: -74.02 + rng.Float64()*0.1,
					Product: products[rng.IntN(len(products))], Line: i})
			}
			cfg := pipeline.DefaultConfig()
			cfg.Def, cfg.Parallelism = tc.def, 2
			want, got := answers(t, cfg, data, qs)
			found := 0
			for i := range qs {
				w, g := want[i], got[i]
				if w.HasMinute != g.HasMinute || w.Minute != g.Minute || w.Found != g.Found || w.Cell != g.Cell || !slices.Equal(w.Features, g.Features) {
					t.Fatalf("query %d at %s: sink minute %v/%s found %v %v; gatherer minute %v/%s found %v %v", i, time.UnixMilli(qs[i].TS).UTC(),
						w.HasMinute, encode.MinuteStart(w.Minute), w.Found, w.Features, g.HasMinute, encode.MinuteStart(g.Minute), g.Found, g.Features)
				}
				if w.Found {
					found++
				}
			}
			if found < len(qs)/10 {
				t.Fatalf("only %d of %d queries found a row: the test no longer tests features", found, len(qs))
			}
		})
	}
}

// thinOut keeps one line in n, at random, as a small market at night,
// and none in minutes 4-11 and 15-23 of the stream: gaps longer than the
// longest window, which the closer skips once its windows are empty.
func thinOut(data []byte, n int, start int64, rng *rand.Rand) []byte {
	var out []byte
	for line := range bytes.Lines(data) {
		var ev struct {
			TS int64 `json:"ts"`
		}
		json.Unmarshal(line, &ev)
		if m := (ev.TS - start) / 60_000; m >= 4 && m <= 11 || m >= 15 && m <= 23 {
			continue
		}
		if rng.IntN(n) == 0 {
			out = append(out, line...)
		}
	}
	return out
}

// BenchmarkGatherer: answering 100,000 queries over an hour of a city
// (3,000 events a minute) with the Gatherer and with the Sink, side by
// side (go test -bench Gatherer -run ^$ ./history/).
func BenchmarkGatherer(b *testing.B) {
	gc := gen.DefaultConfig()
	gc.EventsPerMinute = 3000
	data, err := gen.Generate(gc, 3000*60)
	if err != nil {
		b.Fatal(err)
	}
	g, _ := gen.New(gc)
	products := g.Products()
	rng := rand.New(rand.NewPCG(1, 2))
	var qs []Query
	for i := range 100_000 {
		qs = append(qs, Query{TS: gc.Start.UnixMilli() + rng.Int64N(3600_000), Lat: 40.70 + rng.Float64()*0.12, Lng: -74.02 + rng.Float64()*0.1,
			Product: products[rng.IntN(len(products))], Line: i})
	}
	cfg := pipeline.DefaultConfig()
	for _, mode := range []string{"gatherer", "sink"} {
		b.Run(mode, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				e, _ := pipeline.New(cfg)
				n := 0
				emit := func(*Answer) error { n++; return nil }
				var err error
				if mode == "gatherer" {
					var gt *Gatherer
					if gt, err = NewGatherer(cfg.Def, cfg.Lateness, slices.Clone(qs), emit); err == nil {
						e.Emit = gt
						err = e.Run(context.Background(), bytes.NewReader(data), nil)
						gt.Close()
					}
				} else {
					var s *Sink
					if s, err = NewSink(cfg.Def, cfg.Lateness, slices.Clone(qs), emit); err == nil {
						err = e.Run(context.Background(), bytes.NewReader(data), s)
						s.Close()
					}
				}
				if err != nil || n != len(qs) {
					b.Fatal(err, n)
				}
			}
		})
	}
	_ = fmt.Sprint
}
