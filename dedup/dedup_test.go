package dedup

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cespare/xxhash/v2"
)

func first(t *Table, m int64, p byte, rider string) bool {
	return t.First(m, p, Mix(xxhash.Sum64String(rider), p), []byte(rider))
}

func TestFirstPerRiderProductMinute(t *testing.T) {
	tb, _ := New(DefaultConfig())
	if !first(tb, 10, 1, "alice") || first(tb, 10, 1, "alice") {
		t.Fatal("second event of alice/1/10 must be a duplicate")
	}
	if !first(tb, 10, 2, "alice") || !first(tb, 11, 1, "alice") || !first(tb, 10, 1, "bob") {
		t.Fatal("other product, minute or rider is new")
	}
	tb.Release(10)
	if tb.OpenMinutes() != 1 || tb.Keys() != 1 {
		t.Fatalf("after release: %d minutes, %d keys", tb.OpenMinutes(), tb.Keys())
	}
	if !first(tb, 10, 1, "alice") {
		t.Fatal("a released minute starts empty")
	}
}

// TestHashCollisionsStillExact forces every rider onto one hash: the full
// id comparison must keep them apart.
func TestHashCollisionsStillExact(t *testing.T) {
	tb, _ := New(Config{InitialKeys: 16})
	for i := range 200 {
		r := []byte(fmt.Sprint("rider-", i))
		if !tb.First(1, 0, 42, r) {
			t.Fatalf("rider %d reported as duplicate under a colliding hash", i)
		}
	}
	for i := range 200 {
		if tb.First(1, 0, 42, []byte(fmt.Sprint("rider-", i))) {
			t.Fatalf("rider %d not remembered", i)
		}
	}
}

func TestMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tb, _ := New(Config{InitialKeys: 16})
	ref := map[string]bool{}
	released := int64(-1)
	for i := range 100_000 {
		m := released + 1 + int64(rng.IntN(3))
		p := byte(rng.IntN(3))
		r := fmt.Sprint(rng.IntN(5000))
		k := fmt.Sprint(m, "/", p, "/", r)
		if got := first(tb, m, p, r); got != !ref[k] {
			t.Fatalf("event %d %s: got first=%v", i, k, got)
		}
		ref[k] = true
		if i%5000 == 4999 {
			released++
			tb.Release(released)
		}
	}
}

func BenchmarkFirst(b *testing.B) {
	for _, riders := range []int{10_000, 500_000} {
		b.Run(fmt.Sprintf("riders=%d", riders), func(b *testing.B) {
			tb, _ := New(DefaultConfig())
			ids := make([][]byte, riders)
			hs := make([]uint64, riders)
			for i := range ids {
				ids[i] = []byte(fmt.Sprint("r-", i))
				hs[i] = Mix(xxhash.Sum64(ids[i]), 1)
			}
			b.ReportAllocs()
			i := 0
			m := int64(0)
			for b.Loop() {
				tb.First(m, 1, hs[i], ids[i])
				i++
				if i == riders {
					i = 0
					tb.Release(m - 1)
					m++
				}
			}
		})
	}
}
