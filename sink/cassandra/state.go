package cassandra

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"slices"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/sink"
)

// Engine state (sink.Checkpointer) and the minutes index.
//
// The contract: StageState(m, st) is committed by CloseMinute(m) strictly
// after minute m's rows. Cassandra has no multi-partition atomic write, so
// CloseMinute orders its writes, each acknowledged before the next starts:
//
//  1. the rows of m (the queue's Flush);
//  2. the minutes row of m (rows, closed time, partitions): readers list m
//     only once its rows are all there; then the deletion of the minutes
//     rows past the retention (m - TTL);
//  3. the count record of m;
//  4. the checkpoint (if st carries one), under a new sequence number;
//  5. deletes: checkpoints below the new sequence, count records below
//     st.KeepFrom.
//
// A crash between any two steps leaves the last complete checkpoint (and
// every count record it needs: deletes come after the checkpoint that
// makes them safe) as what LoadState returns; the resumed run writes the
// rows, minutes and counts after it again, with the same values.
//
// A record (count record, checkpoint, definition) is split into chunks of
// at most Sink.chunkBytes (1 MiB), rows (name, kind, key, chunk). Chunks
// 1..n-1 are written first, chunk 0 last with the record's chunk count,
// size and CRC-32C: a record is there once its chunk 0 is, and a record
// torn by a crash (or overwritten half way) is never read as valid.

const (
	kindCounts     = "counts"
	kindCheckpoint = "checkpoint"
	kindDefinition = "definition"

	// defaultChunkBytes: a dense metro minute's count record is ~150-200
	// KB (4 bytes a source cell), one chunk. Cassandra refuses mutations
	// over max_mutation_size (half the 32 MiB commit log segment) and
	// warns far below; 1 MiB chunks keep every write small while a
	// checkpoint holding 10,000 events ahead of event time (~2 MB) takes 2-3
	// chunks.
	defaultChunkBytes = 1 << 20
	// maxRecordBytes bounds what LoadState assembles (a corrupt size).
	maxRecordBytes = 1 << 30
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// stateStmts are the CQL statements on the state tables.
type stateStmts struct {
	putChunk, putHead, getRecord, getKind, latestKey, deleteBelow string
	putMinute, trimMinutes                                        string
}

func newStateStmts(cfg Config) stateStmts {
	st := cfg.Keyspace + "." + StateTable
	return stateStmts{
		putChunk:    "INSERT INTO " + st + " (name, kind, key, chunk, data) VALUES (?, ?, ?, ?, ?)",
		putHead:     "INSERT INTO " + st + " (name, kind, key, chunk, data, chunks, size, crc) VALUES (?, ?, ?, 0, ?, ?, ?, ?)",
		getRecord:   "SELECT key, chunk, data, chunks, size, crc FROM " + st + " WHERE name = ? AND kind = ? AND key = ?",
		getKind:     "SELECT key, chunk, data, chunks, size, crc FROM " + st + " WHERE name = ? AND kind = ?",
		latestKey:   "SELECT key FROM " + st + " WHERE name = ? AND kind = ? LIMIT 1",
		deleteBelow: "DELETE FROM " + st + " WHERE name = ? AND kind = ? AND key < ?",
		putMinute:   "INSERT INTO " + cfg.Keyspace + "." + MinutesTable + " (name, minute, rows, closed_ms, regions) VALUES (?, ?, ?, ?, ?) USING TTL ?",
		trimMinutes: "DELETE FROM " + cfg.Keyspace + "." + MinutesTable + " WHERE name = ? AND minute < ?",
	}
}

// stateConsistency is the configured consistency, raised to LOCAL_QUORUM
// when weaker: a restart must read the state it wrote.
func stateConsistency(c string) gocql.Consistency {
	switch cl := gocql.ParseConsistency(c); cl {
	case gocql.Any, gocql.One, gocql.LocalOne, gocql.Two:
		return gocql.LocalQuorum
	default:
		return cl
	}
}

// minuteIndex is what the sink learns of the open minute from its rows:
// the minutes row written at CloseMinute.
type minuteIndex struct {
	minute  int64
	started time.Time // first Write: the rows' TTL runs from about here
	rows    int
	regions map[encode.UUID][]int64 // partitions touched, may repeat
	lastP   encode.UUID
	lastR   int64
}

const noMinute = -1 << 63

func (x *minuteIndex) reset(m int64, now time.Time) {
	x.minute, x.started, x.rows = m, now, 0
	if x.regions == nil {
		x.regions = map[encode.UUID][]int64{}
	}
	clear(x.regions)
	x.lastR = -1
}

// add notes a row's partition (rows come sorted by product then cell, so
// most rows repeat the previous row's partition).
func (x *minuteIndex) add(p encode.UUID, region int64) {
	x.rows++
	if region == x.lastR && p == x.lastP {
		return
	}
	x.lastP, x.lastR = p, region
	x.regions[p] = append(x.regions[p], region)
}

// appendRegions encodes the minute's partitions: per product in UUID
// order, the 16-byte UUID, a uvarint count and the sorted regions as
// uvarint deltas (CASSANDRA.md).
func (x *minuteIndex) appendRegions(dst []byte) []byte {
	ps := make([]encode.UUID, 0, len(x.regions))
	for p := range x.regions {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b encode.UUID) int { return compareUUID(a, b) })
	for _, p := range ps {
		rs := x.regions[p]
		slices.Sort(rs)
		rs = slices.Compact(rs)
		dst = append(dst, p[:]...)
		dst = binary.AppendUvarint(dst, uint64(len(rs)))
		prev := uint64(0)
		for _, r := range rs {
			dst = binary.AppendUvarint(dst, uint64(r)-prev)
			prev = uint64(r)
		}
	}
	return dst
}

