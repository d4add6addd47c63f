package h3batch

import (
	"math/rand/v2"
	"testing"

	"github.com/uber/h3-go/v4"
)

func TestSameCellsAsH3Go(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	var l Locator
	for res := 0; res <= 15; res++ {
		lat := make([]float64, 2000)
		lng := make([]float64, 2000)
		for i := range lat {
			lat[i] = rng.Float64()*180 - 90
			lng[i] = rng.Float64()*360 - 180
		}
		lat[0], lng[0] = 90, 180
		lat[1], lng[1] = -90, -180
		out, errs := l.Cells(lat, lng, res, nil)
		if errs != 0 {
			t.Fatalf("res %d: %d errors", res, errs)
		}
		for i := range lat {
			want, err := h3.LatLngToCell(h3.LatLng{Lat: lat[i], Lng: lng[i]}, res)
			if err != nil || uint64(want) != out[i] {
				t.Fatalf("res %d point %v,%v: got %x want %x (%v)", res, lat[i], lng[i], out[i], want, err)
			}
		}
	}
	if _, errs := l.Cells([]float64{10}, []float64{10}, 16, nil); errs != 1 {
		t.Fatal("resolution 16 must fail")
	}
}

func BenchmarkCells(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 5))
	lat := make([]float64, 1024)
	lng := make([]float64, 1024)
	for i := range lat {
		lat[i] = 40.5 + rng.Float64()*0.5
		lng[i] = -74.2 + rng.Float64()*0.5
	}
	b.Run("batch", func(b *testing.B) {
		var l Locator
		var out []uint64
		b.ReportAllocs()
		for b.Loop() {
			out, _ = l.Cells(lat, lng, 8, out[:0])
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(lat)), "ns/point")
	})
	b.Run("h3go", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for i := range lat {
				h3.LatLngToCell(h3.LatLng{Lat: lat[i], Lng: lng[i]}, 8)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(lat)), "ns/point")
	})
}

func TestDiskSameAsH3Go(t *testing.T) {
	pents, _ := h3.Pentagons(7)
	nyc, _ := h3.LatLngToCell(h3.LatLng{Lat: 40.75, Lng: -73.98}, 9)
	nearPent, _ := h3.GridDisk(pents[3], 2)
	for _, origin := range append([]h3.Cell{nyc, pents[0]}, nearPent...) {
		for _, k := range []int{0, 1, 4, 20} {
			cells, dists, err := Disk(uint64(origin), k, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			rings, err := h3.GridDiskDistances(origin, k)
			if err != nil {
				t.Fatal(err)
			}
			want := map[uint64]int32{}
			for d, r := range rings {
				for _, c := range r {
					if c != 0 {
						want[uint64(c)] = int32(d)
					}
				}
			}
			if len(cells) != len(want) {
				t.Fatalf("%x k=%d: %d cells, want %d", origin, k, len(cells), len(want))
			}
			for i, c := range cells {
				if d, ok := want[c]; !ok || d != dists[i] {
					t.Fatalf("%x k=%d: cell %x dist %d, want %d (%v)", origin, k, c, dists[i], d, ok)
				}
			}
		}
	}
}
