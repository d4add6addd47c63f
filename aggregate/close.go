package aggregate

import (
	"bytes"
	"cmp"
	"context"
	"math/bits"
	"slices"
	"sync"
	"time"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/internal/cellindex"
	"github.com/demandpipe/demandpipe/kring"
	"github.com/demandpipe/demandpipe/sink"
	"github.com/demandpipe/demandpipe/windows"
)

// minuteCounts is c(h, p, m) for one open minute: per product, a dense cell
// numbering and a count per cell.
type minuteCounts struct {
	minute int64
	// received is when the last batch that counted into this minute was
	// read (unix ns): the start of the ingestion latency.
	received int64
	cells    [encode.MaxProducts]*cellindex.Index
	counts   [encode.MaxProducts][]int32
}

// productState is a product's sliding windows plus per-close scratch.
type productState struct {
	code    byte
	win     *windows.Windows
	d       kring.Sparse
	src     []uint32
	targets []windows.Target
	order   []cellSlot
	active  bool    // has counts this minute or data in its windows
	cnts    []int32 // this minute's counts of the sources in src
	sparse  sparseSet
}

// empty reports whether no window of the product holds data.
func (ps *productState) empty() bool { return ps.win.Empty() && ps.sparse.empty() }

type cellSlot struct {
	cell uint64
	slot int32
}

// closer closes minutes (the close stage, on its own goroutine): it smooths
// each minute's counts over the k-rings, slides the windows, and hands the
// merged rows to the sink, in (product, cell) order; with a checkpointing
// sink it also stages the state a restart needs. It owns everything it
// touches; minutes reach it only through closeRequests, whose counts it
// gives back to the counter's free list when done.
type closer struct {
	def      feature.Definition
	products *encode.Products
	smoother *kring.Smoother
	sink     sink.Writer
	stats    *Stats
	workers  int
	batchRow int
	free     chan *minuteCounts

	state    [encode.MaxProducts]*productState
	scratch  []*kring.Scratch
	next     int64 // next minute to close; NoMinute before the first event
	out      encode.Batch
	srcCells []uint64
	rule     *sparseRule // which sources take the per-source path (sparse.go)
	acc      []int32     // a row being summed from sparse sources
	kind     feature.Aggregate
	dk       []int32 // emitMerged's, when kind is not additive: a target's values by ring and age
	byLen    []int   // the windows' indices, shortest first
	// budget: 90% of Config.MaxMemory (0: none), the rest being slack for
	// arrays that grow by doubling; perTarget bounds what a new target
	// costs, perSource a source in a new place (a disk of new targets)
	budget, perSource, perTarget int64
	denseIdx, sparseIdx          []int32 // scratch of place: a minute's sources by path
	// compactAt: the cell index is renumbered to the cells the windows
	// still hold once it has this many (maybeCompact)
	compactAt, minCompact int
	// owns filters the rows emitted: only cells this process owns (the
	// aggregate role of a scale-out keeps the cells of its regions); nil:
	// all. Every cell's windows are kept either way: a source near a
	// region's border feeds cells on both sides.
	owns func(cell uint64) bool

	// checkpoints: staged with the rows when the sink keeps them
	cpSink    sink.Checkpointer
	maxW      int
	countsBuf []byte
	cpClosed  int64 // closed minute of the last checkpoint staged
	clock     int64 // newest minute closed by event time (sink.State.Clock)
	// onDurable is told each input position a committed checkpoint makes
	// unneeded (Engine.Durable).
	onDurable func(pos int64)
	// stageParts, when set (an Aggregator keeping state per part, parts.go),
	// stages every owned part's state for minute m before it commits.
	stageParts func(m int64) error
	onClose    func(m, rows int64, took time.Duration, received int64) // Engine.OnClose and the histograms
}

// CloseRequest asks the closing half to close every minute up to through;
// counts holds the counts of those minutes that had any. The count side
// makes them (Local.Request), the close side carries them out
// (Local.CloseThrough), on another goroutine.
type CloseRequest struct {
	through int64
	clock   int64 // minutes <= clock are closed by event time, not only by the end of the input
	first   int64
	counts  []*minuteCounts
	resume  Resume // where a restart after this close resumes; nil: none
}

