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
