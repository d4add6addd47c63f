package aggregate

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/uber/h3-go/v4"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/internal/cellindex"
	"github.com/demandpipe/demandpipe/sink"
)

// BenchmarkCloseMinute measures a metro-scale minute close with the default
// definition: `cells` active source cells (one product) every minute,
// smoothing to k=20, sliding six windows, and emitting every row to the
// null sink. Disks are warm (computed in the first minutes), as in steady
// state.
//
// aggregate=max folds the windows again each minute (windows.refold)
// instead of sliding sums.
//
// checkpoint=true adds what a durable sink costs the engine: encoding the
// minute's source counts and the resume state at every close (the sink
// here discards them, so only the engine's side is measured).
func BenchmarkCloseMinute(b *testing.B) {
	for _, bc := range []struct {
		n   int
		cp  bool
		agg string // "": count, named as before there were aggregates
	}{{20_000, false, ""}, {20_000, true, ""}, {40_000, false, ""}, {40_000, true, ""}, {20_000, false, "max"}} {
		n := bc.n
		agg := ""
		if bc.agg != "" {
			agg = "/aggregate=" + bc.agg
		}
		b.Run(fmt.Sprintf("cells=%d/k=20/features=54%s/checkpoint=%v", n, agg, bc.cp), func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Def.Aggregate = bc.agg
			cfg.Kring.MaxCachedDisks = 1 << 20
			products := encode.NewProducts()
			code, _ := products.Code(encode.UUID{1})
			var st Stats
			var snk sink.Writer = &sink.Null{}
			var resume Resume
			if bc.cp {
				snk, resume = &nullCheckpointer{}, &fixedResume{cp: make([]byte, 96)}
			}
			a, err := newLocal(cfg, products, snk, &st)
			if err != nil {
				b.Fatal(err)
			}
			center, _ := h3.LatLngToCell(h3.LatLng{Lat: 40.75, Lng: -73.98}, 8)
			r := 1
			for 3*r*(r+1)+1 < n*2 {
				r++
			}
			disk, _ := h3.GridDisk(center, r)
			m := int64(28_620_600)
			fill := func() {
				mc := a.counts(m)
				ix := cellindex.New(n)
				mc.cells[code] = ix
				// Half the cells change from minute to minute, like moving demand.
				for i := range n {
					c := disk[(i*2+int(m%2)*(i%2))%len(disk)]
					k := ix.Insert(uint64(c))
					if int(k) == len(mc.counts[code]) {
						mc.counts[code] = append(mc.counts[code], 0)
					}
					mc.counts[code][k] += int32(1 + i%3)
				}
			}
			for range 3 { // warm the disk cache
				fill()
				req, _ := a.request(m, m, nil)
				if err := a.closeThrough(context.Background(), req); err != nil {
					b.Fatal(err)
				}
				m++
			}
			rows := st.Rows.Load()
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				fill()
				b.StartTimer()
				req, _ := a.request(m, m, resume)
				if err := a.closeThrough(context.Background(), req); err != nil {
					b.Fatal(err)
				}
				m++
			}
			b.ReportMetric(float64(st.Rows.Load()-rows)/float64(b.N), "rows/minute")
			// The close state per row (a target with data): with -benchtime
			// 40x or more every pane of the 32-minute window is full.
			perMinute := float64(st.Rows.Load()-rows) / float64(b.N)
			b.ReportMetric(float64(st.StateBytes.Load())/perMinute, "state-B/target")
			// Of it, what each target holds (windows, cell index, scratch),
			// without the disk cache and sparse sources, which follow the
			// sources.
			b.ReportMetric(float64(st.StateBytes.Load()-st.SourceBytes.Load())/perMinute, "target-B/target")
			b.ReportMetric(float64(st.Compactions.Load()), "compactions")
			b.ReportMetric(float64(st.ShedSources.Load()), "shed")
		})
	}
}

