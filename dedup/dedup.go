// Package dedup keeps the first event per (rider, product, minute) and drops
// the rest, with no added latency: the first event passes at once.
//
// State is kept per open minute in generations (one open-addressed table
// per minute). When the engine closes a minute it releases that generation
// whole, so the cost of forgetting is O(1) per minute and the state holds
// only the riders of minutes that can still receive events (lateness/60s +
// 1 of them, 2 by default).
//
// Keys are 128 bits, 16 bytes a slot whatever the rider id's length: Hash
// (xxhash of the rider id, the product folded in) places a key, and Check
// (a maphash of the rider id under a seed drawn at random when the process
// starts, the product folded in) tells apart keys that share a Hash. An
// input can be made to collide on xxhash by anyone who reads this source;
// it cannot be made to collide on Check, whose seed it never sees. Two
// distinct (rider, product) keys of one minute merge only if both 64-bit
// hashes agree: for n keys about n²/2¹²⁹ (3·10⁻²⁶ for 2 million riders
// in a minute), and under an xxhash-collision attack n²/2⁶⁵ (10⁻⁷). The
// table held the full rider ids before: 250-byte ids made 3M riders of one
// minute 3.4 GB of RSS outside any budget (issue 21).
package dedup

import (
	"fmt"
	"hash/maphash"
)

