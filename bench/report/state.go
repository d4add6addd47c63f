package report

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/kring"
	"github.com/demandpipe/demandpipe/pipeline"
	"github.com/demandpipe/demandpipe/windows"
)

// sizer is a sink.Writer that measures every row in three encodings and
// keeps the largest minute's batch for the sink sections.
type sizer struct {
	mu             sync.Mutex
	rows           int64
	varint, ndjson int64
	numFeatures    int
	largest, cur   *encode.Batch
	buf            []byte
}

func (s *sizer) Write(_ context.Context, b *encode.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.numFeatures = b.NumFeatures
	for i := range b.Len() {
		s.buf = encode.AppendRowBinary(s.buf[:0], b.Minute, b.Products[i], b.Cells[i], b.Row(i))
		s.varint += int64(len(s.buf))
		s.buf = encode.AppendRowJSON(s.buf[:0], b, i)
		s.ndjson += int64(len(s.buf))
	}
	s.rows += int64(b.Len())
	if s.cur == nil || s.cur.Minute != b.Minute {
		s.cur = &encode.Batch{Minute: b.Minute, NumFeatures: b.NumFeatures, Names: b.Names}
	}
	s.cur.Cells = append(s.cur.Cells, b.Cells...)
	s.cur.Products = append(s.cur.Products, b.Products...)
	s.cur.Features = append(s.cur.Features, b.Features[:b.Len()*b.NumFeatures]...)
	return nil
}

func (s *sizer) CloseMinute(_ context.Context, m int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil && s.cur.Minute == m && (s.largest == nil || s.cur.Len() > s.largest.Len()) {
		s.largest = s.cur
	}
	s.cur = nil
	return nil
}

func (s *sizer) Close() error { return nil }

// features: bytes per row of the engine's rows over the corpus, in the
// binary row format (encode/FORMAT.md: a 13-byte key, a kind byte, a count
// and one uvarint per int32 feature) against the same key with fixed int32
// and with float64 features. Exact, so no rounds.
func (r *run) features() error {
	cfg := pipeline.DefaultConfig()
	e, err := pipeline.New(cfg)
	if err != nil {
		return err
	}
	s := &sizer{}
	if err := e.Run(context.Background(), bytes.NewReader(r.c.data), s); err != nil {
		return err
	}
	if s.rows == 0 {
		return fmt.Errorf("no rows")
	}
	r.rows = s.largest
	n := float64(s.rows)
	nf := s.numFeatures
	head := float64(encode.RowKeyLen + 2)
	varint := float64(s.varint) / n
	i32 := head + 4*float64(nf)
	f64 := head + 8*float64(nf)
	r.add("features", summaryLine{"int32 features (varint rows)", "bytes per row", fmt.Sprintf("%.0f", f64), fmt.Sprintf("%.1f", varint), fmt.Sprintf("%.1fx smaller", f64/varint)}, fmt.Sprintf(`
## int32 vs float64 features: bytes per row

All %d rows the engine emits for the corpus (%d features each), each with the binary row
format's 13-byte key and 2-byte header. Exact sizes, not timings.

| features as | bytes per row | vs float64 |
|---|---|---|
| float64, fixed 8 bytes (off, naive) | %.0f | 1x |
| int32, fixed 4 bytes | %.0f | %.1fx smaller |
| int32 as uvarints, `+"`encode.AppendRowBinary`"+` (on, engine and store) | %.1f | **%.1fx smaller** |
| for reference: the ndjson line of the contract | %.1f | |

Features are counts: most are below 128 and take one byte as a uvarint.
`, s.rows, nf, f64, i32, f64/i32, varint, f64/varint, float64(s.ndjson)/n))
	return nil
}

