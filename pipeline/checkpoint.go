package pipeline

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/cespare/xxhash/v2"

	"github.com/demandpipe/demandpipe/aggregate"
	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/internal/wire"
)

// Checkpoints (RECOVERY.md has the argument). At the close of a minute M
// the engine hands a durable sink (sink.Checkpointer) two things, committed
// atomically with M's rows:
//
//   - M's source counts c(h,p,M): a few bytes per source cell, written once
//     per minute and kept for the max(W)-1 minutes a window still needs;
//   - when M is the last minute of a close, the checkpoint: the sequencer's
//     state at the input position P from which every event of a minute after
//     M is still to be read, P itself, and the product codes.
//
// A restart restores the windows from the counts of minutes M-max(W)+2..M
// (smoothing them again, emitting nothing), the sequencer from the
// checkpoint, and reads the input from P on: events of minutes <= M are late
// or dropped by the counter, those of later minutes meet exactly the state
// they met the first time.

// checkpointVersion changes with the encoding. Version 5 adds the events
// waiting for their product's confirmation (hold.go); a version-3 or -4
// checkpoint resumes with none (its configKey has no product reserve, so
// only with -windows.product-reserve=0). Version 4 adds the tail
// rule's state (the riders that contradicted the tail, the largest ts
// after it); a version-3 checkpoint still resumes, with none. Version 3
// holds event time by riders (the K riders' latest times) where version 2
// held the future rule's held events: an older checkpoint is not
// resumable (the run starts over, as after a change of settings), since
// its rule gave other rows.
const checkpointVersion = 5

// seqState is the sequencer's state at a batch boundary, and where in the
// input that boundary is: what a resume from there restores.
type seqState struct {
	pos, line       int64
	haveTS          bool
	maxTS, frontier int64
	clockKey        []uint64 // riderClock
	clockTS         []int64
	t, tailMax      int64
	haveT           bool
	tailNext        int64
	haveTailNext    bool
	tailContra      []uint64
	ahead           []aheadEvent // entries are values; their text is never written
	held            []heldEvent  // the same
	lastCounted     [encode.MaxProducts]int64
}

// capture copies the sequencer's state, placed at input position pos/line.
func (s *sequencer) capture(dst *seqState, pos, line int64) {
	dst.pos, dst.line = pos, line
	dst.haveTS, dst.maxTS, dst.frontier = s.haveTS, s.maxTS, s.frontier
	dst.clockKey = append(dst.clockKey[:0], s.clock.key...)
	dst.clockTS = append(dst.clockTS[:0], s.clock.ts...)
	dst.t, dst.tailMax, dst.haveT = s.t, s.tail.max, s.haveT
	dst.tailNext, dst.haveTailNext = s.tail.next, s.tail.haveNext
	dst.tailContra = append(dst.tailContra[:0], s.tail.contra...)
	// ahead and held are shared, not copied: their entries are values
	// never changed in place, and a list is compacted into a new array
	// (sequence.go: "Copy on compaction"), so a view of its first len
	// entries stays what it was.
	dst.ahead = s.ahead[:len(s.ahead):len(s.ahead)]
	dst.held = s.held[:len(s.held):len(s.held)]
	dst.lastCounted = s.lastCounted
}

// restore puts the sequencer back in state st.
func (s *sequencer) restore(st *seqState) {
	s.haveTS, s.maxTS, s.frontier = st.haveTS, st.maxTS, st.frontier
	s.clock.set(st.clockKey, st.clockTS)
	s.t, s.tail.max, s.haveT = st.t, st.tailMax, st.haveT
	s.tail.next, s.tail.haveNext = st.tailNext, st.haveTailNext
	s.tail.contra, s.tail.seen = append(s.tail.contra[:0], st.tailContra...), 0
	for _, k := range st.tailContra {
		s.tail.seen |= 1 << (k & 63)
	}
	s.ahead = slices.Clone(st.ahead)
	s.held = slices.Clone(st.held)
	s.repend()
	s.recount()
	s.lastCounted = st.lastCounted
	s.anchorTS, s.haveAnchor = s.clock.floor()
	// The idle clock starts with the first batch after the restore: left
	// at 0, the first idle batch (a broker slow to deliver after a
	// restart) moved the frontier by the whole wall clock, and every
	// event after it was late.
	s.lastEventWall = idleClockUnset
	s.stamped = s.frontier // the next resume point is due once it moves
	s.lastEnd = [2]int64{st.pos, st.line}
}