// Resume is where a restart after a close resumes: the ingest side's state
// at an input position, which the close commits atomically with the rows of
// the request's last minute when the sink keeps checkpoints. The close does
// not look inside it.
type Resume interface {
	// Checkpoint encodes "minutes through closed are committed; resume
	// here". The bytes are used before the next call.
	Checkpoint(closed int64) ([]byte, error)
	// Pos is the input position a restart reads from: once the checkpoint
	// is committed, the input before it is never needed again.
	Pos() int64
}

func newCloser(cfg Config, products *encode.Products, snk sink.Writer, st *Stats, free chan *minuteCounts) (*closer, error) {
	kc := cfg.Kring
	kc.Workers = cfg.Parallelism
	sm, err := kring.New(cfg.Def, kc)
	if err != nil {
		return nil, err
	}
	a := &closer{
		def: cfg.Def, products: products, smoother: sm, sink: snk, stats: st,
		workers: cfg.Parallelism, batchRow: cfg.BatchRows, next: NoMinute, free: free,
		owns:       cfg.Owns,
		compactAt:  cmp.Or(cfg.CompactAt, minCompact),
		minCompact: cmp.Or(cfg.CompactAt, minCompact),
		budget:     cfg.MaxMemory / 10 * 9, // the rest: slack for arrays growing by doubling
		perTarget:  perTargetBytes(cfg),
		perSource:  perTargetBytes(cfg) * int64(feature.DiskCells(cfg.Def.MaxRingValue())),
		rule:       newSparseRule(cfg.Kring.SparseBelow, cfg.Def.Resolution, cfg.Def.MaxRingValue(), slices.Max(cfg.Def.Windows)),
		kind:       cfg.Def.Kind(),
		byLen:      cfg.Def.WindowsByLength(),
	}
	for range a.workers {
		a.scratch = append(a.scratch, &kring.Scratch{})
	}
	a.out.Names = products
	a.cpSink, _ = snk.(sink.Checkpointer)
	a.maxW = slices.Max(cfg.Def.Windows)
	a.cpClosed, a.clock = NoMinute, NoMinute
	return a, nil
}

// closeThrough (closing half) closes every minute up to req.through, in
// order.
func (a *closer) closeThrough(ctx context.Context, req CloseRequest) error {
	a.clock = max(a.clock, req.clock)
	if a.next == NoMinute {
		if req.through < req.first {
			// Nothing to close yet, and a later batch may still count an
			// earlier minute (one the watermark has not closed): fixing
			// next here would skip it.
			return nil
		}
		a.next = req.first
	}
	defer func() {
		for _, mc := range req.counts {
			a.release(mc)
		}
	}()
	for a.next <= req.through {
		m := a.next
		var mc *minuteCounts
		for _, c := range req.counts {
			if c.minute == m {
				mc = c
			}
		}
		if mc == nil && a.allEmpty() {
			// Nothing counted and no window holds data: skip to the next
			// minute with counts (or past through) without emitting.
			nxt := req.through + 1
			for _, c := range req.counts {
				if c.minute > m {
					nxt = min(nxt, c.minute)
				}
			}
			a.next = nxt
			continue
		}
		// The last minute this request closes carries the checkpoint:
		// either it is through, or every later one up to through is an
		// empty minute that will be skipped (known once m's windows moved).
		later := false
		for _, c := range req.counts {
			later = later || c.minute > m
		}
		last := func() bool { return m == req.through || (!later && a.allEmpty()) }
		if err := a.closeMinute(ctx, m, mc, &req, last, false); err != nil {
			return err
		}
		a.next = m + 1
	}
	return nil
}

func (a *closer) release(mc *minuteCounts) {
	for p := range mc.cells {
		if mc.cells[p] != nil {
			mc.cells[p] = nil // fresh index next time: sizes vary by minute
			mc.counts[p] = mc.counts[p][:0]
		}
	}
	select {
	case a.free <- mc:
	default:
	}
}

func (a *closer) allEmpty() bool {
	for _, ps := range a.state {
		if ps != nil && !ps.empty() {
			return false
		}
	}
	return true
}

