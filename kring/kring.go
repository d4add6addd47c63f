// Package kring smooths per-cell counts over H3 k-ring disks: for every target
// cell t and radius k in K, D[k](t) = sum of c(h) over source cells h with t in
// GridDisk(h, k).
//
// Cost model (see PERFORMANCE.md): one scatter per source over its largest
// disk, bucketed by ring so every disk member costs one add whatever |K| is:
// 1,261 adds per source for K up to 20. Cumulating the buckets per target
// turns them into the |K| disk sums. Disks are computed once per cell
// (h3.GridDiskDistances, ~30 us at k=20) and cached as dense cell indices, so
// the scatter runs over flat int32 arrays, never maps keyed by cell.
//
// The scatter follows the definition literally (from each source over its own
// disk), so it stays exact next to pentagons, where disks are smaller.
package kring

import (
	"fmt"
	"slices"
	"sync"

	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/internal/cellindex"
	"github.com/demandpipe/demandpipe/internal/h3batch"
)

// Config tunes the smoother.
type Config struct {
	// MaxCachedDisks bounds the disk cache. A k=20 disk is 1,261 cells,
	// 5 KB as uint32 indices; the default 100,000 disks (~500 MB) holds a
	// metro at resolution 8 (~20-50k active cells) with room to spare. Past
	// the bound, disks not used by the minute being closed are dropped and
	// recomputed when needed.
	MaxCachedDisks int
	// Workers computes new disks in parallel (h3 is pure). Default 1; the
	// engine sets it to its parallelism.
	Workers int
	// SparseBelow: a source whose region (an H3 parent about the size of a
	// disk) and the region's six neighbours hold fewer sources of its
	// product in the window is smoothed per source at each close instead
	// of into per-target panes (aggregate/sparse.go): memory per source
	// (~10 KB for its disk) instead of ~1 KB for each of its targets,
	// for CPU per (source, target) pair at each close. Rows are the same
	// either way. Default 32: 2,500 small towns of 4 riders, 4 towns a
	// region, peak at 111 MiB RSS (2.2 GB at the earlier count of 4 on the
	// region alone), and a city's fringe, whose neighbours are the city,
	// stays in the panes (bench end to end 1.02x, metro close 0.93x
	// against 4 on the region alone); 0 keeps every source in the panes
	// (-kring.sparse-below).
	SparseBelow int
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config { return Config{MaxCachedDisks: 100_000, Workers: 1, SparseBelow: 32} }

// Validate checks the fields.
func (c Config) Validate() error {
	if c.MaxCachedDisks < 1 {
		return fmt.Errorf("kring.max-cached-disks=%d: must be >= 1", c.MaxCachedDisks)
	}
	if c.SparseBelow < 0 || c.SparseBelow > 1<<20 {
		return fmt.Errorf("kring.sparse-below=%d: must be in 0..%d", c.SparseBelow, 1<<20)
	}
	if c.Workers < 1 || c.Workers > 1024 {
		return fmt.Errorf("kring workers=%d: must be in 1..1024", c.Workers)
	}
	return nil
}

type disk struct {
	members  []uint32 // cell indices, grouped by bucket in bucket order
	ends     []uint32 // ends[b]: end of bucket b in members
	lastUsed int64
}

// Smoother computes D for sets of (source cell, count). It owns the cell
// index shared with the windows stage.
type Smoother struct {
	cfg    Config
	nK     int
	sorted []int // unique radii ascending
	rank   []int // rank[ki] = position of K[ki] in sorted
	bucket []int // bucket[d] for distance d <= max radius
	maxK   int
	Cells  *cellindex.Index
	disks  []*disk
	cached int
	// scratch of Admit
	admitCells []uint64
	admitDists []int32
}

// New builds a smoother for def's radii.
func New(def feature.Definition, cfg Config) (*Smoother, error) {
	if err := def.Validate(); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Smoother{cfg: cfg, nK: len(def.Rings), Cells: cellindex.New(1 << 16)}
	s.sorted = slices.Clone(def.Rings)
	slices.Sort(s.sorted)
	s.rank = make([]int, len(def.Rings))
	for i, k := range def.Rings {
		s.rank[i] = slices.Index(s.sorted, k)
	}
	s.maxK = s.sorted[len(s.sorted)-1]
	s.bucket = make([]int, s.maxK+1)
	b := 0
	for d := 0; d <= s.maxK; d++ {
		for s.sorted[b] < d {
			b++
		}
		s.bucket[d] = b
	}
	return s, nil
}

// NumRings is |K|: the number of values per target in a Sparse.
func (s *Smoother) NumRings() int { return s.nK }

// Prepare maps source cells to indices (appending to idx) and makes sure each
// has its disk cached, computing new disks in parallel. minute stamps the
// disks as used (for eviction).
func (s *Smoother) Prepare(cells []uint64, minute int64, idx []uint32) ([]uint32, error) {
	var missing []uint32
	for _, c := range cells {
		i := s.Cells.Insert(c)
		idx = append(idx, i)
		if int(i) >= len(s.disks) {
			s.disks = append(s.disks, make([]*disk, int(i)+1-len(s.disks))...)
		}
		if d := s.disks[i]; d != nil {
			d.lastUsed = minute
		} else {
			s.disks[i] = &disk{lastUsed: minute} // placeholder: dedups missing
			missing = append(missing, i)
		}
	}
	if len(missing) == 0 {
		return idx, nil
	}
	type result struct {
		cells []uint64
		dists []int32
		err   error
	}
	res := make([]result, len(missing))
	w := min(s.cfg.Workers, len(missing))
	var wg sync.WaitGroup
	for g := range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := g; j < len(missing); j += w {
				r := &res[j]
				r.cells, r.dists, r.err = h3batch.Disk(s.Cells.Cell(missing[j]), s.maxK, nil, nil)
			}
		}()
	}
	wg.Wait()
	for j, i := range missing {
		r := &res[j]
		if r.err != nil {
			s.disks[i] = nil
			return idx, fmt.Errorf("kring: disk of cell %x: %w", s.Cells.Cell(i), r.err)
		}
		s.install(s.disks[i], r.cells, r.dists)
		s.cached++
	}
	if n := s.Cells.Len(); n > len(s.disks) {
		s.disks = append(s.disks, make([]*disk, n-len(s.disks))...)
	}
	return idx, nil
}

