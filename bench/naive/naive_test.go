package naive

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/gen"
	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/pipeline"
)

// engineRow is a row in comparable form: the engine's integers, or the
// naive job's float64s converted.
type engineRow struct {
	minute   int64
	product  string
	cell     string
	features []int32
}

// collect is a sink.Writer that keeps the engine's rows.
type collect struct {
	mu   sync.Mutex
	rows []engineRow
}

func (c *collect) Write(_ context.Context, b *encode.Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range b.Len() {
		c.rows = append(c.rows, engineRow{b.Minute, b.ProductName(i), string(encode.AppendCell(nil, b.Cells[i])), slices.Clone(b.Row(i))})
	}
	return nil
}
func (c *collect) CloseMinute(context.Context, int64) error { return nil }
func (c *collect) Close() error                             { return nil }

func toInts(t *testing.T, f []float64) []int32 {
	out := make([]int32, len(f))
	for i, v := range f {
		out[i] = int32(v)
		if float64(out[i]) != v {
			t.Fatalf("feature %d = %v is not an integer", i, v)
		}
	}
	return out
}

func generate(t *testing.T, gc gen.Config, n int) []byte {
	t.Helper()
	buf, err := gen.Generate(gc, n)
	if err != nil {
		t.Fatal(err)
	}
	return buf
}

// TestEqualsEngine: on generated inputs (duplicates, late and malformed
// lines, several products, many minutes) the naive job's rows, converted to
// integers, equal the engine's exactly, in the same order, and both count
// the same late, duplicate, rejected and counted events.
func TestEqualsEngine(t *testing.T) {
	if norace.Run(t) {
		return
	}
	small, err := feature.Parse("res=8;rings=0,1,3;windows=1,2,5")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		def    feature.Definition
		events int // raw lines
		rate   int // per minute of event time
	}{
		{"default", feature.Default(), 320, 8}, // 40 minutes: every window slides
		{"small", small, 6000, 600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gc := gen.DefaultConfig()
			gc.EventsPerMinute, gc.Riders, gc.Hotspots, gc.RadiusKm = tc.rate, 400, 2, 3
			gc.LateFraction, gc.MalformedFraction = 0.03, 0.03
			data := generate(t, gc, tc.events)

			cfg := pipeline.DefaultConfig()
			cfg.Def = tc.def
			cfg.Parallelism = 2
			cfg.Future.ConfirmRiders = 1 // event time as the naive job takes it: the largest ts
			e, err := pipeline.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			var want collect
			if err := e.Run(context.Background(), bytes.NewReader(data), &want); err != nil {
				t.Fatal(err)
			}
			es := e.Stats.Snapshot()

			var got Collect
			j := New(tc.def, cfg.Lateness, &got)
			if err := j.Run(context.Background(), bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			if len(want.rows) == 0 || j.Stats.Late == 0 || j.Stats.Duplicates == 0 || j.Stats.Rejected == 0 {
				t.Fatalf("input too tame: %d rows, stats %+v", len(want.rows), j.Stats)
			}
			if j.Stats.Lines != es.Lines || j.Stats.Late != es.Late || j.Stats.Duplicates != es.Duplicates ||
				j.Stats.Counted != es.Counted || j.Stats.Rows != es.Rows || j.Stats.Rejected != es.RejectedTotal {
				t.Errorf("stats differ: naive %+v, engine lines=%d late=%d dup=%d counted=%d rows=%d rejected=%d",
					j.Stats, es.Lines, es.Late, es.Duplicates, es.Counted, es.Rows, es.RejectedTotal)
			}
			if len(got.Rows) != len(want.rows) {
				t.Errorf("naive %d rows, engine %d", len(got.Rows), len(want.rows))
			}
			for i := range min(len(got.Rows), len(want.rows)) {
				r := got.Rows[i]
				g, w := engineRow{r.Minute, r.Product, r.H3, toInts(t, r.Features)}, want.rows[i]
				if g.minute != w.minute || g.product != w.product || g.cell != w.cell || !slices.Equal(g.features, w.features) {
					t.Fatalf("row %d: naive %+v, engine %+v", i, g, w)
				}
			}
			t.Logf("%d lines, %d counted, %d rows equal", es.Lines, es.Counted, len(want.rows))
		})
	}
}