// closeMinute computes and emits the rows of minute m, in named steps:
// place the minute's sources (sequential), smooth and slide the windows
// (parallel per product), emit the rows in canonical order, then commit
// the minute with its state and checkpoint, and account for it. While
// restoring it stops after the windows: no rows.
func (a *closer) closeMinute(ctx context.Context, m int64, mc *minuteCounts, req *CloseRequest, last func() bool, restoring bool) error {
	start := time.Now()
	work, err := a.placeSources(m, mc, restoring)
	if err != nil {
		return err
	}
	a.slideWindows(m, work, restoring)
	if restoring {
		a.expire(m)
		a.smoother.Evict(m)
		return nil
	}
	rows, targets, err := a.emitRows(ctx, m, work)
	if err != nil {
		return err
	}
	a.expire(m)
	if err := a.commit(ctx, m, mc, req, last); err != nil {
		return err
	}
	a.smoother.Evict(m)
	a.maybeCompact(m)
	a.publishBytes()
	a.account(m, mc, rows, targets, time.Since(start))
	return nil
}

// placeSources (step 1, sequential) maps minute m's sources to cell
// indices, computing new disks, and returns the products with work: new
// counts, or windows that still hold data.
func (a *closer) placeSources(m int64, mc *minuteCounts, restoring bool) ([]*productState, error) {
	var work []*productState
	used := int64(-1) // the state's bytes, once the budget needs them
	for p := range encode.MaxProducts {
		ps := a.state[p]
		hasCounts := mc != nil && mc.cells[p] != nil && mc.cells[p].Len() > 0
		if ps == nil {
			if !hasCounts {
				continue
			}
			ps = &productState{code: byte(p), win: windows.New(a.def)}
			a.state[p] = ps
		}
		ps.src = ps.src[:0]
		if hasCounts {
			var err error
			if a.srcCells, ps.cnts, err = a.place(ps, mc.cells[p], mc.counts[p], m, !restoring, &used, a.srcCells[:0], ps.cnts[:0]); err != nil {
				return nil, err
			}
			if ps.src, err = a.smoother.Prepare(a.srcCells, m, ps.src); err != nil {
				return nil, err
			}
		} else if ps.empty() {
			continue
		}
		work = append(work, ps)
	}
	return work, nil
}

// slideWindows (step 2, parallel per product) smooths the sources, slides
// the windows to m and, unless restoring, collects and sorts the targets
// this process emits.
func (a *closer) slideWindows(m int64, work []*productState, restoring bool) {
	cells := a.smoother.Cells
	var wg sync.WaitGroup
	next := make(chan *productState, len(work))
	for _, ps := range work {
		next <- ps
	}
	close(next)
	for w := range min(a.workers, len(work)) {
		wg.Add(1)
		go func(sc *kring.Scratch) {
			defer wg.Done()
			for ps := range next {
				a.smoother.Smooth(sc, ps.src, ps.cnts[:len(ps.src)], &ps.d)
				ps.win.Advance(m, &ps.d)
				ps.targets = ps.win.Collect(ps.targets[:0])
				ps.order = ps.order[:0]
				if restoring {
					continue // rebuilding windows after a restart: no rows
				}
				ps.sparse.gather(m, a.def.Windows, !a.kind.Additive)
				for _, t := range ps.targets {
					c := cells.Cell(t.Cell)
					if a.owns != nil && !a.owns(c) {
						continue // another process emits it
					}
					ps.order = append(ps.order, cellSlot{c, t.Slot})
				}
				slices.SortFunc(ps.order, func(x, y cellSlot) int { return cmp.Compare(x.cell, y.cell) })
			}
		}(a.scratch[w])
	}
	wg.Wait()
}

// emitRows (step 3) hands minute m's rows to the sink in (product UUID,
// cell) order: a canonical order that does not depend on arrival order or
// on how codes were assigned. It returns the rows and the active targets.
func (a *closer) emitRows(ctx context.Context, m int64, work []*productState) (rows, targets int64, err error) {
	var missing []*sparseDisk
	for _, ps := range work {
		missing = append(missing, ps.sparse.missing...)
	}
	if len(missing) > 0 {
		if err := computeDisks(missing, a.def.MaxRingValue(), a.workers); err != nil {
			return 0, 0, err
		}
	}
	slices.SortFunc(work, func(x, y *productState) int {
		ux, uy := a.products.UUIDAt(x.code, m), a.products.UUIDAt(y.code, m)
		return bytes.Compare(ux[:], uy[:])
	})
	nF := a.def.NumFeatures()
	a.out.Reset(m, nF)
	for _, ps := range work {
		targets += int64(ps.win.Active())
		if len(ps.sparse.srcs) > 0 {
			n, err := a.emitMerged(ctx, m, ps, &rows)
			if err != nil {
				return 0, 0, err
			}
			targets += n
			continue
		}
		for _, cs := range ps.order {
			if err := a.emit(ctx, m, ps.code, cs.cell, ps.win.Row(cs.slot), &rows); err != nil {
				return 0, 0, err
			}
		}
	}
	if err := a.flush(ctx, m, nF, &rows); err != nil {
		return 0, 0, err
	}
	return rows, targets, nil
}

