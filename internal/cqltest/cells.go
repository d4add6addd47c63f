package cqltest

import (
	"bytes"
	"slices"
)

// Cells, timestamps and tombstones, as a Cassandra replica keeps them.
//
// Every regular cell carries the write timestamp of the statement that
// wrote it (USING TIMESTAMP, else the protocol's default timestamp, else
// the server's clock in microseconds), and a cell written with a TTL its
// expiry. Two writes of one cell reconcile by db/rows/Cells.java
// reconcile: the higher timestamp wins whatever the order of arrival; on a
// tie a tombstone or an expiring cell beats a live one, a tombstone an
// expiring cell, then the later deletion time, then the greater value. An
// INSERT also writes the row's primary key liveness (the row marker), so
// a row INSERTed with only its key exists; an UPDATE does not.
//
// Deletes are tombstones with the statement's timestamp: of a partition,
// of a row, of a clustering range, or of cells (DELETE c FROM ...; writing
// null is one too). A deletion shadows every cell whose timestamp is not
// above its own (db/DeletionTime.deletes: timestamp <= markedForDeleteAt),
// so a delete wins a tie, and a write that arrives after a delete with an
// older timestamp stays deleted. Shadowed cells are dropped as soon as
// they are shadowed (a compaction's work, done at once), so a stored cell
// is never shadowed by a stored deletion.
//
// An expired cell is a tombstone. Reads count the tombstones they pass
// (db/ReadCommand.java: every expired or deleted cell of a row in the
// slice read, a row deletion, each bound of a range deletion): past
// Config.TombstoneWarnThreshold the answer carries a warning, past
// Config.TombstoneFailureThreshold the read fails with READ_FAILURE
// (TombstoneOverwhelmingException). A tombstone stops being kept and
// counted gc_grace_seconds after its deletion time (after its expiry for
// an expired cell) only with Config.PurgeTombstones, as if a compaction
// then purged it at once: the most a real node can do. By default it is
// kept for ever, as on a partition whose sstables all overlap.

// cell is one regular column's state in a row.
type cell struct {
	v   []byte // the value (nil for a tombstone)
	ts  int64  // write timestamp, microseconds
	ldt int64  // unix ns: a tombstone's deletion time, an expiring cell's expiry; 0 for a live cell without TTL
	ok  bool   // written: false is no cell at all
	del bool   // a tombstone (null written, or deleted)
}

// live reports whether c holds a value at now.
func (c *cell) live(now int64) bool { return c.ok && !c.del && (c.ldt == 0 || now < c.ldt) }

// dead reports whether c is a tombstone at now: deleted or expired.
func (c *cell) dead(now int64) bool { return c.ok && (c.del || (c.ldt != 0 && now >= c.ldt)) }

// reconcile returns which of two writes of a cell wins, as
// db/rows/Cells.java resolveRegular.
func reconcile(a, b cell) cell {
	switch {
	case !a.ok:
		return b
	case !b.ok:
		return a
	case a.ts != b.ts:
		if a.ts > b.ts {
			return a
		}
		return b
	}
	aDel, bDel := a.ldt != 0 || a.del, b.ldt != 0 || b.del // expiring or tombstone
	if aDel || bDel {
		if aDel != bDel {
			if aDel {
				return a
			}
			return b
		}
		if a.del != b.del {
			if a.del {
				return a
			}
			return b
		}
		if a.ldt != b.ldt {
			if a.ldt > b.ldt {
				return a
			}
			return b
		}
	}
	if bytes.Compare(a.v, b.v) >= 0 {
		return a
	}
	return b
}

// deletion is a tombstone of a partition, a row or a range: it shadows
// cells with a timestamp up to ts.
type deletion struct {
	ts  int64
	ldt int64 // unix ns, when it was written
	ok  bool
}

func (d deletion) shadows(ts int64) bool { return d.ok && ts <= d.ts }

