package windows

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/kring"
)

// eachSlide runs test for every aggregate with its own slide, and for
// every aggregate with a fast slide also through refold, the slide any
// new aggregate gets: both must equal Fold over the kept history.
func eachSlide(t *testing.T, test func(t *testing.T, def feature.Definition, refold bool)) {
	for _, a := range feature.Aggregates() {
		t.Run(a.Name, func(t *testing.T) { test(t, feature.Definition{Aggregate: a.Name}, false) })
		if slides[a.Name] != nil {
			t.Run(a.Name+"/refold", func(t *testing.T) { test(t, feature.Definition{Aggregate: a.Name}, true) })
		}
	}
}

func newWindows(def feature.Definition, refold bool) *Windows {
	w := New(def)
	if refold {
		w.slide = nil
	}
	return w
}

// TestMatchesNaiveFolds slides random sparse minutes (with gaps) through
// the windows and compares every row with the aggregate's Fold over the
// kept history; every 37 minutes the cell indices are renumbered (Live,
// Remap), as after the cell index is compacted.
func TestMatchesNaiveFolds(t *testing.T) {
	eachSlide(t, testMatchesNaive)
}

func testMatchesNaive(t *testing.T, def feature.Definition, refold bool) {
	def.Resolution, def.Rings, def.Windows = 8, []int{2, 0}, []int{3, 1, 5}
	kind := def.Kind()
	rng := rand.New(rand.NewPCG(9, 9))
	w := newWindows(def, refold)
	hist := map[int64]map[uint32][]int32{}
	var d kring.Sparse
	idx := make([]uint32, 20) // target -> its current cell index
	for i := range idx {
		idx[i] = uint32(i)
	}
	for m := int64(100); m < 400; m++ {
		if m%37 == 0 {
			perm := rng.Perm(40)
			remap := make([]uint32, 40)
			for tc, i := range idx {
				remap[i] = uint32(perm[tc]) + 1
				idx[tc] = uint32(perm[tc])
			}
			for _, i := range w.Live(nil) {
				if remap[i] == 0 {
					t.Fatalf("minute %d: live index %d is no target's", m, i)
				}
			}
			w.Remap(remap)
		}
		d.Reset()
		hist[m] = map[uint32][]int32{}
		if rng.IntN(4) != 0 {
			for t := range uint32(20) {
				if rng.IntN(3) == 0 {
					// Rings {2, 0}: the radius-2 disk holds the radius-0 one,
					// so its sum is at least as large (as real data is).
					v := []int32{0, int32(rng.IntN(4))}
					v[0] = v[1] + int32(1+rng.IntN(3))
					d.Idx = append(d.Idx, idx[t])
					d.Vals = append(d.Vals, v...)
					hist[m][t] = v
				}
			}
		}
		w.Advance(m, &d)
		got := map[uint32][]int32{}
		for _, tg := range w.Collect(nil) {
			got[tg.Cell] = append([]int32(nil), w.Row(tg.Slot)...)
			tc := uint32(slices.Index(idx, tg.Cell))
			checkMinutes(t, w, tg.Slot, m, 5, func(i int64) []int32 { return hist[i][tc] })
		}
		for tc := range uint32(20) {
			want := make([]int32, def.NumFeatures())
			for wi, win := range def.Windows {
				for i := m - int64(win) + 1; i <= m; i++ {
					if v := hist[i][tc]; v != nil {
						for ki := range def.Rings {
							want[def.Index(ki, wi)] = kind.Fold(want[def.Index(ki, wi)], kind.Value(v[ki]))
						}
					}
				}
			}
			zero := fmt.Sprint(want) == fmt.Sprint(make([]int32, len(want)))
			if g, ok := got[idx[tc]]; ok != !zero || (ok && fmt.Sprint(g) != fmt.Sprint(want)) {
				t.Fatalf("minute %d target %d: got %v (present %v) want %v", m, tc, g, ok, want)
			}
		}
	}
}

// BenchmarkAdvance: every target has data in every minute, the worst case
// for every slide (refold reads all 33 panes of each).
func BenchmarkAdvance(b *testing.B) {
	for _, a := range feature.Aggregates() {
		def := feature.Default()
		def.Aggregate = a.Name
		for _, targets := range []int{30_000} {
			b.Run(fmt.Sprintf("aggregate=%s/targets=%d", a.Name, targets), func(b *testing.B) {
				benchAdvance(b, New(def), targets)
			})
		}
	}
}

func benchAdvance(b *testing.B, w *Windows, targets int) {
	var d kring.Sparse
	for t := range uint32(targets) {
		d.Idx = append(d.Idx, t)
		for k := range 9 {
			d.Vals = append(d.Vals, int32(k+1))
		}
	}
	m := int64(0)
	var tg []Target
	b.ReportAllocs()
	for b.Loop() {
		w.Advance(m, &d)
		tg = w.Collect(tg[:0])
		m++
	}
}