// openMinute remembers, for a minute not yet closed, the state before the
// first batch that accepted an event of it.
type openMinute struct {
	minute int64
	at     *seqState
}

// checkpoint is the decoded resume state.
type checkpoint struct {
	identity string // the input's (source.File.Identity)
	config   string // definition and the knobs that change results
	closed   int64  // minutes <= closed are committed
	seq      seqState
	products []encode.UUID // codes' owners, by code
	cursor   []byte        // the input position in the source's terms (Cursored); nil for files
}

// configKey names what a resumed run must share with the run it resumes.
func (c Config) configKey() string {
	f := c.Future
	key := fmt.Sprintf("%s;lateness=%s;future=%s,%d", c.Def, c.Lateness, f.MaxSkew, f.ConfirmRiders)
	if f.ProductReserve != 0 {
		// Which products wait changes results; 0 keeps the key of the
		// checkpoints written before the reserve.
		key += fmt.Sprintf(";reserve=%d", f.ProductReserve)
	}
	if c.Products != nil {
		// Which products count changes results: the allow-list's UUIDs,
		// hashed (a checkpoint holds this string).
		h := xxhash.New()
		for _, u := range slices.SortedFunc(maps.Keys(c.Products), func(a, b encode.UUID) int { return bytes.Compare(a[:], b[:]) }) {
			h.Write(u[:])
		}
		key += fmt.Sprintf(";products=%d:%016x", len(c.Products), h.Sum64())
	}
	return key
}

func (cp *checkpoint) encode(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, checkpointVersion)
	dst = wire.AppendString(dst, cp.identity)
	dst = wire.AppendString(dst, cp.config)
	dst = binary.AppendVarint(dst, cp.closed)
	st := &cp.seq
	dst = binary.AppendVarint(dst, st.pos)
	dst = binary.AppendVarint(dst, st.line)
	dst = wire.AppendBool(dst, st.haveTS)
	dst = binary.AppendVarint(dst, st.maxTS)
	dst = binary.AppendVarint(dst, st.frontier)
	dst = binary.AppendUvarint(dst, uint64(len(st.clockKey)))
	for j, k := range st.clockKey {
		dst = binary.LittleEndian.AppendUint64(dst, k)
		dst = binary.AppendVarint(dst, st.clockTS[j])
	}
	dst = wire.AppendBool(dst, st.haveT)
	dst = binary.AppendVarint(dst, st.t)
	dst = binary.AppendVarint(dst, st.tailMax)
	dst = wire.AppendBool(dst, st.haveTailNext)
	dst = binary.AppendVarint(dst, st.tailNext)
	dst = binary.AppendUvarint(dst, uint64(len(st.tailContra)))
	for _, k := range st.tailContra {
		dst = binary.LittleEndian.AppendUint64(dst, k)
	}
	dst = binary.AppendUvarint(dst, uint64(len(st.ahead)))
	for _, a := range st.ahead {
		dst = binary.AppendVarint(dst, a.minute)
		dst = binary.AppendVarint(dst, a.line)
		dst = wire.AppendString(dst, string(a.text))
	}
	dst = appendHeld(dst, st.held)
	dst = binary.AppendUvarint(dst, uint64(len(cp.products)))
	for c, u := range cp.products {
		dst = append(dst, u[:]...)
		dst = binary.AppendVarint(dst, st.lastCounted[c])
	}
	return wire.AppendString(dst, string(cp.cursor))
}

var errCorrupt = errors.New("corrupt checkpoint")