// commit (step 4) stages the minute's count record and, on the request's
// last minute, its checkpoint, then the owned parts' state, and commits
// minute m in the sink. Once committed, the checkpoint's input position
// is reported durable.
func (a *closer) commit(ctx context.Context, m int64, mc *minuteCounts, req *CloseRequest, last func() bool) error {
	durable := int64(-1)
	if a.cpSink != nil {
		var cp []byte
		if req != nil && req.resume != nil && last() {
			var err error
			// The resume state after req: minutes through req.through are
			// committed once minute m is.
			if cp, err = req.resume.Checkpoint(req.through); err != nil {
				return err
			}
			a.cpClosed = req.through
			durable = req.resume.Pos()
		}
		a.cpSink.StageState(m, a.stateFor(m, mc, cp))
	}
	if a.stageParts != nil {
		if err := a.stageParts(m); err != nil {
			return err
		}
	}
	if err := a.sink.CloseMinute(ctx, m); err != nil {
		return err
	}
	if durable >= 0 && a.onDurable != nil {
		// The checkpoint is committed: a restart never reads the input
		// before its position again, so the source may let it go.
		a.onDurable(durable)
	}
	return nil
}

// account (step 5) tells OnClose and the stats about closed minute m.
func (a *closer) account(m int64, mc *minuteCounts, rows, targets int64, took time.Duration) {
	if a.onClose != nil {
		received := int64(0)
		if mc != nil {
			received = mc.received
		}
		a.onClose(m, rows, took, received)
	}
	a.stats.Rows.Add(rows)
	a.stats.Minutes.Add(1)
	a.stats.Closed.Store(m)
	a.stats.Targets.Store(targets)
	a.stats.CloseNanos.Add(int64(took))
}

// emit appends one row to the batch, handing full batches to the sink.
func (a *closer) emit(ctx context.Context, m int64, code byte, cell uint64, row []int32, rows *int64) error {
	a.out.Cells = append(a.out.Cells, cell)
	a.out.Products = append(a.out.Products, code)
	a.out.Features = append(a.out.Features, row...)
	if a.out.Len() >= a.batchRow {
		return a.flush(ctx, m, len(row), rows)
	}
	return nil
}

// foldMinutes makes a.acc target t's row for an aggregate whose rows do
// not add (a max of sums is not the sum of maxes): the minutes' values of
// the sparse sources reaching t, plus the panes' when t has a slot there
// too (both: dense[0]), summed per minute, then folded by the aggregate,
// newest first, each window taking the fold when it has its minutes (the
// windows nest). Only the minutes with a value are read (mask): a sparse
// source has few. Measured on 625 towns of 4 riders (the child of pipeline
// TestSmallTownsStayInTheBudget, 5.8M rows): a max run takes 1.26 s
// against count's 0.77 s; reading every age of max(W) instead, the whole
// test took 5.3 s, not 2.3.
func (a *closer) foldMinutes(m int64, t uint64, ps *productState, both bool, dense []cellSlot) {
	nA, nW := a.maxW, len(a.def.Windows)
	a.dk = slices.Grow(a.dk[:0], len(a.def.Rings)*nA)[:len(a.def.Rings)*nA]
	clear(a.dk)
	mask := ps.sparse.accumulateMinutes(t, a.dk, a.def.Rings)
	if both {
		mask |= ps.win.AddMinutes(dense[0].slot, m, a.dk)
	}
	for ki := range a.def.Rings {
		byAge := a.dk[ki*nA : ki*nA+nA]
		v, j := int32(0), 0
		for b := mask; b != 0; b &= b - 1 {
			age := bits.TrailingZeros64(b)
			for ; j < nW && a.def.Windows[a.byLen[j]] <= age; j++ {
				a.acc[ki*nW+a.byLen[j]] = v // the windows too short to hold age
			}
			if x := byAge[age]; x != 0 { // Fold(v, Map(0)) = v
				v = a.kind.Fold(v, a.kind.Value(x))
			}
		}
		for ; j < nW; j++ {
			a.acc[ki*nW+a.byLen[j]] = v
		}
	}
}

