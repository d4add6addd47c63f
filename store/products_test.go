package store

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/encode"
)

func manyProduct(i int) encode.UUID {
	var u encode.UUID
	u[0], u[1], u[14], u[15] = 0xb0, 0x0b, byte(i>>8), byte(i)
	return u
}

// writeProducts writes minute m with one row per product in [lo, hi).
func writeProducts(t *testing.T, s *Store, names *encode.Products, m int64, lo, hi int) error {
	t.Helper()
	nf := s.Definition().NumFeatures()
	var b encode.Batch
	b.Names = names
	b.Reset(m, nf)
	f := make([]int32, nf)
	var taken [encode.MaxProducts]bool // run codes given out this minute
	for p := lo; p < hi; p++ {
		code, err := names.Assign(manyProduct(p), m, func(c byte) bool { return !taken[c] })
		if err != nil {
			t.Fatal(err)
		}
		taken[code] = true
		f[0] = int32(p)
		b.Cells = append(b.Cells, 0x882a100d67fffff)
		b.Products = append(b.Products, code)
		b.Features = append(b.Features, f...)
	}
	if err := s.Write(context.Background(), &b); err != nil {
		return err
	}
	return s.CloseMinute(context.Background(), m)
}

// TestProductCodesReusedAfterExpiry: a store meets 700 product types over
// its life, never more than 256 within its retention; codes of products
// whose rows have expired are reused, reads name every product right,
// also after a reopen. 257 products within the retention is an error that
// says what to do.
func TestProductCodesReusedAfterExpiry(t *testing.T) {
	c := testConfig(t.TempDir())
	c.Retention = 5 * time.Minute
	s := openTest(t, c)
	names := encode.NewProducts()
	// minute 0: products 0..199; minute 10: 200..399 (0..199 expired by
	// then); minute 20: 400..649; minute 30: 650..699.
	for _, ph := range []struct {
		m      int64
		lo, hi int
	}{{0, 0, 200}, {10, 200, 400}, {20, 400, 650}, {30, 650, 700}} {
		if err := writeProducts(t, s, names, testMinute0+ph.m, ph.lo, ph.hi); err != nil {
			t.Fatalf("minute %d: %v", ph.m, err)
		}
	}
	check := func(s *Store) {
		for p := 650; p < 700; p++ {
			row, err := s.Get(nil, testMinute0+30, manyProduct(p), 0x882a100d67fffff)
			if err != nil || !row.Found || row.Features[0] != int32(p) {
				t.Fatalf("product %d: %+v %v", p, row, err)
			}
		}
	}
	check(s)
	s.Close()
	s = openTest(t, c)
	defer s.Close()
	check(s)
	// Within the retention: 50 active, 207 more fit (codes of 400..649
	// are not expired: minute 20 is inside the window of minute 31).
	err := writeProducts(t, s, names, testMinute0+31, 700, 907)
	if err == nil || !strings.Contains(err.Error(), "257th product") {
		t.Fatalf("err = %v", err)
	}
}

// TestActiveProductKeepsItsCode: a product written every minute stays
// active however long the run, so its code is never handed to a new
// product: with 255 other products arriving later, the 257th active one is
// refused instead of taking its code.
func TestActiveProductKeepsItsCode(t *testing.T) {
	c := testConfig(t.TempDir())
	c.Retention = 5 * time.Minute
	s := openTest(t, c)
	defer s.Close()
	names := encode.NewProducts()
	for m := range int64(30) {
		if err := writeProducts(t, s, names, testMinute0+m, 0, 1); err != nil {
			t.Fatalf("minute %d: %v", m, err)
		}
	}
	err := writeProducts(t, s, names, testMinute0+30, 1, 257) // 256 new ones
	if err == nil || !strings.Contains(err.Error(), "257th product") {
		t.Fatalf("257 active products: err = %v", err)
	}
	row, err := s.Get(nil, testMinute0+29, manyProduct(0), 0x882a100d67fffff)
	if err != nil || !row.Found || row.Features[0] != 0 {
		t.Fatalf("the active product's last row: %+v %v", row, err)
	}
}
