// Package windows turns per-minute smoothed values into sliding windows:
// F[k][w](t, m) = sum of D[k](t, i) over minutes i in (m-w, m] for the
// count aggregate, and the aggregate's Fold over those minutes for any
// other (feature.Aggregate; kinds.go).
//
// Windows are panes, not copies: the last max(W)+1 minutes of D are kept, and
// each window's running sum adds the newest minute and subtracts the minute
// that leaves it. Per minute that is 2*|W|*|K| adds per target with data,
// against one copy of every element into every window it belongs to
// (Flink's sliding windows: 62 copies per element for W = 1..32 by doubling).
//
// State is per target cell index in flat arrays: a slot of |K|*|W| int32
// running sums in k-major order, which is already the row's feature order.
package windows

import (
	"math"
	"math/bits"
	"slices"

	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/kring"
)

// pane is one minute's smoothed values, kept until the longest window
// lets it go: which slots have values (a bit per slot) and |K| values each,
// as int16, in slot order.
// The panes are most of the close state (33 minutes of every target with
// data at the default definition), and a value is a count of sources
// within k rings in one minute: int32 panes made the bound on a target's
// state ~1.6 KB, int16 ~1.05 KB (aggregate.perTargetBytes; measured in
// aggregate's BenchmarkCloseMinute at -benchtime 40x, disk cache
// included: 4,536 -> 3,941 bytes a target, the close +1.2% (median of 4,
// alternately)). A value past math.MaxInt16 (a minute of a metro's k=20
// disk can hold more than 32,767 requests) is stored as overflowMark and
// kept in over, by position, in order.
//
// A pane names its targets by slot, a bit each, not by a 4-byte cell index
// per entry: 33 panes of a target cost 33 bits instead of 132 bytes, which
// brought the state a target holds from ~1.09 KB to under 1 KB (issue 21;
// BenchmarkCloseMinute's target-B/target). A slot freed by Collect has no
// entry in any pane still to be subtracted (its sums are zero: every pane
// of the longest window is without it), so a slot given to another
// target is never read through an old pane, and renumbering the cell index
// (Remap) does not touch the panes.
type pane struct {
	minute int64
	bits   []uint64 // bit s: slot s has values here
	vals   []int16  // |K| per set bit, in slot order
	over   []overflow
	// rank, when ranked: per word of bits, the set bits before it
	// (AddMinutes' lookups; built on the first since set)
	rank   []int32
	ranked bool
}

type overflow struct {
	pos int32 // index into vals
	v   int32
}

// overflowMark stands in vals for a value kept in over.
const overflowMark = math.MinInt16

// Windows holds the sliding sums of one product.
type Windows struct {
	nK, nW, nF int
	w          []int
	probe      int // feature index of (max K, max W): zero iff the slot is all zero
	panes      []pane
	slotOf     []int32 // per cell index: slot+1, 0 = none
	f          []int32 // slots * nF
	slotCell   []uint32
	free       []int32
	slots      []int32 // Advance's scratch: the slot of each target of d
	rank       []int32 // set's scratch: set bits before each word
	active     int
	last       int64 // last minute advanced
	started    bool
	// slide is the aggregate's fast slide (kinds.go); nil: refold, which
	// folds every window again from the panes with fold.
	slide func(w *Windows, m int64, d *kring.Sparse)
	fold  func(acc, v int32) int32
	mapv  func(v int32) int32 // nil: the identity
	// refold's: per age (minutes before the newest), the shortest window
	// holding it; the windows by length
	bucket []int
	byLen  []int
}

