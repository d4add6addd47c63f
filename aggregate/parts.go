package aggregate

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/demandpipe/demandpipe/internal/cellindex"
	"github.com/demandpipe/demandpipe/internal/wire"
	"github.com/demandpipe/demandpipe/sink"
)

// Parts: an Aggregator's state kept per part (SCALEOUT.md, "Recovery").
//
// The scale-out's aggregate role receives its events in parts (the key
// slots of the internal topic), and a part can move to another process,
// after a crash or when the deployment changes. So at every close it
// commits, per part it owns, what that part's events were in the minute
// (a count record, as a single process commits for all its events) and a
// checkpoint saying the part is complete through the minute, both with the
// minute's rows (sink.PartCheckpointer). A process taking parts restores
// from them: C, the lowest minute its parts are complete through, is where
// its windows restart (smoothing again the counts of C-maxW+2..C, as after
// a single process's crash); a part complete through C_p > C gives the
// counts of its minutes C+1..C_p, whose messages are acknowledged and gone;
// and events of a message that comes again are dropped when their part is
// complete through their minute already.
//
// An event reaching several owned parts arrives once per part and counts
// once, from the part PartConfig.CountFrom names (the lowest owned one); a
// part's count record holds all its events, so that whichever parts a later
// owner holds, it finds each source once.

// PartConfig makes an Aggregator keep its state per part.
type PartConfig struct {
	// Names are the parts' names in the sink, by part number.
	Names []string
	// Owned lists the parts this process owns.
	Owned []int
	// Layout names how events were split into parts (stored in each
	// checkpoint; a restore under another layout is refused).
	Layout string
	// Retain is how many minutes a part's count records are kept past what
	// its windows need: parts committed through different minutes (say,
	// by a process that died a while ago and one still running) can be
	// restored together while they are at most Retain minutes apart.
	// Default 60.
	Retain int
	// CountFrom is the owned part an event of cell counts from.
	CountFrom func(cell uint64) (int, error)
}

// DefaultPartRetain is PartConfig.Retain's default.
const DefaultPartRetain = 60

// partState is an Aggregator's per-part bookkeeping.
type partState struct {
	cfg       PartConfig
	snk       sink.PartCheckpointer
	owned     []bool
	committed []int64       // per part: its minutes <= it are in its count records
	open      [][]srcCounts // per part: its events of minutes not committed, per dedup process
	flushed   int64         // open counts of minutes <= it are in the engine's counter
	buf, cp   []byte
	tmp, sum  minuteCounts
}

// srcCounts are one dedup process's events of one minute on one part.
// They stay apart until the minute closes, so that a dedup process that
// starts again (a new epoch, resuming after its checkpoint) can take back
// what it sent after it (DropAbove).
type srcCounts struct {
	src int // the dedup process; restoredSrc for counts read from the sink
	mc  *minuteCounts
}

// loadedPart is a part's checkpoint as Restore loads it.
type loadedPart struct {
	p      int
	closed int64
	counts func(int64) ([]byte, bool, error)
}

// loadParts loads the owned parts' checkpoints and checks they can be
// restored together: the same layout and definition, every part either
// fresh or complete, and none more than Retain minutes past the lowest, c.
func (a *Aggregator) loadParts() (have []loadedPart, c int64, err error) {
	ps := a.parts
	var fresh []string
	for p, own := range ps.owned {
		if !own {
			continue
		}
		raw, counts, err := ps.snk.LoadPartState(ps.cfg.Names[p])
		if err != nil {
			return nil, 0, fmt.Errorf("aggregator: restore part %s: %w", ps.cfg.Names[p], err)
		}
		if raw == nil {
			fresh = append(fresh, ps.cfg.Names[p])
			continue
		}
		layout, config, m, err := decodePartCheckpoint(raw)
		if err != nil {
			return nil, 0, fmt.Errorf("aggregator: restore part %s: %w", ps.cfg.Names[p], err)
		}
		if layout != ps.cfg.Layout {
			return nil, 0, fmt.Errorf("aggregator: part %s was written with layout %q, this process has %q: a deployment keeps its layout (or starts over on a new subscription and sink)", ps.cfg.Names[p], layout, ps.cfg.Layout)
		}
		if config != a.key {
			return nil, 0, fmt.Errorf("aggregator: part %s was written with definition %q, this process has %q", ps.cfg.Names[p], config, a.key)
		}
		have = append(have, loadedPart{p, m, counts})
	}
	if len(have) == 0 {
		return nil, 0, nil
	}
	if len(fresh) > 0 {
		return nil, 0, fmt.Errorf("aggregator: parts %v have no checkpoint while part %s is complete through minute %d: a part that never closed cannot join parts that did (were the slots or the subscription changed?)",
			fresh, ps.cfg.Names[have[0].p], have[0].closed)
	}
	low := slices.MinFunc(have, func(x, y loadedPart) int { return cmp.Compare(x.closed, y.closed) })
	c = low.closed
	for _, l := range have {
		if l.closed-c > int64(ps.cfg.Retain) {
			return nil, 0, fmt.Errorf("aggregator: part %s is complete through minute %d, %d minutes past part %s's minute %d, and keeps its counts for only %d minutes past its windows: restore them in different processes, or widen the retention",
				ps.cfg.Names[l.p], l.closed, l.closed-c, ps.cfg.Names[low.p], c, ps.cfg.Retain)
		}
	}
	return have, c, nil
}

