// Package dedup keeps the first event per (rider, product, minute) and drops
// the rest, with no added latency: the first event passes at once.
//
// State is kept per open minute in generations (one open-addressed table and
// one byte arena of rider ids per minute). When the engine closes a minute it
// releases that generation whole, so the cost of forgetting is O(1) per minute
// and the state holds only the riders of minutes that can still receive
// events (lateness/60s + 1 of them, 2 by default).
//
// Exactness: the table compares the full rider id on a hash match, so two
// riders whose ids share a 64-bit hash are still told apart.
package dedup

import (
	"bytes"
	"fmt"
)

// Config tunes the table.
type Config struct {
	// InitialKeys sizes a new minute's table, to avoid rehashing while a
	// busy minute warms up. Default 1<<16; tables grow as needed and are
	// reused across minutes, so after warm-up no minute allocates.
	InitialKeys int
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config { return Config{InitialKeys: 1 << 16} }

// Validate checks the fields.
func (c Config) Validate() error {
	if c.InitialKeys < 16 || c.InitialKeys > 1<<30 {
		return fmt.Errorf("dedup.initial-keys=%d: must be in 16..%d", c.InitialKeys, 1<<30)
	}
	return nil
}

// entry is 16 bytes: four to a cache line.
type entry struct {
	hash    uint64 // 0 marks an empty slot
	off     uint32 // rider id in the arena
	n       uint16
	product byte
	_       byte
}

type generation struct {
	minute int64
	slots  []entry
	mask   uint64
	used   int
	arena  []byte
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

// Mix folds the product into a rider hash (from xxhash of the rider id), so
// that one table holds all products of a minute.
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

// First records (rider, product, minute) and reports whether it is the first
// time it is seen. hash must be Mix(xxhash(rider), product).
func (t *Table) First(minute int64, product byte, hash uint64, rider []byte) bool {
	g := t.gen(minute)
	i := hash & g.mask
	for {
		e := &g.slots[i]
		if e.hash == 0 {
			break
		}
		if e.hash == hash && e.product == product && bytes.Equal(g.arena[e.off:e.off+uint32(e.n)], rider) {
			return false
		}
		i = (i + 1) & g.mask
	}
	g.slots[i] = entry{hash: hash, off: uint32(len(g.arena)), n: uint16(len(rider)), product: product}
	g.arena = append(g.arena, rider...)
	g.used++
	if g.used*4 > len(g.slots)*3 {
		g.grow()
	}
	return true
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
		for size < t.cfg.InitialKeys*4/3+1 {
			size <<= 1
		}
		g = &generation{slots: make([]entry, size), mask: uint64(size - 1)}
	}
	g.minute = minute
	t.gens = append(t.gens, g)
	return g
}

func (g *generation) grow() {
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
}

// Release forgets every minute <= through; their generations are reused.
func (t *Table) Release(through int64) {
	keep := t.gens[:0]
	for _, g := range t.gens {
		if g.minute <= through {
			clear(g.slots)
			g.used = 0
			g.arena = g.arena[:0]
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

// Bytes is the memory held by open generations (slots and arenas).
func (t *Table) Bytes() int {
	n := 0
	for _, g := range t.gens {
		n += len(g.slots)*16 + cap(g.arena)
	}
	return n
}

// OpenMinutes is the number of minutes with state.
func (t *Table) OpenMinutes() int { return len(t.gens) }
