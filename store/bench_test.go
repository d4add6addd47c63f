package store

import (
	"fmt"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/encode"
)

// BenchmarkWriteMinute: one iteration commits one minute of rows (two
// products over cells, ~2/3 of cells with a row). rows/s is the write
// path's throughput; ms/minute is how long a minute of that size takes to
// become durable after CloseMinute starts (Write included).
func BenchmarkWriteMinute(b *testing.B) {
	for _, cells := range []int{15000} {
		for _, sync := range []bool{false, true} {
			b.Run(fmt.Sprintf("cells=%d/sync=%v", cells, sync), func(b *testing.B) {
				c := testConfig(b.TempDir())
				c.Sync = sync
				c.MemTableBytes = 64 << 20
				s := openTest(b, c)
				defer s.Close()
				names := encode.NewProducts()
				cs := testCells(cells)
				rows := 0
				b.ReportAllocs()
				start := time.Now()
				m := int64(0)
				for b.Loop() {
					rows += writeMinute(b, s, names, testMinute0+m, 2, cs, 4096)
					m++
				}
				el := time.Since(start)
				b.ReportMetric(float64(rows)/el.Seconds(), "rows/s")
				b.ReportMetric(float64(el.Milliseconds())/float64(m), "ms/minute")
				b.ReportMetric(float64(rows)/float64(m), "rows/minute")
			})
		}
	}
}

func benchStore(b *testing.B, cells []uint64) *Store {
	c := testConfig(b.TempDir())
	s := openTest(b, c)
	names := encode.NewProducts()
	for m := range int64(3) {
		writeMinute(b, s, names, testMinute0+m, 2, cells, 4096)
	}
	return s
}

func BenchmarkGet(b *testing.B) {
	cells := testCells(15000)
	s := benchStore(b, cells)
	defer s.Close()
	latest, _ := s.LatestMinute()
	dst := make([]int32, 0, 64)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r, err := s.Get(dst, latest, testProduct(0), cells[(i*7919)%len(cells)])
		if err != nil {
			b.Fatal(err)
		}
		dst = r.Features
		i++
	}
}

func BenchmarkGetMany(b *testing.B) {
	cells := testCells(15000)
	s := benchStore(b, cells)
	defer s.Close()
	latest, _ := s.LatestMinute()
	for _, n := range []int{200, 1000} {
		b.Run(fmt.Sprintf("cells=%d", n), func(b *testing.B) {
			// A pricing batch: a neighbourhood of nearby cells, unsorted.
			req := make([]uint64, n)
			for i := range req {
				req[i] = cells[(5000+i*37)%len(cells)]
			}
			var rows []Row
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if rows, err = s.GetMany(rows, latest, testProduct(1), req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
