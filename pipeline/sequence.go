package pipeline

import (
	"bytes"
	"math"
	"slices"

	"github.com/demandpipe/demandpipe/aggregate"
	"github.com/demandpipe/demandpipe/dedup"
	"github.com/demandpipe/demandpipe/encode"
)

const noMinute = aggregate.NoMinute

// sequencer applies the watermark, lateness, the clock bound and dedup in
// arrival order. It is the one stage that must see events one at a time in
// order; it does a compare, a scan of K rider times at most and a
// hash-table probe per event (~30 ns), so it keeps up with several parse
// workers.
//
// Event time (docs/CONTRACT.md "Semantics" 1 and 1a; docs/EVENT-TIME.md): T is the
// K-th largest of distinct riders' latest accepted times (riderClock), the
// watermark is T - lateness. No event is held or rejected for being ahead
// of the others: it is counted in the minute it claims, and since K-1
// riders cannot raise the K-th largest, its damage stays inside its own
// footprint (its disk over its minute's windows). Only an event ahead of
// this machine's clock by more than the skew is rejected (future).
type sequencer struct {
	lateness int64 // ms
	idle     int64 // ms
	dedup    *dedup.Table
	haveTS   bool
	maxTS    int64 // largest accepted ts: a finite input closes through its minute
	clock    riderClock
	frontier int64 // minutes <= frontier are closed
	// idle clock: event time advances with the wall clock while no input
	// arrives; anchored at T (never at the largest ts: a bad clock must not
	// be the anchor).
	lastEventWall int64 // idleClockUnset after a restore, until the next batch
	anchorTS      int64
	haveAnchor    bool

	fut futureRule
	// The end of a finite input closes through the later of T and the
	// tail (tailRule): an honest thin tail (the last riders of a night)
	// closes, while an event ahead that K other riders' later events
	// contradicted does not (docs/EVENT-TIME.md).
	t     int64
	haveT bool
	tail  tailRule
	// ahead: the counted events of minutes after T's (all of them before K
	// riders), which the end of the input may leave unclosed; those are
	// then rejected as future, with their lines. At most maxAhead, and
	// with the held events at most fut.maxBytes (seqBytes).
	ahead []aheadEvent

	// product codes (see assignProduct), and the events of new products
	// waiting for confirmation while codes are scarce (hold.go)
	held    []heldEvent
	pending map[encode.UUID]*pendingProduct
	// seqBytes is what ahead and held cost, their lines' text included
	// (recount): a hostile input of long lines ahead of T held up to
	// maxAhead of them, unbounded by -max-memory (issue 21 point 6).
	seqBytes    int64
	products    *encode.Products
	maxW        int64 // longest window, minutes
	lastCounted [encode.MaxProducts]int64
	proj        encode.Projector

	// resume points (checkpoint.go)
	open       []openMinute // minutes not closed yet, by first appearance
	atStart    seqState     // the state before the batch being sequenced
	batchSnap  *seqState    // a heap copy of atStart, once a new minute needs it
	lastMinute int64        // the last minute noted in open
	earliest   int64        // the earliest minute noted (Stats.FirstMinute), math.MaxInt64 before one
	stamped    int64        // the frontier last given a resume point
	lastEnd    [2]int64     // pos and line after the last input batch

	// per-batch tallies
	late, dups, shed int64
	accepted         bool
}

// aheadEvent is a counted event of a minute after T's: its minute, and its
// line for the rejects file should the input end before T reaches it.
type aheadEvent struct {
	minute, line int64
	text         []byte
}

// Copy on compaction. The resume points (open, atStart, a batch's resume)
// hold the sequencer's state as it was, the events ahead and held among
// it, one per batch that met a new minute: copied, a thin stream whose
// minutes stay open (fewer than K riders) held a copy of the list per
// minute, quadratic in its length. So those views share the lists'
// arrays: entries are appended, never changed in place, and a list that
// loses entries gets a new array (once per minute turn for ahead; for
// held only when an event is released or dropped).

// maxAhead bounds the events kept ahead of T's minute. A dense stream keeps
// about K at a minute's turn; only a stream of fewer than K riders, or riders
// far ahead, fill it. Past it an event ahead is rejected as future at once.
const maxAhead = 100_000

