// Package windows turns per-minute smoothed values into sliding-window sums:
// F[k][w](t, m) = sum of D[k](t, i) over minutes i in (m-w, m].
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
	"slices"

	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/kring"
)

type pane struct {
	minute int64
	d      kring.Sparse
}

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
	active     int
	last       int64 // last minute advanced
	started    bool
}

// New returns empty windows for def.
func New(def feature.Definition) *Windows {
	maxW := def.MaxWindowValue()
	w := &Windows{
		nK: len(def.Rings), nW: len(def.Windows), nF: def.NumFeatures(),
		w:     slices.Clone(def.Windows),
		panes: make([]pane, maxW+1),
	}
	// Counts are non-negative, so every sum is monotone in k and in w: the
	// (max K, max W) feature is zero only if the whole row is.
	w.probe = def.Index(slices.Index(def.Rings, def.MaxRingValue()), slices.Index(def.Windows, maxW))
	for i := range w.panes {
		w.panes[i].minute = -1 << 62
	}
	return w
}

// Advance adds minute m's values d (targets and |K| values each) and slides
// every window to end at m. Minutes must advance by one, except that after
// Empty() reports true the next minute may be any later one.
func (w *Windows) Advance(m int64, d *kring.Sparse) {
	p := &w.panes[int(m%int64(len(w.panes)))]
	p.minute = m
	p.d.Idx = append(p.d.Idx[:0], d.Idx...)
	p.d.Vals = append(p.d.Vals[:0], d.Vals...)
	nK, nW, nF := w.nK, w.nW, w.nF
	for j, t := range d.Idx {
		s := w.slot(t)
		row := w.f[s*nF : s*nF+nF]
		vals := d.Vals[j*nK : j*nK+nK]
		for ki, v := range vals {
			if v == 0 {
				continue
			}
			r := row[ki*nW : ki*nW+nW]
			for wi := range r {
				r[wi] += v
			}
		}
	}
	for wi, win := range w.w {
		leaving := m - int64(win)
		q := &w.panes[int(((leaving%int64(len(w.panes)))+int64(len(w.panes)))%int64(len(w.panes)))]
		if q.minute != leaving {
			continue
		}
		for j, t := range q.d.Idx {
			s := int(w.slotOf[t] - 1)
			row := w.f[s*nF : s*nF+nF]
			for ki, v := range q.d.Vals[j*nK : j*nK+nK] {
				row[ki*nW+wi] -= v
			}
		}
	}
	w.last, w.started = m, true
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
	n := cap(w.f)*4 + cap(w.slotOf)*4 + cap(w.slotCell)*4
	for i := range w.panes {
		n += cap(w.panes[i].d.Idx)*4 + cap(w.panes[i].d.Vals)*4
	}
	return n
}

// Live appends every cell index the windows hold (active slots and the
// panes' targets; duplicates included) to dst.
func (w *Windows) Live(dst []uint32) []uint32 {
	for s, t := range w.slotCell {
		if int(t) < len(w.slotOf) && w.slotOf[t] == int32(s+1) {
			dst = append(dst, t)
		}
	}
	for i := range w.panes {
		dst = append(dst, w.panes[i].d.Idx...)
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
	for i := range w.panes {
		for j, t := range w.panes[i].d.Idx {
			w.panes[i].d.Idx[j] = remap[t] - 1
		}
	}
}