// panes: one product's per-minute smoothed values D over the corpus's
// minutes, turned into the window sums of every minute. Off: Flink's
// sliding windows, each minute's D copied into every (w, end) window
// instance it belongs to, each instance read when its end closes; on:
// windows.Windows (running sums: add the newest minute, subtract the one
// that leaves). Both read every emitted row.
func (r *run) panes() error {
	c, def := r.c, r.c.def
	// Per-minute counts of the busiest product, from dedup's first events.
	byProduct := map[byte]int{}
	for i, e := range c.evs {
		if c.first[i] {
			byProduct[e.product]++
		}
	}
	var prod byte
	for p, n := range byProduct {
		if n > byProduct[prod] || n == byProduct[prod] && p < prod {
			prod = p
		}
	}
	perMinute := map[int64]map[uint64]int32{}
	lo, hi := int64(1<<62), int64(-1)
	for i, e := range c.evs {
		if !c.first[i] || e.product != prod {
			continue
		}
		if perMinute[e.minute] == nil {
			perMinute[e.minute] = map[uint64]int32{}
		}
		perMinute[e.minute][c.cells[i]]++
		lo, hi = min(lo, e.minute), max(hi, e.minute)
	}
	sm, err := kring.New(def, kring.Config{MaxCachedDisks: 1 << 20, Workers: 2})
	if err != nil {
		return err
	}
	K := len(def.Rings)
	var ds []kring.Sparse
	var sc kring.Scratch
	for m := lo; m <= hi; m++ {
		cells := make([]uint64, 0, len(perMinute[m]))
		for cell := range perMinute[m] {
			cells = append(cells, cell)
		}
		slices.Sort(cells)
		counts := make([]int32, len(cells))
		for i, cell := range cells {
			counts[i] = perMinute[m][cell]
		}
		idx, err := sm.Prepare(cells, m, nil)
		if err != nil {
			return err
		}
		var d kring.Sparse
		sm.Smooth(&sc, idx, counts, &d)
		ds = append(ds, kring.Sparse{Idx: slices.Clone(d.Idx), Vals: slices.Clone(d.Vals)})
	}
	nT := sm.Cells.Len()
	minutes := len(ds)

	var panesAdds, copyAdds, panesBytes, copyBytes int64
	var sink int64
	on := func() error {
		w := windows.New(def)
		var targets []windows.Target
		panesAdds = 0
		for i := range ds {
			w.Advance(lo+int64(i), &ds[i])
			targets = w.Collect(targets[:0])
			panesAdds += int64(len(targets)) * int64(2*len(def.Windows)*K)
			for _, t := range targets {
				for _, v := range w.Row(t.Slot) {
					sink += int64(v)
				}
			}
			panesBytes = max(panesBytes, int64(w.Bytes()))
		}
		return nil
	}
	type inst struct {
		vals    []int32 // nT*K
		mark    []bool
		touched []uint32
	}
	var pool []*inst
	off := func() error {
		live := map[[2]int64]*inst{}
		copyAdds = 0
		get := func(wi int, end int64) *inst {
			k := [2]int64{int64(wi), end}
			in := live[k]
			if in == nil {
				if len(pool) > 0 {
					in, pool = pool[len(pool)-1], pool[:len(pool)-1]
				} else {
					in = &inst{vals: make([]int32, nT*K), mark: make([]bool, nT)}
				}
				live[k] = in
				copyBytes = max(copyBytes, int64(len(live)*nT*(4*K+1)))
			}
			return in
		}
		for i := range ds {
			m := lo + int64(i)
			d := &ds[i]
			for wi, w := range def.Windows {
				for end := m; end < m+int64(w); end++ { // one copy per window instance
					in := get(wi, end)
					for j, t := range d.Idx {
						if !in.mark[t] {
							in.mark[t] = true
							in.touched = append(in.touched, t)
						}
						row := in.vals[int(t)*K : int(t)*K+K]
						for k, v := range d.Vals[j*K : j*K+K] {
							row[k] += v
						}
					}
					copyAdds += int64(len(d.Idx) * K)
				}
			}
			for wi := range def.Windows { // minute m closes: fire the instances ending at m
				k := [2]int64{int64(wi), m}
				in := live[k]
				if in == nil {
					continue
				}
				for _, t := range in.touched {
					row := in.vals[int(t)*K : int(t)*K+K]
					for _, v := range row {
						sink += int64(v)
					}
					clear(row)
					in.mark[t] = false
				}
				in.touched = in.touched[:0]
				delete(live, k)
				pool = append(pool, in)
			}
		}
		return nil
	}
	offS, onS, err := r.sideBySide(timed(off), timed(on))
	if err != nil {
		return err
	}
	_ = sink
	perMin := func(s float64) string { return ms(s / float64(minutes)) }
	x := median(offS) / median(onS)
	avgD := 0
	for _, d := range ds {
		avgD += len(d.Idx)
	}
	avgD /= max(minutes, 1)
	sumW := 0
	for _, w := range def.Windows {
		sumW += w
	}
	r.add("panes", summaryLine{"window panes", "time per closed minute", perMin(median(offS)), perMin(median(onS)), ratio(x)}, fmt.Sprintf(`
## Window panes vs a copy per window

One product (the busiest) over the corpus's %d minutes: its smoothed per-minute values D
(kring, computed once beforehand; %d targets a minute on average, %d ring values each) turned
into the %d window sums of every minute, every emitted row read. Off: Flink's sliding windows
(slide 1 minute), each minute's D copied into each of the sum(W) = %d window instances it
belongs to, an instance read and freed when its end minute closes, dense arrays per instance
(no maps, so this isolates the copies); on: `+"`windows.Windows`"+`, running sums that add the newest
minute and subtract the one leaving.

| | adds per minute | time per minute (median) | slowest to fastest round | peak state |
|---|---|---|---|---|
| a copy per window instance (off) | %.1fM | %s | %s | %.0f MB |
| panes (on) | %.1fM (2·|W|·|K| per active target) | %s | %s | %.0f MB |
| **on vs off** | %.1fx fewer | **%s** | | |
`, minutes, avgD, K, len(def.Windows)*K, sumW,
		float64(copyAdds)/float64(minutes)/1e6, perMin(median(offS)), spread(offS, perMin), float64(copyBytes)/1e6,
		float64(panesAdds)/float64(minutes)/1e6, perMin(median(onS)), spread(onS, perMin), float64(panesBytes)/1e6,
		float64(copyAdds)/float64(max(panesAdds, 1)), ratio(x)))
	return nil
}