// restoredSrc marks counts restored from a part's records: no dedup
// process takes them back.
const restoredSrc = -1

// partCheckpointVersion changes with encodePartCheckpoint's layout.
const partCheckpointVersion = 1

func encodePartCheckpoint(dst []byte, layout, config string, m int64) []byte {
	dst = binary.AppendUvarint(dst, partCheckpointVersion)
	dst = wire.AppendString(dst, layout)
	dst = wire.AppendString(dst, config)
	return binary.AppendVarint(dst, m)
}

func decodePartCheckpoint(b []byte) (layout, config string, m int64, err error) {
	r := wire.Reader{B: b}
	if v := r.Uvarint(); v != partCheckpointVersion {
		return "", "", 0, fmt.Errorf("part checkpoint version %d, this build reads %d", v, partCheckpointVersion)
	}
	layout, config, m = r.String(), r.String(), r.Varint()
	if r.Err != nil || len(r.B) != 0 {
		return "", "", 0, errCorrupt
	}
	return layout, config, m, nil
}

// UseParts makes the aggregator keep its state per part in snk, which must
// be the sink it writes rows to (nil: a sink that keeps no state; the
// parts are then kept in memory only, and Restore finds nothing). Call it
// before any event.
func (a *Aggregator) UseParts(pc PartConfig, snk sink.PartCheckpointer) error {
	if pc.CountFrom == nil || len(pc.Names) == 0 || len(pc.Owned) == 0 {
		return fmt.Errorf("aggregator: parts need names, owned parts and CountFrom")
	}
	if pc.Retain == 0 {
		pc.Retain = DefaultPartRetain
	}
	if pc.Retain < 0 {
		return fmt.Errorf("aggregator: parts: retain %d minutes, want >= 0", pc.Retain)
	}
	ps := &partState{cfg: pc, snk: snk, owned: make([]bool, len(pc.Names)), flushed: NoMinute,
		committed: make([]int64, len(pc.Names)), open: make([][]srcCounts, len(pc.Names))}
	for i := range ps.committed {
		ps.committed[i] = NoMinute
	}
	for _, p := range pc.Owned {
		if p < 0 || p >= len(pc.Names) {
			return fmt.Errorf("aggregator: owned part %d of %d", p, len(pc.Names))
		}
		ps.owned[p] = true
	}
	a.parts = ps
	a.agg.stageParts = a.stageParts
	return nil
}

// Committed is the minute part p is complete through in the sink
// (NoWatermark if none): after a restore, every dedup process's watermark
// on p is at least it.
func (a *Aggregator) Committed(p int) int64 { return a.parts.committed[p] }

// Closed is the last minute closed and committed (NoWatermark if none).
func (a *Aggregator) Closed() int64 { return a.closed }

// CountedIn counts events dedup process src sent on part p: each is kept
// for p's count record and, when its minute closes, counted once, from the
// part CountFrom names; events of minutes p is complete through already (a
// message that came again) are dropped and reported in dropped.
func (a *Aggregator) CountedIn(src, p int, evs []Counted) (dropped int, err error) {
	ps := a.parts
	r := &a.remote[src]
	for _, c := range evs {
		if !r.told[c.Product] {
			return dropped, fmt.Errorf("aggregator: dedup source %d sent product code %d before naming it", src, c.Product)
		}
		c.Product = r.code[c.Product]
		if c.Minute <= ps.committed[p] {
			dropped++
			continue
		}
		if c.Minute <= a.closed {
			return dropped, fmt.Errorf("aggregator: dedup source %d sent an event of minute %d on part %d, closed already (its watermark said so)", src, c.Minute, p)
		}
		ps.countsOf(p, src, c.Minute).addN(c.Cell, c.Product, 1)
	}
	return dropped, nil
}

// DropAbove takes back what dedup process src sent on part p for minutes
// after w: it started again from its checkpoint at w and sends them again.
func (a *Aggregator) DropAbove(src, p int, w int64) {
	ps := a.parts
	keep := ps.open[p][:0]
	for _, sc := range ps.open[p] {
		if sc.src != src || sc.mc.minute <= w {
			keep = append(keep, sc)
		}
	}
	clear(ps.open[p][len(keep):])
	ps.open[p] = keep
}

// countsOf is part p's counts of minute m from dedup process src.
func (ps *partState) countsOf(p, src int, m int64) *minuteCounts {
	for _, sc := range ps.open[p] {
		if sc.src == src && sc.mc.minute == m {
			return sc.mc
		}
	}
	mc := &minuteCounts{minute: m}
	ps.open[p] = append(ps.open[p], srcCounts{src, mc})
	return mc
}

