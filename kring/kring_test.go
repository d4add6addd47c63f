package kring

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/uber/h3-go/v4"

	"github.com/demandpipe/demandpipe/feature"
)

// refSmooth is the definition: D[k](t) = sum of c(h) over h with t in
// GridDisk(h, k), with maps and loops.
func refSmooth(t *testing.T, def feature.Definition, src map[uint64]int32) map[uint64][]int32 {
	out := map[uint64][]int32{}
	for h, c := range src {
		for ki, k := range def.Rings {
			disk, err := h3.GridDisk(h3.Cell(h), k)
			if err != nil {
				t.Fatal(err)
			}
			for _, tc := range disk {
				if tc == 0 {
					continue
				}
				v := out[uint64(tc)]
				if v == nil {
					v = make([]int32, len(def.Rings))
					out[uint64(tc)] = v
				}
				v[ki] += c
			}
		}
	}
	return out
}

func check(t *testing.T, def feature.Definition, center h3.Cell, n int, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	area, _ := h3.GridDisk(center, 6)
	src := map[uint64]int32{}
	for range n {
		c := area[rng.IntN(len(area))]
		if c != 0 {
			src[uint64(c)] += int32(1 + rng.IntN(5))
		}
	}
	s, err := New(def, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	var cells []uint64
	var counts []int32
	for c, n := range src {
		cells = append(cells, c)
		counts = append(counts, n)
	}
	idx, err := s.Prepare(cells, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	var sc Scratch
	var d Sparse
	for round := range 2 { // the second run reuses scratch and cached disks
		s.Smooth(&sc, idx, counts, &d)
		want := refSmooth(t, def, src)
		if len(d.Idx) != len(want) {
			t.Fatalf("round %d: %d targets, want %d", round, len(d.Idx), len(want))
		}
		for j, ti := range d.Idx {
			cell := s.Cells.Cell(ti)
			got := d.Vals[j*len(def.Rings) : (j+1)*len(def.Rings)]
			if fmt.Sprint(got) != fmt.Sprint(want[cell]) {
				t.Fatalf("round %d: target %x: got %v want %v", round, cell, got, want[cell])
			}
		}
	}
}

func TestSmoothMatchesDefinition(t *testing.T) {
	nyc, _ := h3.LatLngToCell(h3.LatLng{Lat: 40.75, Lng: -73.98}, 8)
	check(t, feature.Definition{Resolution: 8, Rings: []int{3, 0, 1}, Windows: []int{1}}, nyc, 40, 1)
	check(t, feature.Definition{Resolution: 8, Rings: []int{0, 1, 2, 3, 4, 5, 10}, Windows: []int{1}}, nyc, 30, 2)
	for i, res := range []int{2, 5, 9} {
		pents, _ := h3.Pentagons(res)
		check(t, feature.Definition{Resolution: res, Rings: []int{2, 0, 4}, Windows: []int{1}}, pents[i*3], 25, uint64(3+i))
	}
}

// BenchmarkSmooth measures a metro-scale minute's smoothing: sources spread
// over a disk around midtown Manhattan, every one a source (S1 = cells).
func BenchmarkSmooth(b *testing.B) {
	for _, tc := range []struct{ cells, k int }{{2000, 20}, {20000, 20}, {20000, 5}} {
		b.Run(fmt.Sprintf("cells=%d/k=%d", tc.cells, tc.k), func(b *testing.B) {
			def := feature.Default()
			if tc.k != 20 {
				def.Rings = []int{0, 1, 2, 3, 4, 5}
			}
			center, _ := h3.LatLngToCell(h3.LatLng{Lat: 40.75, Lng: -73.98}, 8)
			r := 1
			for 3*r*(r+1)+1 < tc.cells {
				r++
			}
			disk, _ := h3.GridDisk(center, r)
			cells := make([]uint64, 0, tc.cells)
			for _, c := range disk[:tc.cells] {
				cells = append(cells, uint64(c))
			}
			counts := make([]int32, len(cells))
			for i := range counts {
				counts[i] = int32(1 + i%7)
			}
			s, _ := New(def, Config{MaxCachedDisks: 1 << 20, Workers: 2})
			idx, err := s.Prepare(cells, 0, nil)
			if err != nil {
				b.Fatal(err)
			}
			var sc Scratch
			var d Sparse
			b.ReportAllocs()
			for b.Loop() {
				s.Smooth(&sc, idx, counts, &d)
			}
			b.ReportMetric(float64(len(d.Idx)), "targets")
		})
	}
}

// smoothByCell smooths sources and returns each target cell's values.
func smoothByCell(t *testing.T, s *Smoother, cells []uint64, counts []int32, minute int64) map[uint64][]int32 {
	t.Helper()
	idx, err := s.Prepare(cells, minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out Sparse
	s.Smooth(&Scratch{}, idx, counts, &out)
	got := map[uint64][]int32{}
	for j, i := range out.Idx {
		got[s.Cells.Cell(i)] = out.Vals[j*s.NumRings() : (j+1)*s.NumRings()]
	}
	return got
}

// TestCompactKeepsCurrentDisks: after the index is renumbered, the disks
// of the minute's sources stay cached (no recomputation) and smoothing
// gives the same values per cell; other disks are dropped and the index
// holds only what was kept.
func TestCompactKeepsCurrentDisks(t *testing.T) {
	def := feature.Definition{Resolution: 8, Rings: []int{0, 2, 5}, Windows: []int{1}}
	s, err := New(def, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	origin, _ := h3.LatLngToCell(h3.LatLng{Lat: 40.7, Lng: -74}, 8)
	far, _ := h3.LatLngToCell(h3.LatLng{Lat: -33.9, Lng: 151.2}, 8)
	ring, _ := h3.GridDisk(origin, 3)
	var cells []uint64
	var counts []int32
	for i, c := range ring {
		cells = append(cells, uint64(c))
		counts = append(counts, int32(1+i%3))
	}
	smoothByCell(t, s, []uint64{uint64(far)}, []int32{1}, 4) // an old source, elsewhere
	want := smoothByCell(t, s, cells, counts, 5)
	before := s.Cells.Len()
	s.Compact(nil, 5)
	if s.CachedDisks() != len(cells) || s.Cells.Len() >= before {
		t.Fatalf("after compaction: %d disks cached (want %d), index %d cells (was %d)", s.CachedDisks(), len(cells), s.Cells.Len(), before)
	}
	got := smoothByCell(t, s, cells, counts, 6)
	if s.CachedDisks() != len(cells) {
		t.Fatalf("smoothing again computed disks: %d cached", s.CachedDisks())
	}
	if fmt.Sprint(len(got)) != fmt.Sprint(len(want)) {
		t.Fatalf("%d targets, want %d", len(got), len(want))
	}
	for c, v := range want {
		if fmt.Sprint(got[c]) != fmt.Sprint(v) {
			t.Fatalf("cell %x: %v, want %v", c, got[c], v)
		}
	}
}

// TestAdmit: a source is charged the cells its disk adds to the index, and
// only what is admitted is cached.
func TestAdmit(t *testing.T) {
	def := feature.Definition{Resolution: 8, Rings: []int{0, 2}, Windows: []int{1}}
	s, _ := New(def, DefaultConfig())
	a, _ := h3.LatLngToCell(h3.LatLng{Lat: 40.7, Lng: -74}, 8)
	nb, _ := h3.GridDisk(a, 1)
	var asked []int
	fits := func(ok bool) func(int) bool {
		return func(n int) bool { asked = append(asked, n); return ok }
	}
	if ok, err := s.Admit(uint64(a), 1, fits(false)); ok || err != nil || s.CachedDisks() != 0 {
		t.Fatalf("refused source: admitted %v (%v), %d cached", ok, err, s.CachedDisks())
	}
	if ok, _ := s.Admit(uint64(a), 1, fits(true)); !ok || s.CachedDisks() != 1 {
		t.Fatal("source not admitted")
	}
	if ok, _ := s.Admit(uint64(a), 1, fits(false)); !ok {
		t.Fatal("a cached source must be admitted without asking")
	}
	if ok, _ := s.Admit(uint64(nb[1]), 1, fits(true)); !ok {
		t.Fatal("neighbour not admitted")
	}
	// a's disk has 19 cells; its neighbour's adds the 2k+1 = 5 of its far edge.
	if fmt.Sprint(asked) != "[19 19 5]" {
		t.Fatalf("charged %v, want [19 19 5]", asked)
	}
}
