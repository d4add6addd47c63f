package windows

import (
	"math/bits"

	"github.com/demandpipe/demandpipe/kring"
)

// slides are the aggregates' fast slides (feature.Aggregate), by name. An
// aggregate without one slides by refold, which is right for any Fold.
var slides = map[string]func(w *Windows, m int64, d *kring.Sparse){
	"count": (*Windows).advanceSum,
}

// refold is the slide of an aggregate without a fast one: it adds minute
// m's pane, then folds every window of every target again from the panes
// of the longest window. The windows all end at m, so they nest: a value
// is folded once, into the shortest window holding its minute (bucket),
// and each window then takes in the next shorter one (Fold is associative
// and commutative). Per target that is one Fold per value in the 33 panes
// and |K|*(|W|-1) to nest, against 63 per k folding each value into every
// window holding it: BenchmarkAdvance (30,000 targets with data in every
// minute) went from 5.0x to 3.1x advanceSum's time for max (medians of 4).
func (w *Windows) refold(m int64, d *kring.Sparse) {
	nK, nW, nF := w.nK, w.nW, w.nF
	slots := w.slots[:0]
	for _, t := range d.Idx {
		slots = append(slots, int32(w.slot(t)))
	}
	w.slots = slots
	w.panes[w.at(m)].set(m, d, slots, len(w.slotCell), nK, &w.rank)
	clear(w.f) // a free slot's row is zero too (Collect)
	fold, mp := w.fold, w.mapv
	for age, wi := range w.bucket {
		i := m - int64(age)
		q := &w.panes[w.at(i)]
		if q.minute != i {
			continue
		}
		over, vals := q.over, q.vals
		for wd, word := range q.bits {
			for word != 0 {
				s := wd<<6 + bits.TrailingZeros64(word)
				word &= word - 1
				row := w.f[s*nF+wi : s*nF+nF]
				for ki, v16 := range vals[:nK] {
					v := int32(v16)
					if v16 == overflowMark {
						v, over = over[0].v, over[1:] // positions come in order
					}
					if v != 0 { // Fold(x, Map(0)) = x
						if mp != nil {
							v = mp(v)
						}
						row[ki*nW] = fold(row[ki*nW], v)
					}
				}
				vals = vals[nK:]
			}
		}
	}
	for s := range len(w.slotCell) { // a free slot's zeros stay zero
		for ki := range nK {
			r := w.f[s*nF+ki*nW : s*nF+ki*nW+nW]
			for j := 1; j < len(w.byLen); j++ {
				r[w.byLen[j]] = fold(r[w.byLen[j]], r[w.byLen[j-1]])
			}
		}
	}
}

// at is the index of minute i's pane.
func (w *Windows) at(i int64) int {
	n := int64(len(w.panes))
	return int((i%n + n) % n)
}