// emitMerged emits a product's rows when some of its sources are sparse:
// the panes' targets (ps.order, by cell) merged with the targets of the
// sparse sources' disks, a cell in both summing the two (foldMinutes when
// the aggregate's rows do not add). It returns the number of targets only
// sparse sources reach.
func (a *closer) emitMerged(ctx context.Context, m int64, ps *productState, rows *int64) (int64, error) {
	nF := a.def.NumFeatures()
	a.acc = slices.Grow(a.acc[:0], nF)[:nF]
	sp := &ps.sparse
	sp.start()
	dense := ps.order
	var only int64
	for {
		t, ok := sp.peek()
		for len(dense) > 0 && (!ok || dense[0].cell < t) {
			if err := a.emit(ctx, m, ps.code, dense[0].cell, ps.win.Row(dense[0].slot), rows); err != nil {
				return only, err
			}
			dense = dense[1:]
		}
		if !ok {
			break
		}
		both := len(dense) > 0 && dense[0].cell == t
		if a.kind.Additive {
			clear(a.acc)
			sp.accumulate(t, a.acc, a.def.Rings)
			if both {
				for i, v := range ps.win.Row(dense[0].slot) {
					a.acc[i] += v
				}
			}
		} else {
			a.foldMinutes(m, t, ps, both, dense)
		}
		if both {
			dense = dense[1:]
		} else {
			only++
			if a.owns != nil && !a.owns(t) {
				continue // another process emits it
			}
		}
		if err := a.emit(ctx, m, ps.code, t, a.acc, rows); err != nil {
			return only, err
		}
	}
	return only, nil
}

// perTargetBytes bounds what a target cell costs the state: a window slot
// (|K|*|W| int32 sums, two indices and Advance's scratch entry), a pane
// entry (|K| int16 values and a bit: windows.pane) in each of the
// max(W)+1 panes, its cell index entry (~20 bytes) and a smoothing scratch
// entry per worker (a value per ring, a stamp). At the default
// definition: 228 + 598 + 20 + 80 = ~926 bytes (1.05 KB with a 4-byte
// index per pane entry, 1.6 KB with int32 panes), of which the panes are
// most, a worst case only reached by a target with data in every minute
// of the window.
func perTargetBytes(cfg Config) int64 {
	nK, nF := len(cfg.Def.Rings), cfg.Def.NumFeatures()
	maxW := cfg.Def.MaxWindowValue()
	return int64(4*nF + 12 + (maxW+1)*2*nK + (maxW+1+7)/8 + 20 + cfg.Parallelism*(4*nK+4))
}

// minCompact is the smallest cell index worth renumbering: 2^17 cells hold
// ~2.6 MB of index and ~5 MB of smoothing scratch per worker
// (Config.CompactAt overrides it).
const minCompact = 1 << 17

// maybeCompact renumbers the cell index to the cells the windows still
// hold once it has grown by half of what the last renumbering kept (and by
// at least minCompact):
// cells that moved away (moving demand, a day's drift) are otherwise kept
// forever, ~20 bytes each in the index plus ~40 per worker in the
// smoothing scratch. It drops the disk cache, so the next close computes
// the disks of sources not in minute m, so a returning source computes its
// disk again (~30 us at k=20). Each index cell costs ~130 bytes (index,
// per-product slot lookup, smoothing scratch on 2 workers), so a metro
// with 4.5M live targets and moving hotspots held 1.75 GB more at 3x; at
// 1.5x the renumbering (~0.5 s there) runs every few minutes.
func (a *closer) maybeCompact(m int64) {
	if a.smoother.Cells.Len() < a.compactAt {
		return
	}
	var live []uint32
	for _, ps := range a.state {
		if ps != nil {
			live = ps.win.Live(live)
		}
	}
	remap := a.smoother.Compact(live, m)
	for _, ps := range a.state {
		if ps != nil {
			ps.win.Remap(remap)
		}
	}
	for i := range a.scratch {
		a.scratch[i] = &kring.Scratch{} // sized for the old index: let it go
	}
	n := a.smoother.Cells.Len()
	a.compactAt = n + max(a.minCompact, n/2)
	a.stats.Compactions.Add(1)
}

// expire drops the sparse sources no window after minute m needs.
func (a *closer) expire(m int64) {
	for _, ps := range a.state {
		if ps != nil {
			ps.sparse.expire(m + 2 - int64(a.maxW))
		}
	}
}