// decodeRegions reads appendRegions' encoding, calling fn per product.
func decodeRegions(b []byte, fn func(p encode.UUID, regions []int64)) error {
	for len(b) > 0 {
		if len(b) < 16 {
			return errors.New("regions: truncated product")
		}
		var p encode.UUID
		copy(p[:], b)
		b = b[16:]
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)) {
			return errors.New("regions: bad count")
		}
		b = b[k:]
		rs := make([]int64, 0, n)
		prev := uint64(0)
		for range n {
			d, k := binary.Uvarint(b)
			if k <= 0 {
				return errors.New("regions: truncated region")
			}
			b = b[k:]
			prev += d
			rs = append(rs, int64(prev))
		}
		fn(p, rs)
	}
	return nil
}

func compareUUID(a, b encode.UUID) int {
	for i := range a {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

// StageState keeps st to commit with minute m (sink.Checkpointer); its
// slices are copied.
func (s *Sink) StageState(m int64, st sink.State) {
	st.Counts = slices.Clone(st.Counts)
	st.Checkpoint = slices.Clone(st.Checkpoint)
	s.mu.Lock()
	s.staged, s.stagedMinute = &st, m
	s.mu.Unlock()
}

// LoadState returns the last committed checkpoint (nil if none) and a
// reader of count records (sink.Checkpointer).
func (s *Sink) LoadState() ([]byte, func(m int64) ([]byte, bool, error), error) {
	ctx := context.Background()
	seq, cp, err := s.latestCheckpoint(ctx, s.name)
	if err != nil || cp == nil {
		return nil, nil, err
	}
	s.mu.Lock()
	s.seq = max(s.seq, seq)
	s.mu.Unlock()
	return cp, func(m int64) ([]byte, bool, error) {
		return s.getRecord(ctx, kindCounts, m)
	}, nil
}

// commitMinute writes minute m's minutes row and the state staged for it
// (steps 2-5 above), after its rows are acknowledged.
func (s *Sink) commitMinute(ctx context.Context, m int64) error {
	s.mu.Lock()
	idx := &s.cur
	if idx.minute != m {
		idx.reset(m, s.now()) // a minute without rows
	}
	regions := idx.appendRegions(nil)
	rows, started := idx.rows, idx.started
	st := s.staged
	if s.stagedMinute != m {
		st = nil
	}
	s.staged = nil
	idx.reset(noMinute, time.Time{})
	s.mu.Unlock()

	// The minutes row must not outlive the rows it lists: their TTL ran
	// from their writes, the first about `started`.
	now := s.now()
	ttl := int64(s.cfg.TTL/time.Second) - int64(now.Sub(started)/time.Second) - 1
	if err := s.exec(ctx, s.st.putMinute, s.name, m, rows, now.UnixMilli(), regions, max(ttl, 1)); err != nil {
		return fmt.Errorf("minutes row: %w", err)
	}
	// Minutes rows past the retention go by a range deletion, not by
	// their TTL alone: the pipeline's minutes rows are one partition,
	// written every minute for the pipeline's life, so its sstables all
	// overlap and compaction hardly ever purges what expired there, and
	// an expired row is three tombstones that every read of the list
	// passes (Store.load's LIMIT of TTL minutes is never met by live
	// rows: they expire a minute early). Left to expire, from 5.5 hours
	// past the TTL on each read passed Cassandra's
	// tombstone_warn_threshold (1,000 tombstones: 334 rows) and from 23
	// days on its tombstone_failure_threshold (100,000): the Store's
	// list of minutes then stopped at the last good read. Overlapping range
	// deletions merge into one, so the partition holds a retention's
	// rows and one range deletion. Store.load lists the minutes from
	// newest - ttl + 1 on; one more minute is kept.
	ttlMin := int64(s.cfg.TTL / time.Minute)
	if err := s.exec(ctx, s.st.trimMinutes, s.name, m-ttlMin); err != nil {
		return fmt.Errorf("minutes past the retention: %w", err)
	}
	if err := s.commitParts(ctx, m); err != nil {
		return err
	}
	if st == nil {
		return nil
	}
	if err := s.putRecord(ctx, s.name, kindCounts, m, st.Counts); err != nil {
		return fmt.Errorf("count record: %w", err)
	}
	if st.Checkpoint != nil {
		s.mu.Lock()
		s.seq++
		seq := s.seq
		s.mu.Unlock()
		if err := s.putRecord(ctx, s.name, kindCheckpoint, seq, st.Checkpoint); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
		if err := s.exec(ctx, s.st.deleteBelow, s.name, kindCheckpoint, seq); err != nil {
			return fmt.Errorf("delete older checkpoints: %w", err)
		}
	}
	if st.KeepFrom > s.countsFrom {
		if err := s.exec(ctx, s.st.deleteBelow, s.name, kindCounts, st.KeepFrom); err != nil {
			return fmt.Errorf("delete count records: %w", err)
		}
		s.countsFrom = st.KeepFrom
	}
	return nil
}

// Engine state per part (sink.PartCheckpointer): a part's records live
// under the part's own name, not under Config.StateName, since the
// processes that hand a part on to each other each have their own state
// name (their minutes rows differ). Its checkpoints are keyed by their
// minute (not by a sequence) so that the newest is the part's latest minute
// whoever wrote it: a process that lost the part and commits an older
// minute late never hides the new owner's checkpoint.

type stagedPart struct {
	part string
	st   sink.State
}

// StagePartState keeps st for part, to commit with minute m
// (sink.PartCheckpointer); its slices are copied.
func (s *Sink) StagePartState(part string, m int64, st sink.State) {
	st.Counts, st.Checkpoint = slices.Clone(st.Counts), slices.Clone(st.Checkpoint)
	s.mu.Lock()
	if s.partsMinute != m {
		s.parts, s.partsMinute = s.parts[:0], m
	}
	s.parts = append(s.parts, stagedPart{part, st})
	s.mu.Unlock()
}

func (s *Sink) partName(part string) string { return "part:" + part }

// commitParts writes the parts staged for m, each in the order of
// commitMinute's steps 3-5 (count record, checkpoint, deletes).
func (s *Sink) commitParts(ctx context.Context, m int64) error {
	s.mu.Lock()
	parts := s.parts
	if s.partsMinute != m {
		parts = nil
	}
	s.parts = nil
	s.mu.Unlock()
	for _, p := range parts {
		name := s.partName(p.part)
		if p.st.Counts != nil {
			if err := s.putRecord(ctx, name, kindCounts, m, p.st.Counts); err != nil {
				return fmt.Errorf("part %s: count record: %w", p.part, err)
			}
		}
		if p.st.Checkpoint != nil {
			if err := s.putRecord(ctx, name, kindCheckpoint, m, p.st.Checkpoint); err != nil {
				return fmt.Errorf("part %s: checkpoint: %w", p.part, err)
			}
			if err := s.exec(ctx, s.st.deleteBelow, name, kindCheckpoint, m); err != nil {
				return fmt.Errorf("part %s: delete older checkpoints: %w", p.part, err)
			}
		}
		if p.st.KeepFrom > 0 {
			if err := s.exec(ctx, s.st.deleteBelow, name, kindCounts, p.st.KeepFrom); err != nil {
				return fmt.Errorf("part %s: delete count records: %w", p.part, err)
			}
		}
	}
	return nil
}

// LoadPartState returns part's newest checkpoint (nil if none) and a
// reader of its count records (sink.PartCheckpointer).
func (s *Sink) LoadPartState(part string) ([]byte, func(m int64) ([]byte, bool, error), error) {
	ctx := context.Background()
	name := s.partName(part)
	_, cp, err := s.latestCheckpoint(ctx, name)
	if err != nil || cp == nil {
		return nil, nil, err
	}
	return cp, func(m int64) ([]byte, bool, error) {
		return readRecord(ctx, s.sess, s.st, s.stateCons, name, kindCounts, m)
	}, nil
}

var _ sink.PartCheckpointer = (*Sink)(nil)

// putRecord writes data as (name, kind, key): chunks 1..n-1, then chunk 0 with
// the header, which commits it.
func (s *Sink) putRecord(ctx context.Context, name, kind string, key int64, data []byte) error {
	cb := s.chunkBytes
	n := max(1, (len(data)+cb-1)/cb)
	for i := n - 1; i >= 1; i-- {
		part := data[i*cb : min(len(data), (i+1)*cb)]
		if err := s.exec(ctx, s.st.putChunk, name, kind, key, i, part); err != nil {
			return err
		}
	}
	crc := int32(crc32.Checksum(data, castagnoli))
	head := data[:min(len(data), cb)]
	if head == nil {
		head = []byte{} // an empty record is a present, empty blob
	}
	if err := s.exec(ctx, s.st.putHead, name, kind, key, head, n, len(data), crc); err != nil {
		return err
	}
	s.stateBytes.Add(int64(len(data)))
	return nil
}

// getRecord reads (kind, key): false when it is absent or its chunk 0
// is (never committed).
func (s *Sink) getRecord(ctx context.Context, kind string, key int64) ([]byte, bool, error) {
	return readRecord(ctx, s.sess, s.st, s.stateCons, s.name, kind, key)
}

func readRecord(ctx context.Context, sess *gocql.Session, st stateStmts, cl gocql.Consistency, name, kind string, key int64) ([]byte, bool, error) {
	iter := sess.Query(st.getRecord, name, kind, key).Consistency(cl).Idempotent(true).IterContext(ctx)
	var (
		rec  []byte
		ok   bool
		cerr error
	)
	err := scanRecords(iter, func(k int64, data []byte, complete bool, err error) bool {
		rec, ok, cerr = data, complete, err
		return false
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return nil, false, fmt.Errorf("sink cassandra: %s record %d: %w", kind, key, err)
	}
	return rec, ok, nil
}

// latestCheckpoint returns the newest committed checkpoint and its
// sequence, or nil.
func (s *Sink) latestCheckpoint(ctx context.Context, name string) (int64, []byte, error) {
	iter := s.sess.Query(s.st.getKind, name, kindCheckpoint).Consistency(s.stateCons).Idempotent(true).IterContext(ctx)
	var (
		seq  int64
		cp   []byte
		cerr error
	)
	err := scanRecords(iter, func(k int64, data []byte, complete bool, err error) bool {
		if !complete && err == nil {
			return true // torn by a crash: the one before it is the last
		}
		seq, cp, cerr = k, data, err
		return false
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return 0, nil, fmt.Errorf("sink cassandra: checkpoint: %w", err)
	}
	if cp == nil {
		return 0, nil, nil
	}
	return seq, cp, nil
}

// scanRecords groups rows (key, chunk, data, chunks, size, crc), in key
// order and chunk order within a key, into records and calls fn per key:
// complete is false when chunk 0 (the commit) is missing; err reports a
// record whose chunk 0 is there but whose chunks or checksum are wrong.
// fn returns whether to go on.
func scanRecords(iter *gocql.Iter, fn func(key int64, data []byte, complete bool, err error) bool) error {
	var (
		key, cur             int64
		chunk, chunks, size  int
		crc                  int32
		data, rec            []byte
		have, headOK, broken bool
		stop                 bool
	)
	flush := func() {
		if !have || stop {
			return
		}
		var err error
		switch {
		case !headOK:
		case broken || len(rec) != size:
			err = fmt.Errorf("record %d: chunks missing (%d of %d bytes)", cur, len(rec), size)
		case int32(crc32.Checksum(rec, castagnoli)) != crc:
			err = fmt.Errorf("record %d: checksum mismatch (torn or overwritten)", cur)
		}
		if headOK && err == nil && rec == nil {
			rec = []byte{}
		}
		if !headOK {
			rec = nil
		}
		stop = !fn(cur, rec, headOK && err == nil, err)
	}
	var (
		nChunks, nSize *int
		nCRC           *int32
		next           int
	)
	for {
		nChunks, nSize, nCRC = nil, nil, nil
		if !iter.Scan(&key, &chunk, &data, &nChunks, &nSize, &nCRC) {
			break
		}
		if !have || key != cur {
			flush()
			if stop {
				break
			}
			have, cur, rec, broken, next = true, key, nil, false, 0
			headOK = chunk == 0 && nChunks != nil && nSize != nil && nCRC != nil
			if headOK {
				chunks, size, crc = *nChunks, *nSize, *nCRC
				if size < 0 || size > maxRecordBytes || chunks < 1 {
					broken = true
				}
			}
		}
		if !headOK || broken {
			continue
		}
		if chunk >= chunks {
			continue // left over from a longer record this key once held
		}
		if chunk != next {
			broken = true
			continue
		}
		next++
		rec = append(rec, data...)
	}
	flush()
	if err := iter.Close(); err != nil {
		return err
	}
	return nil
}

// exec runs one state statement at the state consistency with the
// queue's retry policy: full-jitter back-off between MinBackoff and
// MaxBackoff, AttemptTimeout per attempt, MaxRetries retries, permanent
// errors at once.
func (s *Sink) exec(ctx context.Context, stmt string, args ...any) error {
	qc := s.cfg.Queue
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, qc.AttemptTimeout)
		err := s.sess.Query(stmt, args...).Consistency(s.stateCons).Idempotent(true).ExecContext(actx)
		cancel()
		if err == nil {
			return nil
		}
		err = s.explainUnavailable(err)
		if Permanent(err) || attempt >= qc.MaxRetries || ctx.Err() != nil {
			return fmt.Errorf("after %d attempts: %w", attempt+1, err)
		}
		s.stateRetries.Add(1)
		ceil := qc.MaxBackoff
		if attempt < 30 {
			ceil = min(qc.MaxBackoff, qc.MinBackoff<<attempt)
		}
		t := time.NewTimer(time.Duration(rand.Int64N(int64(ceil)) + 1))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// openState checks the state tables, stores the definition (or checks
// the stored one) and finds the last checkpoint sequence.
func (s *Sink) openState(ctx context.Context) error {
	def := s.cfg.Definition.String()
	got, ok, err := s.getRecord(ctx, kindDefinition, 0)
	if u := asUnavailable(err); u != nil {
		return s.unmet(ctx, u) // nodes died since the probe
	}
	if err != nil {
		return fmt.Errorf("sink cassandra: table %s.%s: %w (create it with `demandpipe schema cassandra` or ?create=true)", s.cfg.Keyspace, StateTable, err)
	}
	switch {
	case s.cfg.Definition.Rings == nil: // not given: neither stored nor checked
	case !ok:
		if err := s.putRecord(ctx, s.name, kindDefinition, 0, []byte(def)); err != nil {
			return fmt.Errorf("sink cassandra: store the definition: %w", err)
		}
	case string(got) != def:
		return fmt.Errorf("sink cassandra: %s.%s (state=%s) holds features of definition %q, but the engine computes %q: use another table or state=, or the flags that match it",
			s.cfg.Keyspace, s.cfg.Table, s.name, got, def)
	}
	var seq int64
	iter := s.sess.Query(s.st.latestKey, s.name, kindCheckpoint).Consistency(s.stateCons).Idempotent(true).IterContext(ctx)
	iter.Scan(&seq)
	if err := iter.Close(); err != nil {
		return fmt.Errorf("sink cassandra: checkpoint sequence: %w", err)
	}
	s.seq = seq
	return nil
}

var _ sink.Checkpointer = (*Sink)(nil)
