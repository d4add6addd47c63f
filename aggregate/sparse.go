package aggregate

import (
	"cmp"
	"math/bits"
	"slices"
	"sync"
	"unsafe"

	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/internal/cellindex"
	"github.com/demandpipe/demandpipe/internal/h3batch"
)

// Sparse sources: the per-source path of the minute close.
//
// The windows (windows.Windows) keep per-target panes: ~256 bytes for every
// target cell with data, shared by all the sources whose disks cover it.
// That is cheap where sources are dense (a metro minute: 20,000 sources,
// ~55,000 targets) and ruinous where they are isolated: each isolated
// source brings its own 1,261 targets at k=20, and 10,000 riders spread
// over the globe held 14.5 GB. So a source whose region and the region's
// neighbours saw few sources in the window (kring.Config.SparseBelow) is
// kept as itself instead: its cell and count per minute, and its disk
// sorted by cell (8 bytes a member, ~10 KB at k=20), for the minutes a
// window still needs. At each close its
// window sums are taken over those minutes and its disk is merged, in cell
// order, with the panes' targets. Every count feature is a sum over
// sources, and for any other aggregate every minute's value is, which the
// merge then folds (closer.foldMinutes), so the path a source takes
// changes no row, only cost: memory per source
// instead of per target, and CPU per (source, target) pair at each close,
// which is why a region that fills up, or lies beside one, goes to the
// panes.

// sparseSet is one product's sources on the per-source path, and the
// region counts that decide the path.
type sparseSet struct {
	minutes []sparseMinute         // the minutes a window still needs, oldest first
	disks   map[uint64]*sparseDisk // by source cell, shared by its minutes
	regions regionWindow

	// per close: the distinct sources with their window sums
	srcs    []sparseSrc
	sums    []int32 // len(srcs) * |W|
	ages    []int32 // len(srcs) * max(W), when gathered by minute
	heap    []int32 // active sources (index into srcs), by current cell
	next    int     // srcs[next:] are not active yet
	entries []sparseEntry
	hi      uint64        // the top 12 bits every cell of the definition shares
	missing []*sparseDisk // disks to compute before the merge
}

type sparseMinute struct {
	minute int64
	cells  []uint64
	counts []int32
}

type sparseEntry struct {
	cell  uint64
	age   int32 // minutes before the minute being closed
	count int32
}

// sparseDisk is a source cell's disk as sorted keys: the cell's 52 bits of
// base cell and digits shifted up, its distance in the low 12 bits (the top
// 12 bits, mode and resolution, are the same for every cell of a
// definition). Sorting keys sorts cells.
type sparseDisk struct {
	keys []uint64
	refs int32 // minutes holding the cell
}

const distBits = 12

type sparseSrc struct {
	sums []int32     // per window: the source's counts in the window ending at the close
	ages []int32     // byMinute: per age (minutes before the close), its count
	mask uint64      // byMinute: bit a set when ages[a] > 0 (max(W) <= 60)
	disk *sparseDisk // its disk (computed after gather: see start)
	keys []uint64    // disk.keys, during the merge
	pos  int         // next key to merge
}

// empty reports whether no window holds a sparse source.
func (s *sparseSet) empty() bool { return len(s.minutes) == 0 }

// add records minute m's sparse sources (minutes arrive in order).
func (s *sparseSet) add(m int64, cells []uint64, counts []int32) {
	if len(cells) == 0 {
		return
	}
	if s.disks == nil {
		s.disks = map[uint64]*sparseDisk{}
	}
	for _, c := range cells {
		if d := s.disks[c]; d != nil {
			d.refs++
		} else {
			s.disks[c] = &sparseDisk{refs: 1}
		}
	}
	if n := len(s.minutes); n > 0 && s.minutes[n-1].minute == m {
		sm := &s.minutes[n-1]
		sm.cells = append(sm.cells, cells...)
		sm.counts = append(sm.counts, counts...)
		return
	}
	s.minutes = append(s.minutes, sparseMinute{minute: m, cells: slices.Clone(cells), counts: slices.Clone(counts)})
}

// expire drops the minutes before from, and their disks once no minute
// holds their cell.
func (s *sparseSet) expire(from int64) {
	i := 0
	for i < len(s.minutes) && s.minutes[i].minute < from {
		for _, c := range s.minutes[i].cells {
			d := s.disks[c]
			if d.refs--; d.refs == 0 {
				delete(s.disks, c)
			}
		}
		i++
	}
	if i > 0 {
		s.minutes = append(s.minutes[:0], s.minutes[i:]...)
	}
	s.regions.expire(from)
}