// newer returns the deletion that shadows more: the higher timestamp.
func newer(a, b deletion) deletion {
	if !a.ok || (b.ok && b.ts > a.ts) {
		return b
	}
	return a
}

type row struct {
	cells  []cell // indexed like the table's cols; key columns hold their value only
	marker cell   // primary key liveness (INSERT), no value
	del    deletion
}

// rangeDeletion deletes the rows matching rs (clustering restrictions).
type rangeDeletion struct {
	rs  []restriction
	del deletion
}

type partition struct {
	key    [][]byte // partition key components
	rows   []*row   // sorted by clustering key
	del    deletion
	ranges []rangeDeletion
	// purgeAt is the earliest time (unix ns) a tombstone or expired
	// cell here may be purged; 0: none.
	purgeAt int64
}

// rowLive reports whether r has a live cell or a live row marker.
func (t *table) rowLive(r *row, now int64) bool {
	if r.marker.live(now) {
		return true
	}
	for _, i := range t.regular() {
		if r.cells[i].live(now) {
			return true
		}
	}
	return false
}

// regular are the indexes of the columns that are not key columns.
func (t *table) regular() []int { return t.regularIdx }

// value is column c of r as a read returns it: nil unless live.
func (t *table) value(r *row, c int, now int64) []byte {
	if t.cols[c].kind <= colClustering {
		return r.cells[c].v
	}
	if cl := &r.cells[c]; cl.live(now) {
		return cl.v
	}
	return nil
}

// rowDeletion is the deletion covering r in p: the partition's, the row's
// own and any range's that matches it, whichever is newest.
func (t *table) rowDeletion(p *partition, r *row) deletion {
	d := newer(p.del, r.del)
	for _, rd := range p.ranges {
		if rd.del.ts > d.ts || !d.ok {
			if t.rowMatches(r, rd.rs, 0) {
				d = newer(d, rd.del)
			}
		}
	}
	return d
}

// getPartition returns the partition at key, created when absent.
func (t *table) getPartition(key string, pk [][]byte) *partition {
	p := t.parts[key]
	if p == nil {
		p = &partition{key: pk}
		t.parts[key] = p
	}
	return p
}

// getRow returns the row of p whose key is in cells (only its key cells
// are read), created with cells itself when absent (the caller gives it
// up then).
func (t *table) getRow(p *partition, cells []cell) (r *row, created bool) {
	probe := &row{cells: cells}
	i, found := slices.BinarySearchFunc(p.rows, probe, t.compareCK)
	if found {
		return p.rows[i], false
	}
	p.rows = slices.Insert(p.rows, i, probe)
	t.rows++
	return probe, true
}

// write applies an INSERT (marker.ok) or UPDATE of the row whose key is
// in cells, written cells marked ok, in the partition at key. Cells a
// deletion already covers are dropped. Callers hold t.mu.
func (t *table) write(key string, pk [][]byte, cells []cell, marker cell, now int64) {
	p := t.getPartition(key, pk)
	t.purge(p, now)
	r, created := t.getRow(p, cells)
	d := t.rowDeletion(p, r)
	if created {
		for _, i := range t.regular() {
			if c := &r.cells[i]; c.ok && d.shadows(c.ts) {
				*c = cell{}
			}
		}
	} else {
		for _, i := range t.regular() {
			if c := cells[i]; c.ok && !d.shadows(c.ts) {
				r.cells[i] = reconcile(r.cells[i], c)
			}
		}
	}
	if marker.ok && !d.shadows(marker.ts) {
		r.marker = reconcile(r.marker, marker)
	}
	for _, i := range t.regular() {
		t.notePurge(p, r.cells[i].ldt)
	}
	t.notePurge(p, r.marker.ldt)
	if created && !r.marker.ok && !r.del.ok && !t.anyCell(r) {
		t.dropRow(p, r) // every cell it brought was already deleted
	}
}

func (t *table) anyCell(r *row) bool {
	for _, i := range t.regular() {
		if r.cells[i].ok {
			return true
		}
	}
	return false
}