func decodeCheckpoint(b []byte) (*checkpoint, error) {
	r := wire.Reader{B: b}
	v := r.Uvarint()
	if v != checkpointVersion && v != 3 && v != 4 {
		return nil, fmt.Errorf("%w: the checkpoint is of version %d, written before event time by riders (this build writes %d)", ErrNotResumable, v, checkpointVersion)
	}
	cp := &checkpoint{identity: r.String(), config: r.String(), closed: r.Varint()}
	st := &cp.seq
	st.pos, st.line = r.Varint(), r.Varint()
	st.haveTS, st.maxTS, st.frontier = r.Bool(), r.Varint(), r.Varint()
	nk := r.Uvarint()
	if nk > maxConfirmRiders {
		return nil, errCorrupt
	}
	for range nk {
		st.clockKey = append(st.clockKey, r.U64())
		st.clockTS = append(st.clockTS, r.Varint())
	}
	st.haveT, st.t, st.tailMax = r.Bool(), r.Varint(), r.Varint()
	if v >= 4 {
		st.haveTailNext, st.tailNext = r.Bool(), r.Varint()
		nc := r.Uvarint()
		if nc > maxConfirmRiders {
			return nil, errCorrupt
		}
		for range nc {
			st.tailContra = append(st.tailContra, r.U64())
		}
	}
	na := r.Uvarint()
	if na > maxAhead {
		return nil, errCorrupt
	}
	for range na {
		st.ahead = append(st.ahead, aheadEvent{minute: r.Varint(), line: r.Varint(), text: []byte(r.String())})
	}
	if v >= 5 {
		var err error
		if st.held, err = readHeld(&r); err != nil {
			return nil, err
		}
	}
	np := r.Uvarint()
	if np > encode.MaxProducts {
		return nil, errCorrupt
	}
	for c := range int(np) {
		cp.products = append(cp.products, r.UUID())
		st.lastCounted[c] = r.Varint()
	}
	for c := int(np); c < encode.MaxProducts; c++ {
		st.lastCounted[c] = aggregate.NoMinute
	}
	if c := r.String(); c != "" {
		cp.cursor = []byte(c)
	}
	if !r.Done() {
		return nil, errCorrupt
	}
	return cp, nil
}

func appendHeld(dst []byte, held []heldEvent) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(held)))
	for k := range held {
		h := &held[k]
		dst = append(dst, h.uuid[:]...)
		dst = binary.AppendVarint(dst, h.ts)
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(h.lat))
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(h.lng))
		dst = binary.LittleEndian.AppendUint64(dst, h.rkey)
		dst = binary.LittleEndian.AppendUint64(dst, h.rcheck)
		dst = binary.AppendVarint(dst, h.line)
		dst = wire.AppendString(dst, string(h.text))
	}
	return dst
}

func readHeld(r *wire.Reader) ([]heldEvent, error) {
	n := r.Uvarint()
	if n > maxHeld {
		return nil, errCorrupt
	}
	var held []heldEvent
	for range n {
		h := heldEvent{uuid: r.UUID(), ts: r.Varint()}
		h.minute = minuteOf(h.ts)
		h.lat, h.lng = math.Float64frombits(r.U64()), math.Float64frombits(r.U64())
		h.rkey, h.rcheck, h.line = r.U64(), r.U64(), r.Varint()
		h.text = []byte(r.String())
		held = append(held, h)
	}
	return held, nil
}

// checkpointer assembles a run's checkpoints, the one place that does:
// the single process's closer and the dedup role's emit stage both hold
// one. A checkpoint names the input (identity), the settings that must
// match on resume (config), the last closed minute, the sequencer's state
// at the resume point, the source's cursor there and the product codes.
type checkpointer struct {
	identity string // the input's (Engine.Identity)
	config   string // Config.configKey
	// cursor names a checkpoint's input position in the source's terms
	// (Cursored), stored with it; nil: byte offsets are enough.
	cursor   func(pos int64) ([]byte, error)
	products *encode.Products
	buf      []byte
}

// encode is the checkpoint "minutes through closed are committed; resume
// from resume". The result is valid until the next call.
func (c *checkpointer) encode(closed int64, resume *seqState) ([]byte, error) {
	cp := checkpoint{identity: c.identity, config: c.config, closed: closed, seq: *resume}
	if c.cursor != nil {
		cur, err := c.cursor(resume.pos)
		if err != nil {
			return nil, fmt.Errorf("checkpoint: the source cannot name input position %d: %w", resume.pos, err)
		}
		cp.cursor = cur
	}
	for code := range c.products.Len() {
		cp.products = append(cp.products, c.products.UUID(byte(code)))
	}
	c.buf = cp.encode(c.buf[:0])
	return c.buf, nil
}

// resumePoint is a close request's aggregate.Resume: the run's checkpointer
// and the sequencer's state at the resume point. The close encodes it only
// when it commits the request's last minute into a durable sink.
type resumePoint struct {
	cp *checkpointer
	st *seqState
}

func (r *resumePoint) Checkpoint(closed int64) ([]byte, error) { return r.cp.encode(closed, r.st) }
func (r *resumePoint) Pos() int64                              { return r.st.pos }