// gather builds the distinct sources of the windows ending at m with
// their window sums: sums[i*|W|+wi] = the source's counts in (m-W[wi], m];
// byMinute, also their counts by age (for an aggregate whose rows do not
// add: emitMerged). The disks still to compute are left in s.missing.
func (s *sparseSet) gather(m int64, w []int, byMinute bool) {
	s.missing = s.missing[:0]
	maxW := int64(slices.Max(w))
	s.entries = s.entries[:0]
	for _, sm := range s.minutes {
		if age := m - sm.minute; age >= 0 && age < maxW {
			for i, c := range sm.cells {
				s.entries = append(s.entries, sparseEntry{c, int32(age), sm.counts[i]})
			}
		}
	}
	slices.SortFunc(s.entries, func(x, y sparseEntry) int { return cmp.Compare(x.cell, y.cell) })
	nW, nA := len(w), 0
	if byMinute {
		nA = int(maxW)
	}
	s.srcs = s.srcs[:0]
	s.sums = s.sums[:0]
	s.ages = s.ages[:0]
	var cell uint64
	for _, e := range s.entries {
		if len(s.srcs) == 0 || e.cell != cell {
			cell = e.cell
			d := s.disks[cell]
			s.srcs = append(s.srcs, sparseSrc{disk: d})
			s.sums = append(s.sums, make([]int32, nW)...)
			s.ages = append(s.ages, make([]int32, nA)...)
			s.hi = cell &^ (1<<52 - 1)
			if d.keys == nil {
				d.keys = []uint64{cell} // marks it missing once; computeDisks fills it
				s.missing = append(s.missing, d)
			}
		}
		sums := s.sums[len(s.sums)-nW:]
		for wi, win := range w {
			if int(e.age) < win {
				sums[wi] += e.count
			}
		}
		if byMinute {
			s.ages[len(s.ages)-nA+int(e.age)] += e.count
			s.srcs[len(s.srcs)-1].mask |= 1 << e.age
		}
	}
	for i := range s.srcs { // s.sums and s.ages may have moved while they grew
		s.srcs[i].sums = s.sums[i*nW : i*nW+nW]
		s.srcs[i].ages = s.ages[i*nA : i*nA+nA]
	}
}

// bytes is the memory held between closes.
func (s *sparseSet) bytes() int {
	n := 0
	for _, sm := range s.minutes {
		n += cap(sm.cells)*8 + cap(sm.counts)*4
	}
	for _, d := range s.disks {
		n += cap(d.keys)*8 + 48
	}
	return n + cap(s.entries)*16 + cap(s.sums)*4 + cap(s.ages)*4 + cap(s.srcs)*int(unsafe.Sizeof(sparseSrc{})) + s.regions.bytes()
}