func (t *table) dropRow(p *partition, r *row) {
	if i := slices.Index(p.rows, r); i >= 0 {
		p.rows = slices.Delete(p.rows, i, i+1)
		t.rows--
	}
}

// notePurge records that something with deletion (or expiry) time ldt is
// in p.
func (t *table) notePurge(p *partition, ldt int64) {
	if ldt == 0 || !t.purgeOK {
		return
	}
	at := ldt + t.gcGrace*1e9
	if p.purgeAt == 0 || at < p.purgeAt {
		p.purgeAt = at
	}
}

// purgeable reports whether a tombstone of deletion time ldt is past
// gc_grace_seconds at now, on a server that purges (Config.PurgeTombstones).
func (t *table) purgeable(ldt, now int64) bool {
	return t.purgeOK && ldt != 0 && ldt+t.gcGrace*1e9 <= now
}

// shadow applies deletion d to the rows of p that match (all rows when
// match is nil): the cells it covers go. Callers hold t.mu.
func (t *table) shadow(p *partition, d deletion, match func(*row) bool) {
	kept := p.rows[:0]
	for _, r := range p.rows {
		if match == nil || match(r) {
			for _, i := range t.regular() {
				if d.shadows(r.cells[i].ts) && r.cells[i].ok {
					r.cells[i] = cell{}
				}
			}
			if d.shadows(r.marker.ts) && r.marker.ok {
				r.marker = cell{}
			}
			if d.shadows(r.del.ts) {
				r.del = deletion{} // the newer deletion stands for it
			}
			if !r.marker.ok && !r.del.ok && !t.anyCell(r) {
				continue
			}
		}
		kept = append(kept, r)
	}
	t.rows -= len(p.rows) - len(kept)
	clear(p.rows[len(kept):])
	p.rows = kept
}

// deletePartition deletes the whole partition at d.
func (t *table) deletePartition(p *partition, d deletion) {
	if p.del.ok && p.del.ts >= d.ts {
		return
	}
	p.del = d
	t.shadow(p, d, nil)
	p.ranges = slices.DeleteFunc(p.ranges, func(rd rangeDeletion) bool { return rd.del.ts <= d.ts })
	t.notePurge(p, d.ldt)
}

// deleteRow deletes the row whose key is in cells (a new slice, kept if
// the row is absent): the row stays as a tombstone, so that older writes
// arriving later stay deleted.
func (t *table) deleteRow(p *partition, cells []cell, d deletion) {
	r, _ := t.getRow(p, cells)
	if r.del.ok && r.del.ts >= d.ts {
		return
	}
	for _, i := range t.regular() {
		if c := &r.cells[i]; c.ok && d.shadows(c.ts) {
			*c = cell{}
		}
	}
	if r.marker.ok && d.shadows(r.marker.ts) {
		r.marker = cell{}
	}
	r.del = d
	t.notePurge(p, d.ldt)
}

// deleteRange deletes the rows matching the clustering restrictions rs.
// A range that an older one of the same shape covers replaces it, so a
// partition deleted below a rising bound again and again (the sink's
// engine state) keeps one range deletion, as a memtable's
// RangeTombstoneList merges them.
func (t *table) deleteRange(p *partition, rs []restriction, d deletion) {
	t.shadow(p, d, func(r *row) bool { return t.rowMatches(r, rs, 0) })
	p.ranges = slices.DeleteFunc(p.ranges, func(rd rangeDeletion) bool {
		return rd.del.ts <= d.ts && t.covers(rs, rd.rs)
	})
	p.ranges = append(p.ranges, rangeDeletion{rs: rs, del: d})
	t.notePurge(p, d.ldt)
}

