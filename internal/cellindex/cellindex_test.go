package cellindex

import (
	"math/rand/v2"
	"testing"
)

func TestMatchesMap(t *testing.T) {
	x := New(1)
	ref := map[uint64]uint32{}
	rng := rand.New(rand.NewPCG(1, 1))
	for range 100_000 {
		c := 0x0880000000000000 | rng.Uint64N(50_000)<<20
		got := x.Insert(c)
		if want, ok := ref[c]; ok && got != want {
			t.Fatalf("cell %x: index %d, was %d", c, got, want)
		} else if !ok {
			if int(got) != len(ref) {
				t.Fatalf("new cell %x got index %d, want %d", c, got, len(ref))
			}
			ref[c] = got
		}
	}
	for c, i := range ref {
		if j, ok := x.Lookup(c); !ok || j != i || x.Cell(i) != c {
			t.Fatalf("lookup %x: %d %v", c, j, ok)
		}
	}
	if _, ok := x.Lookup(1); ok || x.Len() != len(ref) {
		t.Fatal("lookup of an absent cell")
	}
}