// Costs of an entry of ahead and of held beside its line's text: the
// struct and the slice header of the text's copy.
const (
	aheadCost = 40
	heldCost  = 96
)

// roomFor reports whether an entry of n bytes more fits fut.maxBytes.
func (s *sequencer) roomFor(n int64) bool {
	return s.fut.maxBytes == 0 || s.seqBytes+n <= s.fut.maxBytes
}

// recount sets seqBytes from ahead and held, after either changed other
// than by an append.
func (s *sequencer) recount() {
	n := int64(0)
	for k := range s.ahead {
		n += aheadCost + int64(len(s.ahead[k].text))
	}
	for k := range s.held {
		n += heldCost + int64(len(s.held[k].text))
	}
	s.seqBytes = n
}

// futureRule is event time's knobs (Config.Future).
type futureRule struct {
	skew    int64 // ms; 0: no clock bound
	confirm int   // K, distinct riders
	reserve int   // product codes kept for confirmed products (hold.go)
	// maxBytes bounds the events the sequencer keeps, ahead of T and held
	// for their product, with their lines (Config.seqShare; 0: none).
	maxBytes int64
}

// riderClock keeps the K largest of distinct riders' latest accepted times
// (rider hashes, so 16 entries of 16 bytes). Its K-th largest, T, is event
// time. Exact: a rider outside the K never has a latest time above the
// smallest inside (latest times only grow), so an event enters only by
// beating the smallest. An event at or below T costs one compare; one
// above it a scan of K (~10 ns at K=16).
type riderClock struct {
	k   int
	key []uint64 // xxhash of the rider id alone: one rider with many products counts once
	ts  []int64
	low int // index of the smallest once full
}

func newRiderClock(k int) riderClock {
	return riderClock{k: k, key: make([]uint64, 0, k), ts: make([]int64, 0, k)}
}

// observe records rider r's accepted ts and reports whether T may have
// moved.
func (c *riderClock) observe(r uint64, ts int64) bool {
	full := len(c.ts) == c.k
	if full && ts <= c.ts[c.low] {
		return false
	}
	for j, kk := range c.key {
		if kk == r {
			if ts <= c.ts[j] {
				return false
			}
			c.ts[j] = ts
			if full && j == c.low {
				c.findLow()
				return true
			}
			return false
		}
	}
	if !full {
		c.key, c.ts = append(c.key, r), append(c.ts, ts)
		if len(c.ts) == c.k {
			c.findLow()
			return true
		}
		return false
	}
	c.key[c.low], c.ts[c.low] = r, ts
	c.findLow()
	return true
}

func (c *riderClock) findLow() {
	low := 0
	for j := 1; j < len(c.ts); j++ {
		if c.ts[j] < c.ts[low] {
			low = j
		}
	}
	c.low = low
}

// time is T, once K riders have been seen.
func (c *riderClock) time() (int64, bool) {
	if len(c.ts) < c.k {
		return 0, false
	}
	return c.ts[c.low], true
}

// floor is the smallest of the riders' latest times (T once full): what
// the idle clock starts from while fewer than K riders have been seen.
func (c *riderClock) floor() (int64, bool) {
	if len(c.ts) == 0 {
		return 0, false
	}
	return slices.Min(c.ts), true
}

func (c *riderClock) set(keys []uint64, ts []int64) {
	c.key = append(c.key[:0], keys...)
	c.ts = append(c.ts[:0], ts...)
	if len(c.ts) == c.k {
		c.findLow()
	}
}

