package dedup

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cespare/xxhash/v2"
)

func add(t *Table, m int64, p byte, rider string) Outcome {
	return t.Add(m, Mix(xxhash.Sum64String(rider), p), Mix(CheckOf([]byte(rider)), p))
}

func first(t *Table, m int64, p byte, rider string) bool { return add(t, m, p, rider) == First }

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

// TestHashCollisionsStillExact forces every rider onto one xxhash (what
// an input crafted against the public hash does): the check hash, keyed
// by a seed the input never sees, keeps them apart.
func TestHashCollisionsStillExact(t *testing.T) {
	tb, _ := New(Config{InitialKeys: 16})
	for i := range 200 {
		r := []byte(fmt.Sprint("rider-", i))
		if tb.Add(1, 42, Mix(CheckOf(r), 0)) != First {
			t.Fatalf("rider %d reported as duplicate under a colliding hash", i)
		}
	}
	for i := range 200 {
		if tb.Add(1, 42, Mix(CheckOf([]byte(fmt.Sprint("rider-", i))), 0)) != Duplicate {
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

// TestMaxBytesBoundsTheTables: past MaxBytes a new key is Full (never New
// twice for one key, never a Dup for a key not kept), the tables stay
// within the bound, and keys already kept are still told apart; a released
// minute frees its room for the next.
func TestMaxBytesBoundsTheTables(t *testing.T) {
	const max = 64 << 10 // 4,096 slots of 16 bytes
	tb, err := New(Config{InitialKeys: 16, MaxBytes: max})
	if err != nil {
		t.Fatal(err)
	}
	kept, full := map[string]bool{}, 0
	for i := range 10_000 {
		r := fmt.Sprint("rider-", i)
		switch add(tb, 1, 0, r) {
		case First:
			kept[r] = true
		case Full:
			full++
		case Duplicate:
			t.Fatalf("%s: a duplicate of a key never added", r)
		}
		if tb.Bytes() > max {
			t.Fatalf("after %d keys the tables hold %d bytes, over %d", i+1, tb.Bytes(), max)
		}
	}
	if full == 0 || len(kept) < 2048 {
		t.Fatalf("%d kept, %d full: want the bound reached, and most of it used", len(kept), full)
	}
	for r := range kept {
		if add(tb, 1, 0, r) != Duplicate {
			t.Fatalf("%s kept, then forgotten", r)
		}
	}
	tb.Release(1)
	if first(tb, 2, 0, "rider-9999") != true {
		t.Fatal("a released minute's room is not reused")
	}
	if err := (Config{InitialKeys: 16, MaxBytes: -1}).Validate(); err == nil {
		t.Fatal("negative MaxBytes accepted")
	}
}

func BenchmarkAdd(b *testing.B) {
	for _, riders := range []int{10_000, 500_000} {
		b.Run(fmt.Sprintf("riders=%d", riders), func(b *testing.B) {
			tb, _ := New(DefaultConfig())
			hs := make([]uint64, riders)
			cs := make([]uint64, riders)
			for i := range hs {
				id := []byte(fmt.Sprint("r-", i))
				hs[i] = Mix(xxhash.Sum64(id), 1)
				cs[i] = Mix(CheckOf(id), 1)
			}
			b.ReportAllocs()
			i := 0
			m := int64(0)
			for b.Loop() {
				tb.Add(m, hs[i], cs[i])
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

// BenchmarkCheckOf: the check hash the parse workers compute per event.
func BenchmarkCheckOf(b *testing.B) {
	id := []byte("rider-3f2a9c4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b")
	b.ReportAllocs()
	for b.Loop() {
		CheckOf(id)
	}
}