func (a *closer) flush(ctx context.Context, m int64, nF int, rows *int64) error {
	if a.out.Len() == 0 {
		return nil
	}
	if err := a.sink.Write(ctx, &a.out); err != nil {
		return err
	}
	*rows += int64(a.out.Len())
	a.out.Reset(m, nF)
	return nil
}

// restore rebuilds the windows of a resumed run from the count records of
// the minutes a window still needs (closed-maxW+2 .. closed), emitting
// nothing, and makes closed the last closed minute. It does what closing
// those minutes did, in three passes: locate every minute's sources
// (sequential: it fills the disk cache), smooth all minutes at once on every
// worker (minutes are independent until they meet the windows; one minute's
// products alone would keep one core busy), then slide the windows through
// them in order. Measured on a metro (31 minutes x 20,000 sources, 2 cores):
// 1.8 s, against 2.5 s closing minute after minute (RECOVERY.md).
func (a *closer) restore(ctx context.Context, closed int64, counts func(m int64) ([]byte, bool, error)) error {
	from := closed - int64(a.maxW) + 2
	jobs, err := a.restoreJobs(from, closed, counts)
	if err != nil {
		return err
	}
	next := make(chan *restoreJob, len(jobs))
	for _, j := range jobs {
		next <- j
	}
	close(next)
	var wg sync.WaitGroup
	for w := range min(a.workers, len(jobs)) {
		wg.Add(1)
		go func(sc *kring.Scratch) {
			defer wg.Done()
			for j := range next {
				a.smoother.Smooth(sc, j.src, j.cnts, &j.d)
			}
		}(a.scratch[w])
	}
	wg.Wait()
	a.restoreSlide(from, closed, jobs)
	for _, j := range jobs {
		j.d = kring.Sparse{} // free as we go: the panes hold their copies
	}
	a.smoother.Evict(closed)
	a.publishBytes()
	a.next, a.cpClosed = closed+1, closed
	return nil
}

// restoreJob is one (minute, product) of a restore: its sources, their
// counts, and (after smoothing) its disk sums.
type restoreJob struct {
	m    int64
	p    int
	src  []uint32
	cnts []int32
	d    kring.Sparse
}

// restoreJobs places the count records of minutes from..closed, in minute
// order, ready to smooth in parallel.
func (a *closer) restoreJobs(from, closed int64, counts func(m int64) ([]byte, bool, error)) ([]*restoreJob, error) {
	var jobs []*restoreJob
	for m := from; m <= closed; m++ {
		rec, ok, err := counts(m)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		mc := &minuteCounts{}
		if err := decodeCounts(rec, mc, m, a.products); err != nil {
			return nil, err
		}
		for p := range encode.MaxProducts {
			ix := mc.cells[p]
			if ix == nil || ix.Len() == 0 {
				continue
			}
			ps := a.state[p]
			if ps == nil {
				ps = &productState{code: byte(p), win: windows.New(a.def)}
				a.state[p] = ps
			}
			var cnts []int32
			var err error
			if a.srcCells, cnts, err = a.place(ps, ix, mc.counts[p], m, false, nil, a.srcCells[:0], nil); err != nil {
				return nil, err
			}
			src, err := a.smoother.Prepare(a.srcCells, m, nil)
			if err != nil {
				return nil, err
			}
			jobs = append(jobs, &restoreJob{m: m, p: p, src: src, cnts: cnts})
		}
	}
	return jobs, nil
}

// restoreSlide slides every product's windows over minutes from..closed
// with the smoothed jobs, emitting nothing.
func (a *closer) restoreSlide(from, closed int64, jobs []*restoreJob) {
	var empty kring.Sparse
	k := 0
	for m := from; m <= closed; m++ {
		var mine []*restoreJob
		for ; k < len(jobs) && jobs[k].m == m; k++ {
			mine = append(mine, jobs[k])
		}
		if len(mine) == 0 && a.allEmpty() {
			continue
		}
		for p := range encode.MaxProducts {
			var d *kring.Sparse
			for _, j := range mine {
				if j.p == p {
					d = &j.d
				}
			}
			ps := a.state[p]
			if ps == nil {
				if d == nil {
					continue
				}
				ps = &productState{code: byte(p), win: windows.New(a.def)}
				a.state[p] = ps
			}
			if d == nil {
				if ps.win.Empty() {
					continue
				}
				d = &empty
			}
			ps.win.Advance(m, d)
			ps.targets = ps.win.Collect(ps.targets[:0])
		}
	}
}