// install fills d with a disk's members (cells at dists), indexing them.
func (s *Smoother) install(d *disk, cells []uint64, dists []int32) {
	// Group members by bucket, in bucket order (a counting sort on
	// distance: h3 returns them ring by ring, but does not promise it).
	d.ends = make([]uint32, len(s.sorted))
	for _, dist := range dists {
		d.ends[s.bucket[dist]]++
	}
	pos := make([]uint32, len(s.sorted))
	var sum uint32
	for b, n := range d.ends {
		pos[b] = sum
		sum += n
		d.ends[b] = sum
	}
	d.members = make([]uint32, len(cells))
	for k, c := range cells {
		b := s.bucket[dists[k]]
		d.members[pos[b]] = s.Cells.Insert(c)
		pos[b]++
	}
}

// Evict drops cached disks not used at minute or later while the cache is
// over its bound.
func (s *Smoother) Evict(minute int64) {
	if s.cached <= s.cfg.MaxCachedDisks {
		return
	}
	for i, d := range s.disks {
		if d != nil && d.lastUsed < minute {
			s.disks[i] = nil
			s.cached--
		}
	}
}

// CachedDisks is the number of disks in the cache.
func (s *Smoother) CachedDisks() int { return s.cached }

// Bytes estimates the memory the smoother holds: its cell index and cached
// disks (a disk of radius k holds 3k(k+1)+1 members of 4 bytes, plus its
// bucket ends: ~5 KB at k=20).
func (s *Smoother) Bytes() int {
	members := feature.DiskCells(s.maxK)
	return s.Cells.Bytes() + cap(s.disks)*8 + s.cached*(members*4+len(s.sorted)*4+64)
}

// Sparse is D for one minute and product: the targets with a non-zero value
// and, per target, |K| values in the definition's K order.
type Sparse struct {
	Idx  []uint32
	Vals []int32 // len(Idx)*|K|
}

// Reset empties s, keeping capacity.
func (sp *Sparse) Reset() { sp.Idx = sp.Idx[:0]; sp.Vals = sp.Vals[:0] }

// Scratch is per-goroutine working memory for Smooth.
type Scratch struct {
	acc     []int32 // per cell index, one slot per bucket
	stamp   []uint32
	epoch   uint32
	touched []uint32
	cum     []int32
}

