// Package cellindex numbers H3 cells densely (uint32), so that per-cell state
// lives in flat arrays instead of maps keyed by cell.
package cellindex

// Index maps cells to dense indices 0..Len()-1 in order of first sight.
// Open addressing with linear probing; cell 0 is never a valid H3 index, so it
// marks empty slots. Not safe for concurrent writes; concurrent Lookups are
// safe while nobody inserts.
type Index struct {
	keys  []uint64
	vals  []uint32
	mask  uint64
	cells []uint64
}

// New returns an index sized for about n cells.
func New(n int) *Index {
	size := 64
	for size < n*2 {
		size <<= 1
	}
	return &Index{keys: make([]uint64, size), vals: make([]uint32, size), mask: uint64(size - 1)}
}

func hash(c uint64) uint64 {
	c ^= c >> 33
	c *= 0xff51afd7ed558ccd
	c ^= c >> 33
	return c
}

// Insert returns c's index, adding c if new.
func (x *Index) Insert(c uint64) uint32 {
	i := hash(c) & x.mask
	for {
		k := x.keys[i]
		if k == c {
			return x.vals[i]
		}
		if k == 0 {
			break
		}
		i = (i + 1) & x.mask
	}
	v := uint32(len(x.cells))
	x.keys[i] = c
	x.vals[i] = v
	x.cells = append(x.cells, c)
	if len(x.cells)*2 > len(x.keys) {
		x.grow()
	}
	return v
}

// Lookup returns c's index if present.
func (x *Index) Lookup(c uint64) (uint32, bool) {
	i := hash(c) & x.mask
	for {
		k := x.keys[i]
		if k == c {
			return x.vals[i], true
		}
		if k == 0 {
			return 0, false
		}
		i = (i + 1) & x.mask
	}
}

func (x *Index) grow() {
	keys, vals := x.keys, x.vals
	x.keys = make([]uint64, len(keys)*2)
	x.vals = make([]uint32, len(keys)*2)
	x.mask = uint64(len(x.keys) - 1)
	for j, k := range keys {
		if k == 0 {
			continue
		}
		i := hash(k) & x.mask
		for x.keys[i] != 0 {
			i = (i + 1) & x.mask
		}
		x.keys[i] = k
		x.vals[i] = vals[j]
	}
}

// Cell returns the cell with index i.
func (x *Index) Cell(i uint32) uint64 { return x.cells[i] }

// Len is the number of cells.
func (x *Index) Len() int { return len(x.cells) }

// Bytes is the memory held.
func (x *Index) Bytes() int { return len(x.keys)*12 + cap(x.cells)*8 }