// New returns empty windows for def.
func New(def feature.Definition) *Windows {
	maxW := def.MaxWindowValue()
	w := &Windows{
		nK: len(def.Rings), nW: len(def.Windows), nF: def.NumFeatures(),
		w:     slices.Clone(def.Windows),
		panes: make([]pane, maxW+1),
	}
	// Counts are non-negative and every aggregate's fold is monotone and
	// zero only on zeros (feature.Aggregate), so every feature is
	// monotone in k and in w: the (max K, max W) feature is zero only if
	// the whole row is.
	w.probe = def.Index(slices.Index(def.Rings, def.MaxRingValue()), slices.Index(def.Windows, maxW))
	for i := range w.panes {
		w.panes[i].minute = -1 << 62
	}
	kind := def.Kind()
	w.slide, w.fold, w.mapv = slides[kind.Name], kind.Fold, kind.Map
	w.byLen = def.WindowsByLength()
	w.bucket = make([]int, maxW)
	for age := range w.bucket {
		w.bucket[age] = w.byLen[slices.IndexFunc(w.byLen, func(wi int) bool { return w.w[wi] > age })]
	}
	return w
}

// Advance adds minute m's values d (targets and |K| values each) and slides
// every window to end at m. Minutes must advance by one, except that after
// Empty() reports true the next minute may be any later one.
func (w *Windows) Advance(m int64, d *kring.Sparse) {
	if w.slide != nil {
		w.slide(w, m, d)
	} else {
		w.refold(m, d)
	}
	w.last, w.started = m, true
}

// set makes p minute m's values d, whose targets are in slots (of
// nSlots), |K| values each; rank is scratch.
func (p *pane) set(m int64, d *kring.Sparse, slots []int32, nSlots, nK int, rank *[]int32) {
	p.minute, p.ranked = m, false
	words := (nSlots + 63) >> 6
	p.bits = slices.Grow(p.bits[:0], words)[:words]
	clear(p.bits)
	for _, s := range slots {
		p.bits[s>>6] |= 1 << (s & 63)
	}
	r := slices.Grow((*rank)[:0], words)[:words]
	n := int32(0)
	for i, b := range p.bits {
		r[i] = n
		n += int32(bits.OnesCount64(b))
	}
	*rank = r
	p.vals = slices.Grow(p.vals[:0], len(d.Vals))[:len(d.Vals)]
	p.over = p.over[:0]
	for j, s := range slots {
		at := int(r[s>>6]+int32(bits.OnesCount64(p.bits[s>>6]&(1<<(s&63)-1)))) * nK
		for ki, v := range d.Vals[j*nK : j*nK+nK] {
			if uint32(v-overflowMark-1) > 2*math.MaxInt16 { // outside (overflowMark, MaxInt16]: one compare
				p.vals[at+ki] = overflowMark
				p.over = append(p.over, overflow{pos: int32(at + ki), v: v})
				continue
			}
			p.vals[at+ki] = int16(v)
		}
	}
	if len(p.over) > 1 { // placed by slot, not in order
		slices.SortFunc(p.over, func(a, b overflow) int { return int(a.pos - b.pos) })
	}
}

func (w *Windows) slot(t uint32) int {
	if int(t) >= len(w.slotOf) {
		w.slotOf = append(w.slotOf, make([]int32, int(t)+1-len(w.slotOf)+len(w.slotOf)/2)...)
	}
	if s := w.slotOf[t]; s != 0 {
		return int(s - 1)
	}
	var s int
	if n := len(w.free); n > 0 {
		s = int(w.free[n-1])
		w.free = w.free[:n-1]
	} else {
		s = len(w.slotCell)
		w.slotCell = append(w.slotCell, 0)
		w.f = append(w.f, make([]int32, w.nF)...)
	}
	w.slotCell[s] = t
	w.slotOf[t] = int32(s + 1)
	w.active++
	return s
}

// Collect frees the slots whose sums all went to zero and appends the
// remaining (cell index, slot) pairs to dst, to be read with Row.
func (w *Windows) Collect(dst []Target) []Target {
	for s, t := range w.slotCell {
		if w.slotOf[t] != int32(s+1) {
			continue // free slot
		}
		if w.f[s*w.nF+w.probe] == 0 {
			w.slotOf[t] = 0
			w.free = append(w.free, int32(s))
			w.active--
			continue
		}
		dst = append(dst, Target{Cell: t, Slot: int32(s)})
	}
	return dst
}