func TestParseRejects(t *testing.T) {
	ok := `{"ts":60000,"rider_id":"r","lat":1.5,"lng":-2,"product_type":"01234567-89AB-CDEF-0123-456789ABCDEF"}`
	if ev, good := Parse([]byte(ok)); !good || ev.Product != "01234567-89ab-cdef-0123-456789abcdef" || ev.TS != 60000 {
		t.Fatalf("Parse(%s) = %+v, %v", ok, ev, good)
	}
	for _, bad := range []string{
		`{"ts":60000`, `[1]`, `{} {}`,
		`{"ts":"60000","rider_id":"r","lat":1,"lng":2,"product_type":"01234567-89ab-cdef-0123-456789abcdef"}`,
		`{"ts":1.5,"rider_id":"r","lat":1,"lng":2,"product_type":"01234567-89ab-cdef-0123-456789abcdef"}`,
		`{"ts":-1,"rider_id":"r","lat":1,"lng":2,"product_type":"01234567-89ab-cdef-0123-456789abcdef"}`,
		`{"ts":1,"rider_id":"","lat":1,"lng":2,"product_type":"01234567-89ab-cdef-0123-456789abcdef"}`,
		`{"ts":1,"rider_id":"r","lat":91,"lng":2,"product_type":"01234567-89ab-cdef-0123-456789abcdef"}`,
		`{"ts":1,"rider_id":"r","lat":1,"lng":-181,"product_type":"01234567-89ab-cdef-0123-456789abcdef"}`,
		`{"ts":1,"rider_id":"r","lat":1,"lng":2,"product_type":"01234567-89ab-cdef-0123-456789abcdeg"}`,
		`{"ts":1,"lat":1,"lng":2,"product_type":"01234567-89ab-cdef-0123-456789abcdef"}`,
	} {
		if _, good := Parse([]byte(bad)); good {
			t.Errorf("Parse(%s) accepted", bad)
		}
	}
}

// TestWindowCopies: one event lands in sum(W) window instances, and the
// closed minutes hold them no more.
func TestWindowCopies(t *testing.T) {
	def, _ := feature.Parse("res=8;rings=0;windows=1,2,4")
	var c Collect
	j := New(def, 30*time.Second, &c)
	ev := Event{TS: 60_000 * 10, Rider: "r", Product: "01234567-89ab-cdef-0123-456789abcdef", Lat: 40.7, Lng: -74}
	if err := j.count(ev, 10); err != nil {
		t.Fatal(err)
	}
	if len(j.windows) != 1+2+4 { // (w, end): (1,10), (2,10..11), (4,10..13)
		t.Fatalf("%d window instances, want 7", len(j.windows))
	}
	n := 0
	for _, st := range j.windows {
		n += len(st)
	}
	if n != 1+2+4 {
		t.Fatalf("%d copies, want 7", n)
	}
	j.first = 10
	if err := j.closeThrough(context.Background(), 13); err != nil {
		t.Fatal(err)
	}
	want := [][]float64{{1, 1, 1}, {0, 1, 1}, {0, 0, 1}, {0, 0, 1}}
	if len(c.Rows) != 4 || len(j.windows) != 0 {
		t.Fatalf("rows %+v, %d instances left", c.Rows, len(j.windows))
	}
	for i, r := range c.Rows {
		if r.Minute != int64(10+i) || !slices.Equal(r.Features, want[i]) {
			t.Errorf("row %d: %+v, want minute %d features %v", i, r, 10+i, want[i])
		}
	}
}
