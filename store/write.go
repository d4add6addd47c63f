package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/sink"
)

var _ sink.Writer = (*Store)(nil)

// writer is the state of the single writer goroutine.
type writer struct {
	s      *Store
	batch  *pebble.Batch
	minute int64 // minute of the open batch, -1 when none
	rows   int

	// runCodes caches the store code of each run code of runNames
	// (-1: not looked up yet), so a row costs an array load, not a map
	// lookup of its UUID.
	runNames    *encode.Products
	runGen      uint64
	runMinute   int64
	runCodes    [encode.MaxProducts]int16
	state       *sink.State // engine state staged for the open minute
	stateMinute int64
	countsFrom  int64        // count records below this were deleted
	parts       []stagedPart // parts' state staged for partsMinute (parts.go)
	partsMinute int64
	pending     []pendingProduct         // products given a code in the open batch
	used        [encode.MaxProducts]bool // codes with rows in the open minute
	// last is each code's newest minute with rows, for code reuse (-1:
	// unknown, from a store written before it was recorded: taken as the
	// newest minute at open). The writer's alone: readers never need it.
	last [encode.MaxProducts]int64

	latest int64 // newest closed minute, -1 when none
	cutoff int64 // minutes below cutoff are deleted
	// clock is what retention follows: the newest minute closed by event
	// time (sink.State.Clock), which the last riders of a finite input
	// cannot move; the newest closed minute for a writer without state.
	clock int64
	// reuseCutoff: the cutoff a product code reused in the open minute
	// needs (productCode), enforced by its commit.
	reuseCutoff int64
	compacted   int64 // expired ranges below this were compacted

	key, val []byte
	bytes    int64 // encoded bytes of the open minute

	compacting atomic.Bool
	ctx        context.Context
	cancel     context.CancelFunc

	stats sink.Stats
}

func (w *writer) init(s *Store) {
	w.s = s
	w.minute = -1
	w.latest, w.cutoff = -1, 0
	if mins := *s.minutes.Load(); len(mins) > 0 {
		w.latest = mins[0].Minute
		w.cutoff = mins[len(mins)-1].Minute
	}
	w.clock = w.latest // a store written before the clock was kept
	if v, ok, err := s.getCopy([]byte{tagClock}); err == nil && ok {
		if c, n := binary.Varint(v); n == len(v) && n > 0 {
			w.clock = c
		}
	}
	w.compacted = w.cutoff
	w.ctx, w.cancel = context.WithCancel(context.Background())
}

// begin opens the batch of minute m. If m was closed before (a replay after
// a restart), the batch starts by deleting its old rows, so the new
// commit replaces the minute whole instead of mixing two runs' rows.
func (w *writer) begin(m int64) error {
	if m < 0 || m > encode.MaxMinute {
		return fmt.Errorf("store: minute %d out of range 0..%d", m, encode.MaxMinute)
	}
	if w.minute >= 0 {
		return fmt.Errorf("store: minute %d written before minute %d was closed", m, w.minute)
	}
	if w.s.cfg.ReadOnly {
		return fmt.Errorf("store %s: opened read-only", w.s.cfg.Dir)
	}
	if err := w.s.faults.Err(); err != nil {
		return err
	}
	if err := w.admit(m); err != nil {
		return err
	}
	w.minute, w.rows, w.bytes = m, 0, 0
	if w.batch == nil {
		w.batch = w.s.db.NewBatch(pebble.WithMaxRetainedSizeBytes(64 << 20))
	}
	if w.s.isClosedMinute(m) {
		lo := encode.AppendMinuteKey([]byte{tagRow}, m)
		hi := encode.AppendMinuteKey([]byte{tagRow}, m+1)
		if err := w.batch.DeleteRange(lo, hi, nil); err != nil {
			return err
		}
	}
	return nil
}

// admit refuses a minute the store would not keep (behind the retention
// window) and one that would move the retention clock past the machine's
// clock (far ahead): never silently, since the run must stop and say so.
func (w *writer) admit(m int64) error {
	cfg := w.s.cfg
	if w.latest >= 0 && m < w.cutoff {
		return fmt.Errorf("store %s: minute %s is older than the store's retention window %s..%s (-store.retention=%s behind its newest minute), so it would be deleted at once: write to another store (-sink=store:NEWDIR), widen -store.retention, or remove %s to start over",
			cfg.Dir, fmtMinute(m), fmtMinute(w.cutoff), fmtMinute(w.latest), cfg.Retention, cfg.Dir)
	}
	now := cfg.Now()
	if start := time.Unix(m*60, 0); start.Sub(now) > cfg.MaxAhead {
		return fmt.Errorf("store %s: minute %s starts %s after this machine's clock (%s), more than -store.max-ahead=%s: refusing it so that it cannot move the retention clock and expire every real minute (check the input's timestamps and the machine's clock)",
			cfg.Dir, fmtMinute(m), start.Sub(now).Round(time.Second), now.UTC().Format(time.RFC3339), cfg.MaxAhead)
	}
	return nil
}