// Config tunes the table.
type Config struct {
	// InitialKeys sizes a new minute's table, to avoid rehashing while a
	// busy minute warms up. Default 1<<16; tables grow as needed and are
	// reused across minutes, so after warm-up no minute allocates. With
	// many minutes open at once (a thin stream) a new table is sized for
	// what the open ones hold instead (initialKeys).
	InitialKeys int
	// MaxBytes bounds the tables (open and spare minutes), 0: no bound.
	// A key that would need more is not kept: Add says Full, and the
	// engine sheds the event (counted, never counted twice). The engine
	// sets it to a quarter of -max-memory.
	MaxBytes int64
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config { return Config{InitialKeys: 1 << 16} }

// Validate checks the fields.
func (c Config) Validate() error {
	if c.InitialKeys < 16 || c.InitialKeys > 1<<30 {
		return fmt.Errorf("dedup.initial-keys=%d: must be in 16..%d", c.InitialKeys, 1<<30)
	}
	if c.MaxBytes < 0 {
		return fmt.Errorf("dedup: MaxBytes=%d: must be >= 0 (0: no bound)", c.MaxBytes)
	}
	return nil
}

// entry is one key, 16 bytes: four to a cache line.
type entry struct {
	hash  uint64 // 0 marks an empty slot (Mix never returns 0)
	check uint64
}

const entryBytes = 16

type generation struct {
	minute int64
	slots  []entry
	mask   uint64
	used   int
}

// Table is the dedup state. Not safe for concurrent use: the engine calls it
// from its single sequencing stage, which fixes "first" as arrival order.
type Table struct {
	cfg  Config
	gens []*generation // open minutes, few
	free []*generation
}

// New returns an empty table.
func New(cfg Config) (*Table, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Table{cfg: cfg}, nil
}

// Mix folds the product into a rider hash (Hash: from xxhash of the rider
// id; Check: from CheckOf), so that one table holds all products of a
// minute.
func Mix(riderHash uint64, product byte) uint64 {
	h := riderHash ^ (uint64(product)+1)*0x9E3779B97F4A7C15
	h ^= h >> 29
	h *= 0xBF58476D1CE4E5B9
	h ^= h >> 32
	if h == 0 {
		h = 1
	}
	return h
}

// seed keys CheckOf: drawn when the process starts, never stored or sent,
// so no input can aim at it. Dedup state lives within one process (a
// restart rebuilds it from the input), so the seed need not survive one.
var seed = maphash.MakeSeed()

// CheckOf is a rider id's check hash (Mix it with the product for Add).
// ~4 ns for a 36-byte id; the engine's parse workers compute it.
func CheckOf(rider []byte) uint64 { return maphash.Bytes(seed, rider) }

// Outcome is what Add did with a key.
type Outcome uint8

const (
	// Duplicate: the key was there.
	Duplicate Outcome = iota
	// First: the key is kept: the first event of its (rider, product,
	// minute).
	First
	// Full: the key is not kept, MaxBytes has no room for it: the caller
	// sheds the event (it cannot tell a first from a duplicate).
	Full
)

// Add records (rider, product, minute), given as hash = Mix(xxhash(rider),
// product) and check = Mix(CheckOf(rider), product), and says whether it
// is new.
func (t *Table) Add(minute int64, hash, check uint64) Outcome {
	g := t.gen(minute)
	i := hash & g.mask
	for {
		e := &g.slots[i]
		if e.hash == 0 {
			break
		}
		if e.hash == hash && e.check == check {
			return Duplicate
		}
		i = (i + 1) & g.mask
	}
	if g.used*4 >= len(g.slots)*3 {
		if t.grow(g) {
			i = hash & g.mask // the free slot moved
			for g.slots[i].hash != 0 {
				i = (i + 1) & g.mask
			}
		} else if g.used*16 >= len(g.slots)*15 {
			// No room to double: filled to 15/16 (longer probes, still
			// bounded), then refused.
			return Full
		}
	}
	g.slots[i] = entry{hash: hash, check: check}
	g.used++
	return First
}

func (t *Table) gen(minute int64) *generation {
	for _, g := range t.gens {
		if g.minute == minute {
			return g
		}
	}
	var g *generation
	if n := len(t.free); n > 0 {
		g = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		size := 16
		for want := t.initialKeys(); size < want*4/3+1; {
			size <<= 1
		}
		for t.cfg.MaxBytes > 0 && size > 16 && t.held()+int64(size)*entryBytes > t.cfg.MaxBytes {
			size >>= 1
		}
		g = &generation{slots: make([]entry, size), mask: uint64(size - 1)}
	}
	g.minute = minute
	t.gens = append(t.gens, g)
	return g
}

// manyOpen is more minutes open at once than a dense stream keeps (the
// minute being filled, the one before within the lateness, one early).
const manyOpen = 3

// initialKeys is what a new minute's table is sized for: InitialKeys,
// unless manyOpen minutes are open already. A stream of fewer riders than
// event time's K leaves its minutes open until its end (or the idle
// timeout), one table each: at InitialKeys' 1 MiB a table, 2,000 minutes
// of 10 riders held 2 GB (4 GB allocated). Then a new table is sized for
// the most keys an open minute holds, and grows as any does.
func (t *Table) initialKeys() int {
	if len(t.gens) < manyOpen {
		return t.cfg.InitialKeys
	}
	n := 0
	for _, g := range t.gens {
		n = max(n, g.used)
	}
	return min(n, t.cfg.InitialKeys)
}

// grow doubles g's table if MaxBytes has room (spare tables are given up
// first); it reports whether it did.
func (t *Table) grow(g *generation) bool {
	if t.cfg.MaxBytes > 0 {
		need := t.held() + int64(len(g.slots))*entryBytes // the new table beside the old
		for need > t.cfg.MaxBytes && len(t.free) > 0 {
			need -= int64(len(t.free[len(t.free)-1].slots)) * entryBytes
			t.free[len(t.free)-1] = nil
			t.free = t.free[:len(t.free)-1]
		}
		if need > t.cfg.MaxBytes {
			return false
		}
	}
	old := g.slots
	g.slots = make([]entry, len(old)*2)
	g.mask = uint64(len(g.slots) - 1)
	for _, e := range old {
		if e.hash == 0 {
			continue
		}
		i := e.hash & g.mask
		for g.slots[i].hash != 0 {
			i = (i + 1) & g.mask
		}
		g.slots[i] = e
	}
	return true
}

// held is the bytes of every table, open and spare.
func (t *Table) held() int64 {
	n := int64(0)
	for _, g := range t.gens {
		n += int64(len(g.slots)) * entryBytes
	}
	for _, g := range t.free {
		n += int64(len(g.slots)) * entryBytes
	}
	return n
}

// Release forgets every minute <= through; their generations are reused.
func (t *Table) Release(through int64) {
	keep := t.gens[:0]
	for _, g := range t.gens {
		if g.minute <= through {
			clear(g.slots)
			g.used = 0
			t.free = append(t.free, g)
		} else {
			keep = append(keep, g)
		}
	}
	clear(t.gens[len(keep):])
	t.gens = keep
	// Keep at most a few spare generations: a burst of open minutes (large
	// lateness) should not pin memory forever.
	for len(t.free) > 4 {
		t.free[len(t.free)-1] = nil
		t.free = t.free[:len(t.free)-1]
	}
}

// Keys is the number of (rider, product, minute) keys held.
func (t *Table) Keys() int {
	n := 0
	for _, g := range t.gens {
		n += g.used
	}
	return n
}

// Bytes is the memory held by the tables, open and spare (what MaxBytes
// bounds).
func (t *Table) Bytes() int { return int(t.held()) }

// OpenMinutes is the number of minutes with state.
func (t *Table) OpenMinutes() int { return len(t.gens) }