// BenchmarkCount measures counting located events into the open minute's
// tables: after the first minute warms the tables up, no allocation.
func BenchmarkCount(b *testing.B) {
	cfg := DefaultConfig()
	products := encode.NewProducts()
	var st Stats
	a, err := newLocal(cfg, products, &sink.Null{}, &st)
	if err != nil {
		b.Fatal(err)
	}
	center, _ := h3.LatLngToCell(h3.LatLng{Lat: 40.75, Lng: -73.98}, 8)
	disk, _ := h3.GridDisk(center, 40)
	evs := make([]Counted, 4096)
	for i := range evs {
		evs[i] = Counted{Minute: 1, Cell: uint64(disk[(i*7919)%len(disk)]), Product: byte(i % 3)}
	}
	count := func() {
		for _, c := range evs {
			a.Count(c)
		}
	}
	count() // warm: tables sized for this minute
	b.ReportAllocs()
	for b.Loop() {
		count()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/event")
}

// fixedResume is a resume point whose checkpoint is a fixed blob (the
// size of a sequencer's state with few riders).
type fixedResume struct{ cp []byte }

func (r *fixedResume) Checkpoint(int64) ([]byte, error) { return r.cp, nil }
func (r *fixedResume) Pos() int64                       { return 0 }

// nullCheckpointer discards rows and state (engine-side cost only).
type nullCheckpointer struct {
	sink.Null
	bytes int
}

func (n *nullCheckpointer) StageState(_ int64, st sink.State) {
	n.bytes = len(st.Counts) + len(st.Checkpoint)
}
func (n *nullCheckpointer) LoadState() ([]byte, func(int64) ([]byte, bool, error), error) {
	return nil, nil, nil
}

// BenchmarkRestore measures a resume's restore of a metro: the windows of
// the default definition rebuilt from 31 minutes of count records of
// `cells` source cells each (the target: under 2 s before new
// events flow).
func BenchmarkRestore(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Kring.MaxCachedDisks = 1 << 20
	records, m0 := metroRecords(31)
	b.ReportMetric(float64(len(records[m0])), "record-bytes/minute")
	b.ReportAllocs()
	for b.Loop() {
		var st Stats
		a, err := newLocal(cfg, encode.NewProducts(), &sink.Null{}, &st)
		if err != nil {
			b.Fatal(err)
		}
		if err := a.restore(context.Background(), m0+30, func(m int64) ([]byte, bool, error) {
			r, ok := records[m]
			return r, ok, nil
		}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBackfill measures starting a new definition from 31 minutes of
// a metro's count records (20,000 sources a minute, what the default
// definition's sink keeps): rings 0,2,7 and windows 1,3,5 (issue 23's
// example): its windows restored, then its rows of the 27 minutes the
// records cover whole closed and handed to the null sink.
func BenchmarkBackfill(b *testing.B) {
	records, m0 := metroRecords(31)
	cfg := DefaultConfig()
	cfg.Def = feature.Definition{Resolution: 8, Rings: []int{0, 2, 7}, Windows: []int{1, 3, 5}}
	b.ReportAllocs()
	for b.Loop() {
		var st Stats
		a, err := newLocal(cfg, encode.NewProducts(), &sink.Null{}, &st)
		if err != nil {
			b.Fatal(err)
		}
		first, err := a.Backfill(context.Background(), m0, m0+30, func(m int64) ([]byte, bool, error) {
			r, ok := records[m]
			return r, ok, nil
		}, nil)
		if err != nil || first != m0+4 || st.Minutes.Load() != 27 {
			b.Fatalf("first %d, %d minutes closed: %v", first-m0, st.Minutes.Load(), err)
		}
		b.ReportMetric(float64(st.Rows.Load()), "rows")
	}
}

// BenchmarkCloseSparse measures the minute close of isolated sources: each
// minute brings `sources` riders at random places on the globe (one
// product), so every source has 1,261 targets of its own at k=20 and the
// window holds them for 32 minutes. sparse-below=0 keeps them in the panes
// (per target); the default keeps them per source (sparse.go). state-B is
// the state held after the last close, per source in the window.
func BenchmarkCloseSparse(b *testing.B) {
	for _, below := range []int{0, 4} {
		b.Run(fmt.Sprintf("sources=200/k=20/sparse-below=%d", below), func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Kring.SparseBelow = below
			products := encode.NewProducts()
			code, _ := products.Code(encode.UUID{1})
			var st Stats
			a, err := newLocal(cfg, products, &sink.Null{}, &st)
			if err != nil {
				b.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			m := int64(28_620_600)
			held := 0
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				mc := a.counts(m)
				ix := cellindex.New(200)
				mc.cells[code] = ix
				for range 200 {
					ll := h3.LatLng{Lat: math.Asin(rng.Float64()*1.9-0.95) * 180 / math.Pi, Lng: rng.Float64()*360 - 180}
					c, _ := h3.LatLngToCell(ll, 8)
					if k := ix.Insert(uint64(c)); int(k) == len(mc.counts[code]) {
						mc.counts[code] = append(mc.counts[code], 1)
					}
				}
				held = min(held+200, 200*32)
				b.StartTimer()
				req, _ := a.request(m, m, nil)
				if err := a.closeThrough(context.Background(), req); err != nil {
					b.Fatal(err)
				}
				m++
			}
			b.ReportMetric(float64(st.StateBytes.Load())/float64(held), "state-B/source")
			b.ReportMetric(float64(st.Rows.Load())/float64(b.N), "rows/minute")
		})
	}
}

// metroRecords are the count records of minutes a metro's sink keeps: 20,000
// sources a minute around Manhattan, half of them moving each minute.
func metroRecords(minutes int) (map[int64][]byte, int64) {
	const n = 20_000
	center, _ := h3.LatLngToCell(h3.LatLng{Lat: 40.75, Lng: -73.98}, 8)
	disk, _ := h3.GridDisk(center, 120)
	records := map[int64][]byte{}
	m0 := int64(28_620_600)
	src := encode.NewProducts()
	code, _ := src.Code(encode.UUID{1})
	for m := m0; m < m0+int64(minutes); m++ {
		mc := &minuteCounts{minute: m}
		ix := cellindex.New(n)
		mc.cells[code] = ix
		for i := range n {
			k := ix.Insert(uint64(disk[(i*2+int(m%2)*(i%2))%len(disk)]))
			if int(k) == len(mc.counts[code]) {
				mc.counts[code] = append(mc.counts[code], 0)
			}
			mc.counts[code][k]++
		}
		records[m] = appendCounts(nil, mc, src, m)
	}
	return records, m0
}