func fmtMinute(m int64) string { return time.Unix(m*60, 0).UTC().Format("2006-01-02T15:04Z") }

// StageState keeps st to commit with minute m (sink.Checkpointer).
func (s *Store) StageState(m int64, st sink.State) {
	s.w.state, s.w.stateMinute = &st, m
}

// LoadState returns the last committed checkpoint and a reader of minutes'
// count records (sink.Checkpointer).
func (s *Store) LoadState() ([]byte, func(m int64) ([]byte, bool, error), error) {
	cp, ok, err := s.getCopy([]byte{tagCheckpoint})
	if err != nil || !ok {
		return nil, nil, err
	}
	return cp, func(m int64) ([]byte, bool, error) {
		return s.getCopy(encode.AppendMinuteKey([]byte{tagCounts}, m))
	}, nil
}

// getCopy returns a copy of key's value; false when there is none.
func (s *Store) getCopy(key []byte) ([]byte, bool, error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("store %s: %w", s.cfg.Dir, err)
	}
	defer closer.Close()
	return slices.Clone(v), true, nil
}

var _ sink.Checkpointer = (*Store)(nil)

type pendingProduct struct {
	code byte
	uuid encode.UUID
}

// Write adds the rows of b to the open minute's batch.
func (s *Store) Write(_ context.Context, b *encode.Batch) error {
	w := &s.w
	if b.NumFeatures != s.nf {
		return fmt.Errorf("store: batch rows have %d features, the store's definition %q has %d", b.NumFeatures, s.def, s.nf)
	}
	if w.minute != b.Minute {
		if err := w.begin(b.Minute); err != nil {
			return err
		}
	}
	n := b.Len()
	// The cache holds while run codes keep their owners: the same
	// registry, no reassignment since, and (when a code has had another
	// owner) the same minute.
	if b.Names != w.runNames || b.Names.Gen() != w.runGen || (w.runGen > 0 && b.Minute != w.runMinute) {
		w.runNames, w.runGen, w.runMinute = b.Names, b.Names.Gen(), b.Minute
		for i := range w.runCodes {
			w.runCodes[i] = -1
		}
	}
	for i := range n {
		rc := b.Products[i]
		code := w.runCodes[rc]
		if code < 0 {
			c, err := w.productCode(b.UUID(i))
			if err != nil {
				return err
			}
			code = int16(c)
			w.runCodes[rc] = code
		}
		w.used[code] = true // every row: the cache hits after the first minute
		w.key = encode.AppendRowKey(append(w.key[:0], tagRow), b.Minute, byte(code), b.Cells[i])
		w.val = encode.AppendRowValue(w.val[:0], b.Row(i))
		if err := w.batch.Set(w.key, w.val, nil); err != nil {
			return fmt.Errorf("store: %w", err)
		}
		w.bytes += int64(len(w.key) + len(w.val))
	}
	w.rows += n
	return nil
}