// TestLargeValuesKeepTheirSums: panes keep values as int16 and those past
// it beside them (a metro minute's k=20 disk can count more than 32,767):
// folds of values around and far past the bound equal the naive folds,
// also across a renumbering.
func TestLargeValuesKeepTheirSums(t *testing.T) {
	eachSlide(t, testLargeValues)
}

func testLargeValues(t *testing.T, def feature.Definition, refold bool) {
	def.Resolution, def.Rings, def.Windows = 8, []int{0, 3}, []int{1, 4}
	kind := def.Kind()
	w := newWindows(def, refold)
	rng := rand.New(rand.NewPCG(21, 16))
	vals := []int32{0, 1, 32766, 32767, 32768, 40_000, 1 << 20, 1 << 28}
	hist := map[int64][][2]int32{} // per minute, per target 0..3
	var d kring.Sparse
	for m := int64(10); m < 40; m++ {
		d.Reset()
		hist[m] = make([][2]int32, 4)
		for tg := range uint32(4) {
			a := vals[rng.IntN(len(vals))]
			b := vals[rng.IntN(len(vals))]
			a, b = min(a, b), max(a, b) // the larger ring holds more
			if b == 0 {
				continue
			}
			d.Idx = append(d.Idx, tg)
			d.Vals = append(d.Vals, a, b)
			hist[m][tg] = [2]int32{a, b}
		}
		w.Advance(m, &d)
		if m == 25 {
			w.Remap([]uint32{1, 2, 3, 4}) // the identity, through Live's indices
		}
		got := map[uint32][]int32{}
		for _, tg := range w.Collect(nil) {
			got[tg.Cell] = append([]int32(nil), w.Row(tg.Slot)...)
			checkMinutes(t, w, tg.Slot, m, 4, func(i int64) []int32 {
				if h, ok := hist[i]; ok {
					return h[tg.Cell][:]
				}
				return nil
			})
		}
		for tg := range uint32(4) {
			want := make([]int32, 4)
			for ki := range 2 {
				for wi, win := range def.Windows {
					for i := m - int64(win) + 1; i <= m; i++ {
						if h, ok := hist[i]; ok {
							want[ki*2+wi] = kind.Fold(want[ki*2+wi], kind.Value(h[tg][ki]))
						}
					}
				}
			}
			if fmt.Sprint(got[tg]) != fmt.Sprint(want) && !(got[tg] == nil && want[3] == 0) {
				t.Fatalf("minute %d target %d: %v, want %v", m, tg, got[tg], want)
			}
		}
	}
}

// checkMinutes checks AddMinutes of slot at m against the history: at
// (minute) gives a target's values of a minute (nil: none).
func checkMinutes(t *testing.T, w *Windows, slot int32, m int64, maxW int, at func(int64) []int32) {
	t.Helper()
	got := make([]int32, w.nK*maxW)
	w.AddMinutes(slot, m, got)
	want := make([]int32, w.nK*maxW)
	for age := range maxW {
		for ki, v := range at(m - int64(age)) {
			want[ki*maxW+age] = v
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("minute %d slot %d: AddMinutes %v, want %v", m, slot, got, want)
	}
}

// TestAddMinutesAcrossWords: AddMinutes finds a slot's values in panes of
// hundreds of slots (several words of bits, ranks between them), for
// targets that come and go.
func TestAddMinutesAcrossWords(t *testing.T) {
	def := feature.Definition{Resolution: 8, Rings: []int{0, 2}, Windows: []int{2, 6}}
	w := New(def)
	rng := rand.New(rand.NewPCG(4, 4))
	hist := map[int64]map[uint32][]int32{}
	var d kring.Sparse
	for m := int64(50); m < 80; m++ {
		d.Reset()
		hist[m] = map[uint32][]int32{}
		for tg := range uint32(400) {
			if rng.IntN(5) == 0 {
				v := []int32{int32(rng.IntN(3)), 0}
				v[1] = v[0] + 1 + int32(rng.IntN(1<<16)) // past int16 now and then
				d.Idx = append(d.Idx, tg)
				d.Vals = append(d.Vals, v...)
				hist[m][tg] = v
			}
		}
		w.Advance(m, &d)
		targets := w.Collect(nil)
		if m > 55 && len(targets) < 200 {
			t.Fatalf("minute %d: %d targets, the test wants several words of slots", m, len(targets))
		}
		for _, tg := range targets {
			checkMinutes(t, w, tg.Slot, m, 6, func(i int64) []int32 { return hist[i][tg.Cell] })
		}
	}
}