// computeDisks computes the disks marked missing (keys holding only the
// source cell), on workers goroutines.
func computeDisks(missing []*sparseDisk, maxK, workers int) error {
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for g := range min(workers, len(missing)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cells []uint64
			var dists []int32
			for j := g; j < len(missing); j += workers {
				d := missing[j]
				var err error
				cells, dists, err = h3batch.Disk(d.keys[0], maxK, cells[:0], dists[:0])
				if err != nil {
					d.keys = nil
					errs[g] = err
					return
				}
				keys := make([]uint64, len(cells))
				for i, c := range cells {
					keys[i] = c<<distBits | uint64(dists[i])
				}
				slices.Sort(keys)
				d.keys = keys
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// start prepares the merge of the sources' disks in cell order: sources
// join the heap when the merge reaches their first cell, so the heap holds
// only the sources whose disks overlap the current cell (the sparse path
// holds sources far apart: the heap stays small).
func (s *sparseSet) start() {
	for i := range s.srcs {
		s.srcs[i].keys, s.srcs[i].pos = s.srcs[i].disk.keys, 0
	}
	slices.SortFunc(s.srcs, func(x, y sparseSrc) int { return cmp.Compare(x.keys[0], y.keys[0]) })
	s.heap, s.next = s.heap[:0], 0
}

// peek returns the next target cell of the merge.
func (s *sparseSet) peek() (uint64, bool) {
	for s.next < len(s.srcs) && (len(s.heap) == 0 || s.srcs[s.next].keys[0]>>distBits|s.hi <= s.top()) {
		s.push(int32(s.next))
		s.next++
	}
	if len(s.heap) == 0 {
		return 0, false
	}
	return s.top(), true
}

func (s *sparseSet) top() uint64 { return s.key(s.heap[0])>>distBits | s.hi }

func (s *sparseSet) key(i int32) uint64 {
	src := &s.srcs[i]
	return src.keys[src.pos]
}

func (s *sparseSet) push(i int32) {
	s.heap = append(s.heap, i)
	h := s.heap
	j := len(h) - 1
	for j > 0 {
		p := (j - 1) / 2
		if s.key(h[p]) <= s.key(h[j]) {
			break
		}
		h[p], h[j] = h[j], h[p]
		j = p
	}
}

func (s *sparseSet) down() {
	h := s.heap
	j := 0
	for {
		l := 2*j + 1
		if l >= len(h) {
			return
		}
		c := l
		if r := l + 1; r < len(h) && s.key(h[r]) < s.key(h[l]) {
			c = r
		}
		if s.key(h[j]) <= s.key(h[c]) {
			return
		}
		h[j], h[c] = h[c], h[j]
		j = c
	}
}

// accumulate adds into row (k-major, |K|*|W|) every source's contribution
// to target t (from peek) and moves past it: a source at distance d adds
// its window sums to every ring k >= d.
func (s *sparseSet) accumulate(t uint64, row []int32, rings []int) {
	nW := len(row) / len(rings)
	for len(s.heap) > 0 && s.top() == t {
		src := &s.srcs[s.heap[0]]
		d := int(src.keys[src.pos] & (1<<distBits - 1))
		for ki, k := range rings {
			if d > k {
				continue
			}
			r := row[ki*nW : ki*nW+nW]
			for wi, v := range src.sums {
				r[wi] += v
			}
		}
		// pop, written out: a call per (source, target) pair measured
		// +2% on BenchmarkCloseSparse/sources=200/k=20/sparse-below=4.
		src.pos++
		if src.pos == len(src.keys) {
			last := len(s.heap) - 1
			s.heap[0] = s.heap[last]
			s.heap = s.heap[:last]
		}
		s.down()
	}
}

// accumulateMinutes is accumulate by minute, for an aggregate whose rows
// do not add: it adds into dk (|K| x maxW, by ring and age) every source's
// counts by age to every ring k >= its distance from t, and returns the
// ages it added to (a bit each). A sparse source has few minutes: only
// those are read.
func (s *sparseSet) accumulateMinutes(t uint64, dk []int32, rings []int) uint64 {
	nA := len(dk) / len(rings)
	var mask uint64
	for len(s.heap) > 0 && s.top() == t {
		src := &s.srcs[s.heap[0]]
		d := int(src.keys[src.pos] & (1<<distBits - 1))
		mask |= src.mask
		for ki, k := range rings {
			if d > k {
				continue
			}
			r := dk[ki*nA : ki*nA+nA]
			for b := src.mask; b != 0; b &= b - 1 {
				age := bits.TrailingZeros64(b)
				r[age] += src.ages[age]
			}
		}
		s.pop()
	}
	return mask
}

// pop moves the merge's top source past its current cell.
func (s *sparseSet) pop() {
	src := &s.srcs[s.heap[0]]
	src.pos++
	if src.pos == len(src.keys) {
		last := len(s.heap) - 1
		s.heap[0] = s.heap[last]
		s.heap = s.heap[:last]
	}
	s.down()
}

// regionWindow counts a product's sources (both paths) per region over the
// minutes of the window: the density that decides a new source's path.
type regionWindow struct {
	index   *cellindex.Index // region cell -> slot
	n       []int32          // per slot: sources in the window
	minutes []regionMinute
	live    int // slots with n > 0
}

type regionMinute struct {
	minute int64
	slots  []uint32
}

// expire forgets the minutes before from; the index is rebuilt when most
// of its regions are gone, so it follows the input instead of growing.
func (r *regionWindow) expire(from int64) {
	i := 0
	for i < len(r.minutes) && r.minutes[i].minute < from {
		for _, g := range r.minutes[i].slots {
			if r.n[g]--; r.n[g] == 0 {
				r.live--
			}
		}
		i++
	}
	if i == 0 {
		return
	}
	r.minutes = append(r.minutes[:0], r.minutes[i:]...)
	if r.index == nil || r.index.Len() < 1024 || r.index.Len() < 4*r.live {
		return
	}
	old, oldN := r.index, r.n
	r.index, r.n = cellindex.New(max(64, 2*r.live)), make([]int32, 0, 2*r.live)
	remap := make(map[uint32]uint32, r.live)
	for g, n := range oldN {
		if n > 0 {
			ng := r.index.Insert(old.Cell(uint32(g)))
			r.n = append(r.n, n)
			remap[uint32(g)] = ng
		}
	}
	for _, rm := range r.minutes {
		for k, g := range rm.slots {
			rm.slots[k] = remap[g]
		}
	}
}

func (r *regionWindow) bytes() int {
	n := cap(r.n) * 4
	if r.index != nil {
		n += r.index.Bytes()
	}
	for _, rm := range r.minutes {
		n += cap(rm.slots) * 4
	}
	return n
}

// sparseRule decides which of a minute's sources take the per-source path:
// those whose region (their H3 parent a few resolutions up, about the size
// of a disk) and its six neighbours saw fewer than below sources of the
// product in the window, this minute's included (around). Only cost
// depends on it (see above), so a cheap local count is enough.
type sparseRule struct {
	below    int
	pres     int // the regions' resolution
	maxW     int64
	regionOf []uint32
	near     []int32  // per region slot: sources of it and its neighbours (around)
	nbr      []uint64 // scratch: a region's disk of radius 1
	nbrD     []int32
	sc       []uint64 // scratch: the sparse sources of a split
	sn       []int32
}

func newSparseRule(below, res, maxK, maxW int) *sparseRule {
	disk := feature.DiskCells(maxK)
	d := 0
	for n := 1; n < disk; n *= 7 { // 7 children per resolution
		d++
	}
	return &sparseRule{below: below, pres: max(0, res-d), maxW: int64(maxW)}
}

// parent is H3's cellToParent on the index's bits: the resolution field
// (bits 52-55) becomes pres and the digits below it are set to 7 (unused).
func parent(c uint64, pres int) uint64 {
	c = c&^(0xf<<52) | uint64(pres)<<52
	return c | (1<<(3*(15-pres)) - 1)
}

// split sorts minute m's sources (indices into ix with a count > 0) into
// those for the panes (dense) and those kept per source (sparse), counting
// them in ss's regions; the caller adds the sparse ones to ss (addSparse)
// once the memory budget has had its say.
func (r *sparseRule) split(ix *cellindex.Index, counts []int32, m int64, ss *sparseSet, dense, sparse []int32) ([]int32, []int32) {
	n := ix.Len()
	if r.below <= 0 {
		for i := range n {
			if counts[i] > 0 {
				dense = append(dense, int32(i))
			}
		}
		return dense, sparse
	}
	rw := &ss.regions
	rw.expire(m + 1 - r.maxW)
	if rw.index == nil {
		rw.index = cellindex.New(64)
	}
	rm := regionMinute{minute: m, slots: make([]uint32, 0, n)}
	r.regionOf = r.regionOf[:0]
	for i := range n {
		if counts[i] == 0 {
			r.regionOf = append(r.regionOf, 0)
			continue
		}
		g := rw.index.Insert(parent(ix.Cell(uint32(i)), r.pres))
		if int(g) == len(rw.n) {
			rw.n = append(rw.n, 0)
		}
		if rw.n[g] == 0 {
			rw.live++
		}
		rw.n[g]++
		rm.slots = append(rm.slots, g)
		r.regionOf = append(r.regionOf, g)
	}
	rw.minutes = append(rw.minutes, rm)
	r.around(rw)
	for i := range n {
		if counts[i] == 0 {
			continue
		}
		if int(r.near[r.regionOf[i]]) < r.below {
			sparse = append(sparse, int32(i))
		} else {
			dense = append(dense, int32(i))
		}
	}
	return dense, sparse
}

// around sets r.near[g], for every region g of this minute's sources, to
// the sources in the window of g and its six neighbours. A region at the
// edge of a city has the city beside it: its sources' targets are mostly
// the panes' already, so they go to the panes (per-source smoothing of a
// city's fringe cost the generated city's close ~15% with a count of the
// region alone). A region of small towns has no such neighbour, and its
// sources' targets are theirs alone: per source they cost ~10 KB each,
// per target ~1 KB (1.6 KB then) for each of ~1,261 targets (2,500 towns
// of 4 riders, 4 towns a region: 2.2 GB peak RSS at a count of 4 on the
// region alone, 111 MiB on the per-source path: TestSmallTownsStayInTheBudget).
func (r *sparseRule) around(rw *regionWindow) {
	r.near = slices.Grow(r.near[:0], len(rw.n))[:len(rw.n)]
	for i := range r.near {
		r.near[i] = -1
	}
	for _, g := range rw.minutes[len(rw.minutes)-1].slots {
		if r.near[g] >= 0 {
			continue
		}
		var err error
		r.nbr, r.nbrD, err = h3batch.Disk(rw.index.Cell(g), 1, r.nbr[:0], r.nbrD[:0])
		if err != nil { // not a valid cell: count the region alone
			r.near[g] = rw.n[g]
			continue
		}
		sum := int32(0)
		for _, c := range r.nbr {
			if h, ok := rw.index.Lookup(c); ok {
				sum += rw.n[h]
			}
		}
		r.near[g] = sum
	}
}

// addSparse adds the sparse sources of minute m that still count to ss.
func (r *sparseRule) addSparse(ix *cellindex.Index, counts []int32, m int64, ss *sparseSet, sparse []int32) {
	r.sc, r.sn = r.sc[:0], r.sn[:0]
	for _, i := range sparse {
		if counts[i] > 0 {
			r.sc = append(r.sc, ix.Cell(uint32(i)))
			r.sn = append(r.sn, counts[i])
		}
	}
	ss.add(m, r.sc, r.sn)
}