// flushThrough hands the engine's counter the open counts of minutes <=
// through (in (flushed, through]), each source from the part it counts
// from, before the minutes close.
func (a *Aggregator) flushThrough(through int64) error {
	ps := a.parts
	if through <= ps.flushed {
		return nil
	}
	for p, own := range ps.owned {
		if !own {
			continue
		}
		for _, sc := range ps.open[p] {
			m := sc.mc.minute
			if m <= ps.flushed || m > through {
				continue
			}
			for code, ix := range sc.mc.cells {
				if ix == nil {
					continue
				}
				for i := range ix.Len() {
					cell := ix.Cell(uint32(i))
					from, err := ps.cfg.CountFrom(cell)
					if err != nil {
						return err
					}
					if from == p {
						n := sc.mc.counts[code][i]
						a.agg.addN(Counted{Minute: m, Cell: cell, Product: byte(code)}, n)
						if sc.src != restoredSrc {
							a.Stats.Counted.Add(int64(n))
						}
					}
				}
			}
		}
	}
	ps.flushed = through
	return nil
}

// addN adds n to the count of (cell, product code p).
func (mc *minuteCounts) addN(cell uint64, p byte, n int32) {
	ix := mc.cells[p]
	if ix == nil {
		ix = cellindex.New(64)
		mc.cells[p] = ix
	}
	k := ix.Insert(cell)
	if int(k) == len(mc.counts[p]) {
		mc.counts[p] = append(mc.counts[p], 0)
	}
	mc.counts[p][k] += n
}

// stageParts (the closer's hook) stages each owned part's count record
// of minute m and a checkpoint saying it is complete through m.
func (a *Aggregator) stageParts(m int64) error {
	ps := a.parts
	keep := m - int64(a.agg.maxW) + 2 - int64(ps.cfg.Retain)
	ps.cp = encodePartCheckpoint(ps.cp[:0], ps.cfg.Layout, a.key, m)
	for p, own := range ps.owned {
		if !own {
			continue
		}
		// The part's record: its events of m from every dedup process.
		ps.sum = minuteCounts{minute: m}
		open := ps.open[p][:0]
		for _, sc := range ps.open[p] {
			switch {
			case sc.mc.minute == m:
				for code, ix := range sc.mc.cells {
					if ix != nil {
						for i := range ix.Len() {
							ps.sum.addN(ix.Cell(uint32(i)), byte(code), sc.mc.counts[code][i])
						}
					}
				}
			case sc.mc.minute > m:
				open = append(open, sc)
			}
		}
		clear(ps.open[p][len(open):])
		ps.open[p] = open
		if ps.snk != nil {
			ps.buf = appendCounts(ps.buf[:0], &ps.sum, a.products, m)
			ps.snk.StagePartState(ps.cfg.Names[p], m, sink.State{Counts: ps.buf, Checkpoint: ps.cp, KeepFrom: keep, Clock: min(a.clock, m)})
		}
		ps.committed[p] = max(ps.committed[p], m)
	}
	return nil
}

// Restore rebuilds the state of the owned parts from the sink: the
// windows at C, the lowest minute they are complete through, and the
// counts of their later committed minutes. A fresh deployment (no part
// has a checkpoint) restores nothing.
func (a *Aggregator) Restore(ctx context.Context) error {
	start := time.Now()
	defer func() { a.Stats.RestoreNanos.Store(int64(time.Since(start))) }()
	ps := a.parts
	if ps.snk == nil {
		return nil
	}
	have, c, err := a.loadParts()
	if err != nil || len(have) == 0 {
		return err
	}

	// Each source of a minute is taken from the part it counts from.
	each := func(l loadedPart, m int64, fn func(cell uint64, code byte, n int32)) error {
		rec, ok, err := l.counts(m)
		if err != nil || !ok {
			return err
		}
		ps.tmp = minuteCounts{}
		if err := decodeCounts(rec, &ps.tmp, m, a.products); err != nil {
			return fmt.Errorf("aggregator: part %s minute %d: %w", ps.cfg.Names[l.p], m, err)
		}
		for code, ix := range ps.tmp.cells {
			if ix == nil {
				continue
			}
			for i := range ix.Len() {
				fn(ix.Cell(uint32(i)), byte(code), ps.tmp.counts[code][i])
			}
		}
		return nil
	}
	var ferr error
	mine := func(p int, cell uint64) bool {
		from, err := ps.cfg.CountFrom(cell)
		if err != nil && ferr == nil {
			ferr = err
		}
		return from == p
	}
	merged := func(m int64) ([]byte, bool, error) {
		var mc minuteCounts
		for _, l := range have {
			if err := each(l, m, func(cell uint64, code byte, n int32) {
				if mine(l.p, cell) {
					mc.addN(cell, code, n)
				}
			}); err != nil {
				return nil, false, err
			}
		}
		return appendCounts(nil, &mc, a.products, m), true, ferr
	}
	if err := a.agg.restore(ctx, c, merged); err != nil {
		return err
	}
	a.closed, ps.flushed = c, c
	for _, l := range have {
		for m := c + 1; m <= l.closed; m++ {
			if err := each(l, m, func(cell uint64, code byte, n int32) {
				ps.countsOf(l.p, restoredSrc, m).addN(cell, code, n)
			}); err != nil {
				return err
			}
		}
		ps.committed[l.p] = l.closed
	}
	return ferr
}