// Target is an active target: a cell index and its slot.
type Target struct {
	Cell uint32
	Slot int32
}

// Row returns the feature sums of a slot (k-major), aliasing the state.
func (w *Windows) Row(slot int32) []int32 { return w.f[int(slot)*w.nF : int(slot)*w.nF+w.nF] }

// Empty reports whether no window holds any data, so that minutes can be
// skipped without changing any sum. Valid after Collect. Why active == 0 is
// enough: sums are non-negative, so all-zero sums at minute m mean every pane
// in (m-max(W), m] is empty, and panes at or before m-max(W) are never
// subtracted again.
func (w *Windows) Empty() bool { return w.active == 0 }

// Active is the number of targets with data.
func (w *Windows) Active() int { return w.active }

// Bytes is the memory held.
func (w *Windows) Bytes() int {
	n := cap(w.f)*4 + cap(w.slotOf)*4 + cap(w.slotCell)*4 + cap(w.slots)*4 + cap(w.rank)*4
	for i := range w.panes {
		n += cap(w.panes[i].bits)*8 + cap(w.panes[i].vals)*2 + cap(w.panes[i].over)*8 + cap(w.panes[i].rank)*4
	}
	return n
}

// Live appends every cell index the windows hold to dst: the active
// slots' (the panes name slots, not cells).
func (w *Windows) Live(dst []uint32) []uint32 {
	for s, t := range w.slotCell {
		if int(t) < len(w.slotOf) && w.slotOf[t] == int32(s+1) {
			dst = append(dst, t)
		}
	}
	return dst
}

// Remap renumbers the cell indices held after the index was compacted:
// remap[old] is the new index + 1. Every index the windows hold must be
// mapped (they were all in Live).
func (w *Windows) Remap(remap []uint32) {
	n := 0
	for _, v := range remap {
		n = max(n, int(v))
	}
	slotOf := make([]int32, n)
	for s, t := range w.slotCell {
		if int(t) < len(w.slotOf) && w.slotOf[t] == int32(s+1) {
			nt := remap[t] - 1
			w.slotCell[s] = nt
			slotOf[nt] = int32(s + 1)
		} else {
			w.slotCell[s] = 0 // a free slot: its cell is never read
		}
	}
	w.slotOf = slotOf
}

// AddMinutes adds slot's values of every minute the longest window holds
// at m into dst, by ring and age (minutes before m): dst[ki*maxW+age] +=
// D[ki] of minute m-age, maxW the longest window. The close merges them
// with isolated sources' minutes where an aggregate's rows do not add
// (feature.Aggregate.Additive). It returns the ages it added to, a bit
// each (max(W) <= 60).
func (w *Windows) AddMinutes(slot int32, m int64, dst []int32) uint64 {
	var mask uint64
	maxW, s := len(w.panes)-1, int(slot)
	wd, bit := s>>6, uint64(1)<<(s&63)
	for age := range maxW {
		i := m - int64(age)
		q := &w.panes[w.at(i)]
		if q.minute != i || wd >= len(q.bits) || q.bits[wd]&bit == 0 {
			continue
		}
		at := int(q.rankOf(wd)+int32(bits.OnesCount64(q.bits[wd]&(bit-1)))) * w.nK
		for ki, v := range q.vals[at : at+w.nK] {
			x := int32(v)
			if v == overflowMark {
				j, _ := slices.BinarySearchFunc(q.over, int32(at+ki), func(o overflow, pos int32) int { return int(o.pos - pos) })
				x = q.over[j].v
			}
			dst[ki*maxW+age] += x
		}
		mask |= 1 << age
	}
	return mask
}

// rankOf is the number of set bits in the words before wd.
func (p *pane) rankOf(wd int) int32 {
	if !p.ranked {
		p.rank = slices.Grow(p.rank[:0], len(p.bits))[:len(p.bits)]
		n := int32(0)
		for i, b := range p.bits {
			p.rank[i] = n
			n += int32(bits.OnesCount64(b))
		}
		p.ranked = true
	}
	return p.rank[wd]
}