func newSequencer(lateness, idle int64, dt *dedup.Table, fr futureRule, products *encode.Products, maxW int) *sequencer {
	s := &sequencer{lateness: lateness, idle: idle, dedup: dt, frontier: noMinute, fut: fr, clock: newRiderClock(fr.confirm),
		products: products, pending: map[encode.UUID]*pendingProduct{}, maxW: int64(maxW), lastMinute: noMinute, stamped: noMinute, earliest: math.MaxInt64,
		tail: tailRule{k: fr.confirm, contra: make([]uint64, 0, fr.confirm)}}
	for i := range s.lastCounted {
		s.lastCounted[i] = noMinute
	}
	return s
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func minuteOf(ts int64) int64 { return floorDiv(ts, 60000) }

// advance closes the minutes event time t (less lateness) passes.
func (s *sequencer) advance(t int64) {
	if f := floorDiv(t-s.lateness, 60000) - 1; f > s.frontier {
		s.frontier = f
		s.dedup.Release(f)
	}
}

// idleClockUnset marks lastEventWall after a restore.
const idleClockUnset = -1

// sequence marks the counted events of b (in order) and stamps the frontier.
func (s *sequencer) sequence(b *batch, st *Stats, wallNow int64) {
	if s.lastEventWall == idleClockUnset {
		s.lastEventWall = wallNow
	}
	if b.idle {
		if s.haveAnchor && wallNow-s.lastEventWall >= s.idle {
			s.advance(s.anchorTS + (wallNow - s.lastEventWall))
		}
	}
	s.late, s.dups, s.shed, s.accepted = 0, 0, 0, false
	if b.idle { // no input: it sits where the last input batch ended
		b.pos, b.firstLine, b.endPos, b.endLine = s.lastEnd[0], s.lastEnd[1], s.lastEnd[0], s.lastEnd[1]
	}
	s.capture(&s.atStart, b.pos, b.firstLine)
	s.batchSnap = nil
	if b.gen != s.products.Gen() {
		s.reresolve(b, 0) // a code changed owner after b was parsed
	}
	np := 0 // next of b.newProds
	ahead := int64(math.MaxInt64)
	if s.fut.skew > 0 {
		ahead = wallNow + s.fut.skew
	}
	for i, n := 0, len(b.ts); i < n; i++ {
		var newP *newProd // the event's product has no code yet
		if np < len(b.newProds) && b.newProds[np].idx == int32(i) {
			newP = &b.newProds[np]
			np++
		}
		ts := b.ts[i]
		if ts > ahead {
			// Ahead of this machine's clock: no rider can make it true.
			b.rejects = append(b.rejects, reject{line: b.evLine[i], reason: encode.Future, start: b.evStart[i], end: b.evEnd[i]})
			continue
		}
		// A new product gets its code as its first on-time event is
		// accepted (a late one needs none); while codes are scarce, once K
		// riders have used it (hold.go).
		if newP != nil && minuteOf(ts) > s.frontier {
			gen := s.products.Gen()
			if !s.newProduct(b, i, newP.uuid) {
				continue
			}
			if s.products.Gen() != gen {
				s.reresolve(b, i+1)
				np = 0
			}
		}
		s.accept(b, i)
	}
	s.expireHeld(b)
	if s.accepted {
		s.lastEventWall = wallNow
		s.anchorTS, s.haveAnchor = s.clock.floor()
	}
	if b.eof && s.haveTS {
		s.finish(b, st)
	}
	b.frontier = s.frontier
	s.lastEnd = [2]int64{b.endPos, b.endLine}
	s.stampResume(b)
	st.Late.Add(s.late)
	st.Duplicates.Add(s.dups)
	st.OverBudget.Add(s.shed)
	st.Counted.Add(int64(len(b.counted)))
	st.DedupBytes.Store(int64(s.dedup.Bytes()))
	st.SeqBytes.Store(s.seqBytes)
	if s.earliest != math.MaxInt64 && st.FirstMinute.Load() != s.earliest {
		st.FirstMinute.Store(s.earliest)
	}
	if s.haveTS {
		st.MaxTS.Store(s.maxTS)
		if t, ok := s.clock.time(); ok {
			st.EventTime.Store(t)
		}
	}
}

// finish sets the final close of a finite input: through the later of T
// and the tail (and at least what is closed). Counted events of later
// minutes are rejected as future: their minutes never close.
func (s *sequencer) finish(b *batch, st *Stats) {
	end := s.tail.max
	if s.haveT {
		end = max(end, s.t)
	}
	b.final, b.hasFinal = max(minuteOf(end), s.frontier), true
	keep := make([]aheadEvent, 0, len(s.ahead)) // a new array: copy on compaction
	for _, a := range s.ahead {
		if a.minute > b.final {
			b.endRejects = append(b.endRejects, a)
		} else {
			keep = append(keep, a)
		}
	}
	s.ahead = keep
	s.recount()
	st.Counted.Add(-int64(len(b.endRejects)))
}

// accept is the contract's step for an event within the clock bound: late,
// or first for its (rider, product, minute), or a duplicate; it moves the
// rider's latest time (and so, maybe, T) unless late.
func (s *sequencer) accept(b *batch, i int) {
	ts := b.ts[i]
	m := minuteOf(ts)
	if m <= s.frontier {
		s.late++
		return
	}
	isAhead := !s.haveT || m > minuteOf(s.t)
	var line []byte
	if isAhead {
		line = trimCR(b.buf[b.evStart[i]:b.evEnd[i]])
		if len(s.ahead) >= maxAhead || !s.roomFor(aheadCost+int64(len(line))) {
			b.rejects = append(b.rejects, reject{line: b.evLine[i], reason: encode.Future, start: b.evStart[i], end: b.evEnd[i]})
			return
		}
	}
	s.accepted = true
	if m != s.lastMinute {
		s.noteMinute(m)
	}
	switch s.dedup.Add(m, b.hash[i], dedup.Mix(b.rcheck[i], b.prod[i])) {
	case dedup.First:
		b.counted = append(b.counted, int32(i))
		b.minute = append(b.minute, m)
		if p := b.prod[i]; m > s.lastCounted[p] {
			s.lastCounted[p] = m
		}
		if isAhead {
			s.ahead = append(s.ahead, aheadEvent{minute: m, line: b.evLine[i], text: bytes.Clone(line)})
			s.seqBytes += aheadCost + int64(len(line))
		}
	case dedup.Duplicate:
		s.dups++
	case dedup.Full:
		s.shed++ // no room for its key: not counted, never twice
	}
	if !s.haveTS || ts > s.maxTS {
		s.haveTS, s.maxTS = true, ts
	}
	s.tail.observe(b.rkey[i], ts)
	if s.clock.observe(b.rkey[i], ts) {
		if t, _ := s.clock.time(); !s.haveT || t != s.t {
			s.moved(t)
		}
	}
}

// tailRule is where the end of a finite input closes besides T: the
// largest accepted ts that fewer than K distinct riders have contradicted,
// a rider contradicting it by a later event with a lower ts. An event far
// ahead is contradicted by the next K riders and falls back to the
// largest ts accepted after it (whose count starts again); an honest last
// pickup, or one followed by a rider whose clock is behind, is not.
// (Until version 4 of the checkpoint the tail was the largest ts since T
// last moved: one rider behind on the last line could move T and so drop
// the honest pickups before it, leaving their minutes unclosed.)
type tailRule struct {
	max      int64 // the tail
	next     int64 // the largest ts accepted after it (valid with haveNext)
	haveNext bool
	contra   []uint64 // the distinct riders that contradicted it, fewer than k
	seen     uint64   // a bit per rider of contra (rider mod 64): most riders skip the scan
	k        int
}

// observe takes an accepted event of rider at ts: at most k comparisons.
func (r *tailRule) observe(rider uint64, ts int64) {
	switch {
	case ts > r.max:
		r.max, r.haveNext, r.contra, r.seen = ts, false, r.contra[:0], 0
	case ts < r.max:
		if !r.haveNext || ts > r.next {
			r.next, r.haveNext = ts, true
		}
		bit := uint64(1) << (rider & 63)
		if r.seen&bit != 0 && slices.Contains(r.contra, rider) {
			return
		}
		r.seen |= bit
		if r.contra = append(r.contra, rider); len(r.contra) >= r.k {
			r.max, r.haveNext, r.contra, r.seen = r.next, false, r.contra[:0], 0
		}
	}
}

// moved takes T's new value: closes the minutes it passes and forgets the
// events ahead it has reached.
func (s *sequencer) moved(t int64) {
	turned := !s.haveT || minuteOf(t) != minuteOf(s.t)
	s.t, s.haveT = t, true
	s.advance(t)
	if !turned || len(s.ahead) == 0 {
		return
	}
	tm := minuteOf(t)
	keep := make([]aheadEvent, 0, len(s.ahead)) // a new array: copy on compaction
	for _, a := range s.ahead {
		if a.minute > tm {
			keep = append(keep, a)
		}
	}
	s.ahead = keep
	s.recount()
}

func trimCR(l []byte) []byte {
	for len(l) > 0 && l[len(l)-1] == '\r' {
		l = l[:len(l)-1]
	}
	return l
}

// assignProduct gives event i's new product a code, in arrival order. Past
// the 256 codes it reuses the code of a product no window holds any more
// (reusable); with none it reports false, and the caller rejects the event
// alone as too_many_products.
func (s *sequencer) assignProduct(b *batch, i int, u encode.UUID) bool {
	c, err := s.products.Assign(u, s.frontier+1, s.reusable)
	if err != nil {
		return false
	}
	// A fresh code counts as active from now on, so that it cannot change
	// owner again before its own events are counted.
	s.lastCounted[c] = max(s.lastCounted[c], s.frontier+1)
	b.prod[i] = c
	b.hash[i] = dedup.Mix(b.rkey[i], c)
	return true
}

// reusable: no window holds product c's counts any more (its last counted
// minute has slid out of the longest window of every minute still open).
// Rows of minutes before the reuse keep its
// old owner's name (encode.Products.UUIDAt).
func (s *sequencer) reusable(c byte) bool {
	return s.lastCounted[c] <= s.frontier-s.maxW
}

// reresolve looks up again the products of events from..end of b (by
// projecting their lines once more: rare, only after a code changed owner),
// so none keeps a code that now names another product.
func (s *sequencer) reresolve(b *batch, from int) {
	b.newProds = b.newProds[:0]
	b.gen = s.products.Gen()
	var ev encode.Event
	for j := from; j < len(b.ts); j++ {
		if r := s.proj.Project(b.buf[b.evStart[j]:b.evEnd[j]], &ev); r != encode.OK {
			panic("pipeline: a parsed line no longer projects") // parse and Project are one function
		}
		c, ok := s.products.Lookup(ev.Product)
		if !ok {
			b.newProds = append(b.newProds, newProd{idx: int32(j), uuid: ev.Product})
			continue
		}
		b.prod[j] = c
		b.hash[j] = dedup.Mix(b.rkey[j], c)
	}
}

// noteMinute records the state before this batch as the resume point of
// minute m, if m has none yet: every event of m is at or after it.
func (s *sequencer) noteMinute(m int64) {
	s.lastMinute = m
	s.earliest = min(s.earliest, m)
	for _, o := range s.open {
		if o.minute == m {
			return
		}
	}
	if s.batchSnap == nil {
		// A copy of the state before the batch (atStart is reused).
		snap := s.atStart
		snap.clockKey = slices.Clone(s.atStart.clockKey)
		snap.clockTS = slices.Clone(s.atStart.clockTS)
		snap.tailContra = slices.Clone(s.atStart.tailContra)
		// ahead and held are shared views (capture): no copy.
		s.batchSnap = &snap
	}
	s.open = append(s.open, openMinute{minute: m, at: s.batchSnap})
}

// stampResume gives b, when it moves the frontier (so a close follows it),
// the point a restart after that close resumes from: the earliest state
// before an event of a minute still open, or else the state after b.
func (s *sequencer) stampResume(b *batch) {
	keep := s.open[:0]
	for _, o := range s.open {
		if o.minute > s.frontier {
			keep = append(keep, o)
		}
	}
	clear(s.open[len(keep):])
	s.open = keep
	if b.eof {
		// The final close (every minute) resumes at the end of the input.
		b.finalResume = &seqState{}
		s.capture(b.finalResume, b.endPos, b.endLine)
	}
	if s.frontier <= s.stamped {
		return
	}
	s.stamped = s.frontier
	if len(s.open) > 0 {
		b.resume = s.open[0].at
		return
	}
	b.resume = &seqState{}
	s.capture(b.resume, b.endPos, b.endLine)
}
