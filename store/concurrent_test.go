package store

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/encode"
)

// TestConcurrentReaders: readers run Get, GetMany, Scan and Minutes while
// the writer closes minutes and retention expires them. Every answer must
// be the reference row (whole minutes, never a half-written or half-expired
// one); the only allowed error is a minute that expired. Run with -race.
func TestConcurrentReaders(t *testing.T) {
	c := testConfig(t.TempDir())
	c.Retention = 3 * time.Minute
	c.CompactEvery = 2
	s := openTest(t, c)
	defer s.Close()
	cells := testCells(400)
	names := encode.NewProducts()
	writeMinute(t, s, names, testMinute0, 1, cells, 128)

	var stop atomic.Bool
	var reads, expired atomic.Int64
	var wg sync.WaitGroup
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var rows []Row
			var want []int32
			for i := 0; !stop.Load(); i++ {
				mins := s.Minutes(nil)
				for j := 1; j < len(mins); j++ {
					if mins[j].Minute >= mins[j-1].Minute {
						t.Errorf("Minutes not latest first: %+v", mins)
						return
					}
				}
				m := mins[(i+r)%len(mins)].Minute
				var err error
				switch i % 3 {
				case 0:
					rows, err = s.GetMany(rows, m, testProduct(0), cells)
				case 1:
					var row Row
					row, err = s.Get(nil, m, testProduct(0), cells[i%len(cells)])
					rows = append(rows[:0], row)
				default:
					rows = rows[:0]
					err = s.Scan(m, testProduct(0), func(cell uint64, f []int32) bool {
						rows = append(rows, Row{Cell: cell, Found: true, Features: append([]int32(nil), f...)})
						return true
					})
				}
				if errors.Is(err, ErrMinuteNotFound) {
					expired.Add(1)
					continue
				}
				if err != nil {
					t.Errorf("read minute %d: %v", m, err)
					return
				}
				reads.Add(1)
				for _, row := range rows {
					if row.Found != hasRow(m, 0, row.Cell) {
						t.Errorf("minute %d cell %x: found=%v", m, row.Cell, row.Found)
						return
					}
					if row.Found {
						want = testFeatures(want, m, 0, row.Cell, 54)
						if !equal(row.Features, want) {
							t.Errorf("minute %d cell %x: %v", m, row.Cell, row.Features[:4])
							return
						}
					}
				}
			}
		}()
	}
	for i := int64(1); i < 60; i++ {
		writeMinute(t, s, names, testMinute0+i, 1, cells, 128)
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d reads checked, %d met an expired minute, while 60 minutes were written", reads.Load(), expired.Load())
	if reads.Load() == 0 {
		t.Fatal("no read completed")
	}
}