// covers reports whether every row matching b matches a, for
// restrictions of the same columns and operators: equal values, or a
// bound at least as wide.
func (t *table) covers(a, b []restriction) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.col != y.col || x.op != y.op || len(x.vals) != len(y.vals) {
			return false
		}
		typ := t.cols[x.col].typ
		switch x.op {
		case "<", "<=":
			if compareValues(typ, x.vals[0], y.vals[0]) < 0 {
				return false
			}
		case ">", ">=":
			if compareValues(typ, x.vals[0], y.vals[0]) > 0 {
				return false
			}
		default:
			for j := range x.vals {
				if !bytesEqual(x.vals[j], y.vals[j]) {
					return false
				}
			}
		}
	}
	return true
}

// purge drops what gc_grace_seconds allows, once p.purgeAt has passed:
// expired cells, tombstones, rows left with nothing. Callers hold t.mu.
func (t *table) purge(p *partition, now int64) {
	if p.purgeAt == 0 || now < p.purgeAt {
		return
	}
	p.purgeAt = 0
	if p.del.ok && t.purgeable(p.del.ldt, now) {
		p.del = deletion{}
	}
	t.notePurge(p, p.del.ldt)
	p.ranges = slices.DeleteFunc(p.ranges, func(rd rangeDeletion) bool { return t.purgeable(rd.del.ldt, now) })
	for _, rd := range p.ranges {
		t.notePurge(p, rd.del.ldt)
	}
	kept := p.rows[:0]
	for _, r := range p.rows {
		for _, i := range t.regular() {
			c := &r.cells[i]
			if c.dead(now) && t.purgeable(c.ldt, now) {
				*c = cell{}
			}
			t.notePurge(p, c.ldt)
		}
		if r.marker.dead(now) && t.purgeable(r.marker.ldt, now) {
			r.marker = cell{}
		}
		t.notePurge(p, r.marker.ldt)
		if r.del.ok && t.purgeable(r.del.ldt, now) {
			r.del = deletion{}
		}
		t.notePurge(p, r.del.ldt)
		if !r.marker.ok && !r.del.ok && !t.anyCell(r) {
			continue
		}
		kept = append(kept, r)
	}
	t.rows -= len(p.rows) - len(kept)
	clear(p.rows[len(kept):])
	p.rows = kept
}

// rowTombstones counts the tombstones a read passes in r, as
// db/ReadCommand.java's countTombstone: each expired or deleted cell, or
// the row deletion (or an expired row marker) of a row without live data
// and without such a cell; none past gc_grace_seconds.
func (t *table) rowTombstones(r *row, now int64) int {
	n := 0
	for _, i := range t.regular() {
		if c := &r.cells[i]; c.dead(now) && !t.purgeable(c.ldt, now) {
			n++
		}
	}
	if n > 0 || t.rowLive(r, now) {
		return n
	}
	if (r.del.ok && !t.purgeable(r.del.ldt, now)) || (r.marker.dead(now) && !t.purgeable(r.marker.ldt, now)) {
		return 1
	}
	return 0
}

// rangeTombstones counts the bounds (two each, open and close) of p's
// range deletions a read of the slice restricted by rs passes: all of
// them unless rs names one row that a range does not cover.
func (t *table) rangeTombstones(p *partition, rs []restriction, now int64) int {
	if len(p.ranges) == 0 {
		return 0
	}
	probe := t.probeRow(rs)
	n := 0
	for _, rd := range p.ranges {
		if t.purgeable(rd.del.ldt, now) || (probe != nil && !t.rowMatches(probe, rd.rs, now)) {
			continue
		}
		n += 2
	}
	return n
}

// probeRow is the one row rs names by = on every clustering column (nil
// when it names a slice).
func (t *table) probeRow(rs []restriction) *row {
	if len(t.ck) == 0 {
		return nil
	}
	r := &row{cells: make([]cell, len(t.cols))}
	for _, i := range t.ck {
		found := false
		for _, res := range rs {
			if res.col == i && res.op == "=" && len(res.vals) == 1 {
				r.cells[i], found = cell{v: res.vals[0], ok: true}, true
			}
		}
		if !found {
			return nil
		}
	}
	return r
}
