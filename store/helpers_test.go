package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/feature"
)

// Deterministic test data: which cells have a row in (minute, product) and
// their features follow from the numbers alone, so a reader (or a process
// that reopens the store after a crash) can check any row it sees.

const testMinute0 = 28_600_000 // 2024-05-18T02:40:00Z

func testProduct(i int) encode.UUID {
	var u encode.UUID
	u[0], u[15] = 0xa0, byte(i+1)
	return u
}

// testCells returns n distinct resolution-8-looking cells.
func testCells(n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = 0x882a100000000000 | uint64(i)*0x1000 | 0xfff
	}
	return out
}

func mix(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	return x ^ x>>33
}

// hasRow: about two cells in three have a row in a given minute/product.
func hasRow(minute int64, p int, cell uint64) bool {
	return mix(uint64(minute)*31+uint64(p)*7+cell)%3 != 0
}

func testFeatures(dst []int32, minute int64, p int, cell uint64, nf int) []int32 {
	dst = dst[:0]
	for j := range nf {
		h := mix(uint64(minute)<<20 ^ uint64(p)<<12 ^ cell ^ uint64(j)*0x9e3779b97f4a7c15)
		v := int32(h % 50000)
		if j%7 == 3 {
			v = 0
		}
		dst = append(dst, v)
	}
	return dst
}

// writeMinute writes minute m for products 0..np-1 over cells, in batches of
// at most batchRows rows, then closes it.
func writeMinute(t testing.TB, s *Store, names *encode.Products, m int64, np int, cells []uint64, batchRows int) int {
	t.Helper()
	rows, err := writeMinuteRows(s, names, m, np, cells, batchRows)
	if err != nil {
		t.Fatalf("minute %d: %v", m, err)
	}
	return rows
}

// writeMinuteErr writes and closes minute m, returning the store's error.
func writeMinuteErr(s *Store, names *encode.Products, m int64, np int, cells []uint64, batchRows int) error {
	_, err := writeMinuteRows(s, names, m, np, cells, batchRows)
	return err
}

func writeMinuteRows(s *Store, names *encode.Products, m int64, np int, cells []uint64, batchRows int) (int, error) {
	nf := s.Definition().NumFeatures()
	var b encode.Batch
	b.Names = names
	b.Reset(m, nf)
	rows := 0
	var f []int32
	flush := func() error {
		if b.Len() == 0 {
			return nil
		}
		if err := s.Write(context.Background(), &b); err != nil {
			return fmt.Errorf("Write minute %d: %w", m, err)
		}
		b.Reset(m, nf)
		return nil
	}
	for p := range np {
		code, err := names.Code(testProduct(p))
		if err != nil {
			return rows, err
		}
		for _, c := range cells {
			if !hasRow(m, p, c) {
				continue
			}
			f = testFeatures(f, m, p, c, nf)
			b.Cells = append(b.Cells, c)
			b.Products = append(b.Products, code)
			b.Features = append(b.Features, f...)
			rows++
			if b.Len() >= batchRows {
				if err := flush(); err != nil {
					return rows, err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return rows, err
	}
	if err := s.CloseMinute(context.Background(), m); err != nil {
		return rows, fmt.Errorf("CloseMinute %d: %w", m, err)
	}
	return rows, nil
}

func testConfig(dir string) Config {
	c := DefaultConfig()
	c.Dir = dir
	c.Definition = feature.Default()
	c.Sync = false // tests don't need power-loss durability; the crash test sets it
	c.MemTableBytes = 4 << 20
	c.CacheBytes = 8 << 20
	return c
}

func openTest(t testing.TB, c Config) *Store {
	t.Helper()
	s, err := Open(c, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// checkMinute verifies every cell of minute m against the reference with
// Get, GetMany and Scan.
func checkMinute(t testing.TB, s *Store, m int64, np int, cells []uint64) {
	t.Helper()
	nf := s.Definition().NumFeatures()
	var want []int32
	rows, err := []Row(nil), error(nil)
	for p := range np {
		rows, err = s.GetMany(rows, m, testProduct(p), cells)
		if err != nil {
			t.Fatalf("GetMany minute %d product %d: %v", m, p, err)
		}
		scanned := 0
		if err := s.Scan(m, testProduct(p), func(cell uint64, f []int32) bool {
			scanned++
			if want = testFeatures(want, m, p, cell, nf); !hasRow(m, p, cell) || !equal(f, want) {
				t.Errorf("Scan minute %d product %d cell %x: %v", m, p, cell, f)
			}
			return true
		}); err != nil {
			t.Fatal(err)
		}
		found := 0
		for i, c := range cells {
			r, err := s.Get(nil, m, testProduct(p), c)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if hasRow(m, p, c) {
				found++
				want = testFeatures(want, m, p, c, nf)
			} else {
				want = append(want[:0], make([]int32, nf)...)
			}
			if r.Found != hasRow(m, p, c) || !equal(r.Features, want) || r.Cell != c {
				t.Fatalf("Get minute %d product %d cell %x: found=%v %v, want %v %v", m, p, c, r.Found, r.Features, hasRow(m, p, c), want)
			}
			if rows[i].Found != r.Found || !equal(rows[i].Features, r.Features) || rows[i].Cell != c {
				t.Fatalf("GetMany row %d differs from Get: %+v vs %+v", i, rows[i], r)
			}
		}
		if scanned != found {
			t.Errorf("Scan minute %d product %d: %d rows, want %d", m, p, scanned, found)
		}
	}
}

func equal(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
