package windows

import (
	"math/bits"

	"github.com/demandpipe/demandpipe/kring"
)

// advanceSum is the count aggregate's slide: each window's running sum
// adds the newest minute and subtracts the minute that leaves it, 2*|W|
// adds per value, where folding the windows again (refold) reads every
// pane of the longest window each minute.
func (w *Windows) advanceSum(m int64, d *kring.Sparse) {
	nK, nW, nF := w.nK, w.nW, w.nF
	slots := w.slots[:0]
	for j, t := range d.Idx {
		s := w.slot(t)
		slots = append(slots, int32(s))
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
	w.slots = slots
	w.panes[int(m%int64(len(w.panes)))].set(m, d, slots, len(w.slotCell), nK, &w.rank)
	for wi, win := range w.w {
		leaving := m - int64(win)
		q := &w.panes[int(((leaving%int64(len(w.panes)))+int64(len(w.panes)))%int64(len(w.panes)))]
		if q.minute != leaving {
			continue
		}
		over := q.over
		vals := q.vals
		for wd, word := range q.bits {
			for word != 0 {
				s := wd<<6 + bits.TrailingZeros64(word)
				word &= word - 1
				row := w.f[s*nF : s*nF+nF]
				for ki, v := range vals[:nK] {
					if v == overflowMark {
						row[ki*nW+wi] -= over[0].v // positions come in order
						over = over[1:]
						continue
					}
					row[ki*nW+wi] -= int32(v)
				}
				vals = vals[nK:]
			}
		}
	}
}
