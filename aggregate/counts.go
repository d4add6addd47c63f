package aggregate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/internal/cellindex"
	"github.com/demandpipe/demandpipe/internal/wire"
	"github.com/demandpipe/demandpipe/sink"
)

// errCorrupt is a count record or part checkpoint that does not decode.
var errCorrupt = errors.New("corrupt count record")

// appendCounts encodes a minute's source counts: per product (UUID), its
// cells in increasing order as deltas, each with its count; ~4 bytes a cell.
func appendCounts(dst []byte, mc *minuteCounts, products *encode.Products, m int64) []byte {
	type pc struct {
		u encode.UUID
		p int
	}
	var ps []pc
	if mc != nil {
		for p := range encode.MaxProducts {
			if ix := mc.cells[p]; ix != nil && ix.Len() > 0 {
				ps = append(ps, pc{products.UUIDAt(byte(p), m), p})
			}
		}
	}
	dst = binary.AppendUvarint(dst, uint64(len(ps)))
	var order []uint32
	for _, x := range ps {
		ix := mc.cells[x.p]
		order = order[:0]
		for i := range ix.Len() {
			if mc.counts[x.p][i] > 0 { // 0: shed over the memory budget
				order = append(order, uint32(i))
			}
		}
		slices.SortFunc(order, func(a, b uint32) int {
			ca, cb := ix.Cell(a), ix.Cell(b)
			if ca < cb {
				return -1
			}
			if ca > cb {
				return 1
			}
			return 0
		})
		dst = append(dst, x.u[:]...)
		dst = binary.AppendUvarint(dst, uint64(len(order)))
		prev := uint64(0)
		for _, i := range order {
			c := ix.Cell(i)
			dst = binary.AppendUvarint(dst, c-prev)
			dst = binary.AppendUvarint(dst, uint64(mc.counts[x.p][i]))
			prev = c
		}
	}
	return dst
}

// decodeCounts fills mc (reset) from a count record, giving products codes.
func decodeCounts(b []byte, mc *minuteCounts, m int64, products *encode.Products) error {
	r := wire.Reader{B: b}
	mc.minute = m
	np := r.Uvarint()
	if np > encode.MaxProducts {
		return errCorrupt
	}
	for range np {
		u := r.UUID()
		code, err := products.Code(u)
		if err != nil {
			return fmt.Errorf("checkpoint counts of minute %d: %w", m, err)
		}
		n := r.Uvarint()
		if n > 1<<28 {
			return errCorrupt
		}
		ix := cellindex.New(int(n))
		mc.cells[code] = ix
		cell := uint64(0)
		for range n {
			cell += r.Uvarint()
			k := ix.Insert(cell)
			if int(k) == len(mc.counts[code]) {
				mc.counts[code] = append(mc.counts[code], 0)
			}
			mc.counts[code][k] += int32(r.Uvarint())
		}
	}
	if !r.Done() {
		return errCorrupt
	}
	return nil
}

// stateFor is what the closer stages with minute m's rows.
func (a *closer) stateFor(m int64, mc *minuteCounts, cp []byte) sink.State {
	a.countsBuf = appendCounts(a.countsBuf[:0], mc, a.products, m)
	// Keep what the last checkpoint needs: a minute can commit without
	// one (when a later minute of its close carries it), and a restart
	// then resumes from the previous checkpoint.
	keep := int64(0)
	if a.cpClosed != NoMinute {
		keep = a.cpClosed - int64(a.maxW) + 2
	}
	return sink.State{Counts: a.countsBuf, Checkpoint: cp, KeepFrom: keep, Clock: min(a.clock, m)}
}