// Smooth computes D of the sources (indices from Prepare, counts > 0) into
// out. Safe to call from several goroutines with their own Scratch while
// nobody calls Prepare.
func (s *Smoother) Smooth(sc *Scratch, src []uint32, counts []int32, out *Sparse) {
	out.Reset()
	nR := len(s.sorted)
	n := s.Cells.Len()
	if len(sc.stamp) < n {
		sc.stamp = make([]uint32, n+n/4)
		sc.acc = make([]int32, len(sc.stamp)*nR)
		sc.epoch = 0
	}
	sc.epoch++
	if sc.epoch == 0 { // wrapped: stale stamps could match
		clear(sc.stamp)
		sc.epoch = 1
	}
	ep := sc.epoch
	acc, stamp, touched := sc.acc, sc.stamp, sc.touched[:0]
	for j, si := range src {
		c := counts[j]
		d := s.disks[si]
		start := uint32(0)
		for b, end := range d.ends {
			for _, t := range d.members[start:end] {
				if stamp[t] != ep {
					stamp[t] = ep
					touched = append(touched, t)
				}
				acc[int(t)*nR+b] += c
			}
			start = end
		}
	}
	sc.touched = touched
	if cap(sc.cum) < nR {
		sc.cum = make([]int32, nR)
	}
	cum := sc.cum[:nR]
	for _, t := range touched {
		row := acc[int(t)*nR : int(t)*nR+nR]
		var sum int32
		for b, v := range row {
			sum += v
			cum[b] = sum
			row[b] = 0
		}
		out.Idx = append(out.Idx, t)
		for _, r := range s.rank {
			out.Vals = append(out.Vals, cum[r])
		}
	}
}

// Compact renumbers the cell index to hold only the cells in live (indices
// into the current one; duplicates allowed) and those of the disks used at
// minute or later, which stay cached (the sources of the minute just
// closed: a steady city keeps its disks); other disks are dropped. It
// returns the mapping from old index to new index + 1 (0: dropped), for
// the holders of indices (the windows) to renumber theirs. Without it the
// index only grows: a stream whose cells move adds cells every minute
// forever. Scratches sized for the old index should be replaced.
func (s *Smoother) Compact(live []uint32, minute int64) []uint32 {
	old := s.Cells
	remap := make([]uint32, old.Len())
	s.Cells = cellindex.New(max(1<<10, len(live)))
	keep := func(i uint32) uint32 {
		if remap[i] == 0 {
			remap[i] = s.Cells.Insert(old.Cell(i)) + 1
		}
		return remap[i] - 1
	}
	for _, i := range live {
		keep(i)
	}
	disks := s.disks
	s.disks, s.cached = nil, 0
	for i, d := range disks {
		if d == nil || d.lastUsed < minute {
			continue
		}
		for j, t := range d.members {
			d.members[j] = keep(t)
		}
		ni := keep(uint32(i))
		if int(ni) >= len(s.disks) {
			s.disks = append(s.disks, make([]*disk, int(ni)+1-len(s.disks))...)
		}
		s.disks[ni] = d
		s.cached++
	}
	if n := s.Cells.Len(); n > len(s.disks) {
		s.disks = append(s.disks, make([]*disk, n-len(s.disks))...)
	}
	return remap
}

// Bytes is the memory a scratch holds: it grows with the cell index.
func (sc *Scratch) Bytes() int {
	return cap(sc.acc)*4 + cap(sc.stamp)*4 + cap(sc.touched)*4 + cap(sc.cum)*4
}

// Cached reports whether c's disk is cached (its members are indexed).
func (s *Smoother) Cached(c uint64) bool {
	i, ok := s.Cells.Lookup(c)
	return ok && int(i) < len(s.disks) && s.disks[i] != nil
}

// Admit caches c's disk if fits accepts the number of its cells the
// index does not hold yet (the targets smoothing c would add; 0 when c's
// disk is cached, and then c is admitted without asking). It reports
// whether c was admitted. For a memory budget: admitted disks are indexed
// at once, so sources that overlap are not charged twice, and Prepare
// finds them cached.
func (s *Smoother) Admit(c uint64, minute int64, fits func(newCells int) bool) (bool, error) {
	if s.Cached(c) {
		return true, nil
	}
	var err error
	s.admitCells, s.admitDists, err = h3batch.Disk(c, s.maxK, s.admitCells[:0], s.admitDists[:0])
	if err != nil {
		return false, fmt.Errorf("kring: disk of cell %x: %w", c, err)
	}
	n := 0
	for _, m := range s.admitCells {
		if _, ok := s.Cells.Lookup(m); !ok {
			n++
		}
	}
	if !fits(n) {
		return false, nil
	}
	i := s.Cells.Insert(c)
	d := &disk{lastUsed: minute}
	s.install(d, s.admitCells, s.admitDists)
	if n := s.Cells.Len(); n > len(s.disks) {
		s.disks = append(s.disks, make([]*disk, n-len(s.disks))...)
	}
	s.disks[i] = d
	s.cached++
	return true, nil
}