// productCode returns u's persistent code, adding it to the open batch when
// new, so the code and the rows that use it commit together. Past 256 codes
// it reuses the code of a product whose rows have all expired (its last
// minute is below the retention cutoff, so no listed minute names it): a
// long-lived store cannot run out of codes, only of products active within
// its retention at once.
func (w *writer) productCode(u encode.UUID) (byte, error) {
	pt := w.s.products.Load()
	for _, p := range w.pending {
		if p.uuid == u {
			return p.code, nil
		}
	}
	if c, ok := pt.codes[u]; ok && !w.pendingCode(c) {
		return c, nil
	}
	var code byte
	if n := len(pt.uuids) + w.fresh(); n < encode.MaxProducts {
		code = byte(n)
	} else {
		// The cutoff once the open minute commits: the minutes it expires
		// are unlisted in the same commit that publishes the reuse. (A
		// minute that does not move the retention clock, the last riders
		// of an input, still expires what a reuse needs: reuseCutoff.)
		cutoff := max(w.cutoff, max(w.clock, w.minute)-w.s.cfg.retentionMinutes()+1)
		found := false
		for c := range encode.MaxProducts {
			if w.last[c] < cutoff && !w.pendingCode(byte(c)) {
				code, found = byte(c), true
				w.reuseCutoff = max(w.reuseCutoff, cutoff)
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("store %s: product %s would be the 257th product with rows within the retention (-store.retention=%s); product codes are one byte: shorten -store.retention or use a new store directory", w.s.cfg.Dir, u, w.s.cfg.Retention)
		}
	}
	w.pending = append(w.pending, pendingProduct{code: code, uuid: u})
	return code, nil
}

// fresh counts the pending products that take a never-used code.
func (w *writer) fresh() int {
	n, used := 0, len(w.s.products.Load().uuids)
	for _, p := range w.pending {
		if int(p.code) >= used {
			n++
		}
	}
	return n
}

func (w *writer) pendingCode(c byte) bool {
	for _, p := range w.pending {
		if p.code == c {
			return true
		}
	}
	return false
}

// CloseMinute commits minute m: its rows, its marker, new product codes and
// any retention range deletes, in one atomic batch, synced to the WAL when
// Config.Sync. A minute with no rows is closed too.
func (s *Store) CloseMinute(_ context.Context, m int64) error {
	w := &s.w
	if w.minute != m {
		if err := w.begin(m); err != nil {
			return err
		}
	}
	start := time.Now()
	closedMS := start.UnixMilli()
	w.key = markerKey(w.key[:0], m)
	w.val = appendMarker(w.val[:0], w.rows, closedMS)
	if err := w.batch.Set(w.key, w.val, nil); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	// The engine's resume state, in the same atomic commit as the rows.
	if st := w.state; st != nil && w.stateMinute == m {
		if len(st.Counts) > 0 {
			if err := w.batch.Set(encode.AppendMinuteKey([]byte{tagCounts}, m), st.Counts, nil); err != nil {
				return fmt.Errorf("store: %w", err)
			}
		}
		if st.Checkpoint != nil {
			if err := w.batch.Set([]byte{tagCheckpoint}, st.Checkpoint, nil); err != nil {
				return fmt.Errorf("store: %w", err)
			}
		}
		if st.KeepFrom > w.countsFrom {
			lo := encode.AppendMinuteKey([]byte{tagCounts}, max(w.countsFrom, 0))
			if err := w.batch.DeleteRange(lo, encode.AppendMinuteKey([]byte{tagCounts}, min(st.KeepFrom, encode.MaxMinute)), nil); err != nil {
				return fmt.Errorf("store: %w", err)
			}
			w.countsFrom = st.KeepFrom
		}
	}
	clock := max(w.clock, m)
	if st := w.state; st != nil && w.stateMinute == m {
		clock = max(w.clock, min(m, st.Clock))
	}
	if clock != w.clock {
		if err := w.batch.Set([]byte{tagClock}, binary.AppendVarint(w.val[:0], clock), nil); err != nil {
			return fmt.Errorf("store: %w", err)
		}
	}
	w.state = nil
	if err := w.commitParts(m); err != nil {
		return err
	}
	// Each product's last minute, for code reuse (productCode): one entry
	// per product with rows in m, committed with them.
	pt := w.s.products.Load()
	for c, used := range w.used {
		if !used {
			continue
		}
		u := w.uuidOf(pt, byte(c))
		if err := w.batch.Set([]byte{tagProduct, byte(c)}, appendProduct(w.val[:0], u, m), nil); err != nil {
			return fmt.Errorf("store: %w", err)
		}
	}
	newLatest := max(w.latest, m)
	newCutoff := max(w.cutoff, clock-s.cfg.retentionMinutes()+1, w.reuseCutoff)
	expired := 0
	if newCutoff > w.cutoff {
		if err := w.expire(w.cutoff, newCutoff); err != nil {
			return err
		}
		// Unlist the expiring minutes before their rows go: a reader checks
		// its minute is still listed after reading (read.go), so it never
		// returns rows of a minute deleted under it as zeros.
		expired = s.publishMinute(nil, newCutoff)
	}
	if err := checkFree(s.vfs, s.cfg.Dir, s.cfg.MinFreeBytes); err != nil {
		s.faults.fail(err)
		return s.faults.Err()
	}
	// The batch by value: after a failure guard returns while pebble may
	// still be applying it, and w.batch is cleared below.
	batch := w.batch
	if err := s.faults.guard(func() error { return s.db.Apply(batch, s.wo) }); err != nil {
		if ferr := s.faults.Err(); ferr != nil {
			w.batch = nil // pebble may still hold it: never reuse
			return fmt.Errorf("commit minute %s: %w", fmtMinute(m), ferr)
		}
		return fmt.Errorf("store: commit minute %d: %w", m, err)
	}
	// Reuse the batch's buffer next minute (NewBatch retains up to 64 MB;
	// pebble's default keeps 1 MB): a dense minute's batch is ~3 MB, grown
	// from scratch every minute otherwise. Measured per 20k-row minute:
	// 13.7 MB allocated without reuse, 5.2 MB with (memtables, mostly).
	w.batch.Reset()
	s.met.commitSeconds.Observe(time.Since(start).Seconds())

	// Publish to readers: products first, so a reader that sees the minute
	// can resolve every code its rows use.
	for c, used := range w.used {
		if used {
			w.last[c] = m
		}
	}
	clear(w.used[:])
	if len(w.pending) > 0 {
		old := s.products.Load()
		t := &productTable{uuids: slices.Clone(old.uuids), codes: make(map[encode.UUID]byte, len(old.codes)+len(w.pending))}
		for u, c := range old.codes {
			t.codes[u] = c
		}
		for _, p := range w.pending {
			if int(p.code) < len(t.uuids) {
				delete(t.codes, t.uuids[p.code]) // a reused code: its old product's rows have expired
				t.uuids[p.code] = p.uuid
			} else {
				t.uuids = append(t.uuids, p.uuid)
			}
			t.codes[p.uuid] = p.code
		}
		s.products.Store(t)
		w.pending = w.pending[:0]
	}
	s.publishMinute(&MinuteInfo{Minute: m, Rows: w.rows, ClosedMS: closedMS}, newCutoff)

	s.met.minutesExpired.Add(float64(expired))
	s.met.rowsWritten.Add(float64(w.rows))
	s.met.minutesClosed.Inc()
	w.stats.Rows += int64(w.rows)
	w.stats.Minutes++
	w.stats.Bytes += w.bytes
	s.met.bytesWritten.Add(float64(w.bytes))
	w.latest, w.cutoff, w.clock, w.reuseCutoff = newLatest, newCutoff, clock, 0
	w.minute, w.rows = -1, 0
	if w.cutoff-w.compacted >= int64(s.cfg.CompactEvery) && s.compact(w.compacted, w.cutoff) {
		w.compacted = w.cutoff
	}
	return nil
}

// expire adds range deletes of minutes [lo, hi) (rows and markers) to the
// open batch: two tombstones per commit that moves the cutoff, never a
// delete per row.
func (w *writer) expire(lo, hi int64) error {
	for _, tag := range []byte{tagRow, tagMinute} {
		if err := w.batch.DeleteRange(encode.AppendMinuteKey([]byte{tag}, lo), encode.AppendMinuteKey([]byte{tag}, hi), nil); err != nil {
			return fmt.Errorf("store: %w", err)
		}
	}
	return nil
}

// compact compacts expired ranges [lo, hi) in the background, one at a
// time. It reports whether it started: if one is still running, the range
// is retried at the next commit, widened by then.
func (s *Store) compact(lo, hi int64) bool {
	if !s.w.compacting.CompareAndSwap(false, true) {
		return false
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer s.w.compacting.Store(false)
		var err error
		for _, tag := range []byte{tagMinute, tagRow} {
			e := s.db.Compact(s.w.ctx, encode.AppendMinuteKey([]byte{tag}, lo), encode.AppendMinuteKey([]byte{tag}, hi), false)
			err = errors.Join(err, e)
		}
		if err != nil && s.w.ctx.Err() == nil {
			quietLogger{}.Errorf("compacting expired minutes %d..%d: %v", lo, hi, err)
			return
		}
		s.met.compactions.Inc()
	}()
	return true
}

// publishMinute adds mi (if not nil) to the readers' list of closed minutes
// and drops those below cutoff; the list is replaced, never edited, so
// readers need no lock. It returns how many minutes it dropped.
func (s *Store) publishMinute(mi *MinuteInfo, cutoff int64) (dropped int) {
	old := *s.minutes.Load()
	out := make([]MinuteInfo, 0, len(old)+1)
	for _, o := range old {
		if mi != nil && mi.Minute >= o.Minute {
			out = append(out, *mi)
			mi = nil
			if out[len(out)-1].Minute == o.Minute {
				continue
			}
		}
		if o.Minute >= cutoff {
			out = append(out, o)
		} else {
			dropped++
		}
	}
	if mi != nil {
		out = append(out, *mi)
	}
	s.minutes.Store(&out)
	return dropped
}

// discard drops an open minute at Close.
func (w *writer) discard() {
	if w.minute >= 0 {
		w.s.met.rowsDropped.Add(float64(w.rows))
		w.minute, w.rows = -1, 0
	}
	if w.batch != nil {
		w.batch.Close()
		w.batch = nil
	}
}

// Stats reports what was committed: rows, minutes and encoded bytes.
// Call it from the writer goroutine or after Close.
func (s *Store) Stats() sink.Stats { return s.w.stats }

// uuidOf is code c's product: pending in the open batch, or stored.
func (w *writer) uuidOf(pt *productTable, c byte) encode.UUID {
	for _, p := range w.pending {
		if p.code == c {
			return p.uuid
		}
	}
	return pt.uuids[c]
}