// publishBytes reports the state's size for the metrics.
func (a *closer) publishBytes() {
	a.stats.StateBytes.Store(a.stateBytes())
	n := a.smoother.Bytes() - a.smoother.Cells.Bytes()
	for _, ps := range a.state {
		if ps != nil {
			n += ps.sparse.bytes()
		}
	}
	a.stats.SourceBytes.Store(int64(n))
}

// stateBytes is the memory the close state holds: windows, sparse sources,
// the cell index and disk cache, the smoothing scratch.
func (a *closer) stateBytes() int64 {
	n := a.smoother.Bytes()
	for _, sc := range a.scratch {
		n += sc.Bytes()
	}
	for _, ps := range a.state {
		if ps != nil {
			n += ps.win.Bytes() + ps.sparse.bytes()
		}
	}
	return int64(n)
}

// place decides where minute m's sources of a product go: the panes'
// sources are appended to dc and dn (to be smoothed), the per-source ones
// are added to ps.sparse, and, when budget is set and Config.MaxMemory is,
// the sources the budget has no room for are shed first.
func (a *closer) place(ps *productState, ix *cellindex.Index, counts []int32, m int64, budget bool, used *int64, dc []uint64, dn []int32) ([]uint64, []int32, error) {
	a.denseIdx, a.sparseIdx = a.rule.split(ix, counts, m, &ps.sparse, a.denseIdx[:0], a.sparseIdx[:0])
	if budget && a.budget > 0 {
		if *used < 0 {
			*used = a.stateBytes()
		}
		if err := a.shed(ps, ix, counts, m, used); err != nil {
			return dc, dn, err
		}
	}
	for _, i := range a.denseIdx {
		if counts[i] > 0 {
			dc = append(dc, ix.Cell(uint32(i)))
			dn = append(dn, counts[i])
		}
	}
	a.rule.addSparse(ix, counts, m, &ps.sparse, a.sparseIdx)
	return dc, dn, nil
}

// shed applies the memory budget (Config.MaxMemory) to a minute's sources
// before they are placed. The state grows by new targets in the panes and
// by new disks of sparse sources: a cell the index does not hold yet costs
// up to perTarget (a window slot, a pane entry in every minute of the
// window, its index entry and scratch), a sparse source not held yet a
// disk of 8-byte keys. While the state plus the worst case of every source
// fits, nothing is checked; past that, each pane source's disk is counted
// against the index and cached if it fits (kring.Admit), and a source whose cost does not fit
// is shed: its count is set to 0 (so the checkpoint's count record and a
// restore agree) and its events are counted as over budget. Sources are
// taken in order (panes', then sparse, each in first-seen order), and the
// state at a close is a function of the input and the settings, so which
// are shed is too.
func (a *closer) shed(ps *productState, ix *cellindex.Index, counts []int32, m int64, used *int64) error {
	sparseCost := func(c uint64) int64 {
		if ps.sparse.disks[c] != nil {
			return 32 // a count in one more minute
		}
		return int64(feature.DiskCells(a.def.MaxRingValue())) * 8 // a disk of 8-byte keys
	}
	worst := int64(0)
	for _, i := range a.denseIdx {
		if !a.smoother.Cached(ix.Cell(uint32(i))) {
			worst += a.perSource
		}
	}
	for _, i := range a.sparseIdx {
		worst += sparseCost(ix.Cell(uint32(i)))
	}
	if *used+worst <= a.budget {
		return nil // the common case: well within the budget
	}
	drop := func(i int32) {
		a.stats.OverBudget.Add(int64(counts[i]))
		a.stats.ShedSources.Add(1)
		counts[i] = 0
	}
	for _, i := range a.denseIdx {
		ok, err := a.smoother.Admit(ix.Cell(uint32(i)), m, func(n int) bool {
			if cost := int64(n) * a.perTarget; *used+cost <= a.budget {
				*used += cost
				return true
			}
			return false
		})
		if err != nil {
			return err
		}
		if !ok {
			drop(i)
		}
	}
	for _, i := range a.sparseIdx {
		if cost := sparseCost(ix.Cell(uint32(i))); *used+cost <= a.budget {
			*used += cost
		} else {
			drop(i)
		}
	}
	return nil
}
