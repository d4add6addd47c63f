package pipeline

import (
	"maps"
	"math"
	"slices"

	"github.com/cespare/xxhash/v2"

	"github.com/demandpipe/demandpipe/dedup"
	"github.com/demandpipe/demandpipe/encode"
)

const noMinute = math.MinInt64 / 4

// sequencer applies the watermark, lateness, the future rule and dedup in
// arrival order. It is the one stage that must see events one at a time in
// order; it does only a compare and a hash-table probe per event (~30 ns),
// so it keeps up with several parse workers.
//
// The future rule (README, "Semantics"): an event more than skew ahead of
// the event-time frontier F = max(largest accepted ts, last confirmed time)
// is held: not counted, not moving the watermark. The stream is taken to
// have moved (a gap in the data, a restart after an outage) once the held
// events that arrived since the last accepted one come from confirm
// distinct riders; the confirmed time is the confirm-th largest of their
// per-rider largest ts, so fewer than confirm riders with bad clocks can
// never set it. Then every held event within skew of the new frontier is
// accepted, in arrival order, exactly as it would have been without the
// rule. An event still held when maxHeld newer ones are held, when the
// frontier has moved maxHold past the time it was held, or at the end of
// the input is rejected as future.
type sequencer struct {
	lateness int64 // ms
	idle     int64 // ms
	dedup    *dedup.Table
	haveTS   bool
	maxTS    int64
	frontier int64 // minutes <= frontier are closed
	// idle clock: event time advances with the wall clock while no input
	// arrives; anchored at the last event.
	lastEventWall int64 // idleClockUnset after a restore, until the next batch
	anchorTS      int64

	fut    futureRule
	ref    int64            // last confirmed time (ms); valid when refSet
	refSet bool             //
	held   []pending        // arrival order
	streak map[uint64]int64 // rider -> largest ts, held since the last accepted event
	vals   []int64          // scratch for confirm
	oldest int64            // smallest heldAt in held

	// product codes (see assignProduct)
	products    *encode.Products
	maxW        int64 // longest window, minutes
	lastCounted [encode.MaxProducts]int64
	proj        encode.Projector

	// resume points (checkpoint.go)
	open       []openMinute // minutes not closed yet, by first appearance
	atStart    seqState     // the state before the batch being sequenced
	batchSnap  *seqState    // a heap copy of atStart, once a new minute needs it
	lastMinute int64        // the last minute noted in open
	stamped    int64        // the frontier last given a resume point
	lastEnd    [2]int64     // pos and line after the last input batch

	// per-batch tallies
	late, dups int64
	accepted   bool
}

// futureRule is the future rule's knobs (Config.Future).
type futureRule struct {
	skew    int64 // ms; 0: rule off
	confirm int   // distinct riders
	maxHeld int
	maxHold int64 // ms of frontier progress
	live    bool  // also bound ts by the wall clock
}

// pending is an event the sequencer holds (or rejects as future). Holding
// is rare, so it owns copies of its rider id and line.
type pending struct {
	ts       int64
	lat, lng float64
	prod     byte
	hash     uint64
	riderKey uint64 // the rider alone: riders are counted, not events
	line     int64
	heldAt   int64 // frontier (ms) when first held
	rider    []byte
	text     []byte // the line, for the rejects file
	reason   encode.Reason
	// newProduct: the product had no code when the event was held; it
	// gets one when the event is released.
	newProduct bool
	uuid       encode.UUID
}

func newSequencer(lateness, idle int64, dt *dedup.Table, fr futureRule, products *encode.Products, maxW int) *sequencer {
	s := &sequencer{lateness: lateness, idle: idle, dedup: dt, frontier: noMinute, fut: fr, streak: map[uint64]int64{},
		products: products, maxW: int64(maxW), lastMinute: noMinute, stamped: noMinute}
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

// advance raises the largest ts and closes the minutes it passes.
func (s *sequencer) advance(ts int64) {
	if s.haveTS && ts <= s.maxTS {
		return
	}
	s.haveTS = true
	s.maxTS = ts
	if f := floorDiv(ts-s.lateness, 60000) - 1; f > s.frontier {
		s.frontier = f
		s.dedup.Release(f)
	}
}

// front is the event-time frontier the future rule measures from.
func (s *sequencer) front() int64 {
	if s.refSet && s.ref > s.maxTS {
		return s.ref
	}
	return s.maxTS
}

// idleClockUnset marks lastEventWall after a restore.
const idleClockUnset = -1

// sequence marks the counted events of b (in order) and stamps the frontier.
func (s *sequencer) sequence(b *batch, st *Stats, wallNow int64) {
	if s.lastEventWall == idleClockUnset {
		s.lastEventWall = wallNow
	}
	if b.idle {
		if s.haveTS && wallNow-s.lastEventWall >= s.idle {
			s.advance(s.anchorTS + (wallNow - s.lastEventWall))
		}
	}
	s.late, s.dups, s.accepted = 0, 0, false
	if b.idle { // no input: it sits where the last input batch ended
		b.pos, b.firstLine, b.endPos, b.endLine = s.lastEnd[0], s.lastEnd[1], s.lastEnd[0], s.lastEnd[1]
	}
	s.capture(&s.atStart, b.pos, b.firstLine)
	s.batchSnap = nil
	if b.gen != s.products.Gen() {
		s.reresolve(b, 0) // a code changed owner after b was parsed
	}
	np := 0 // next of b.newProds
	skew := s.fut.skew
	for i, n := 0, len(b.ts); i < n; i++ {
		var newP *newProd // the event's product has no code yet
		if np < len(b.newProds) && b.newProds[np].idx == int32(i) {
			newP = &b.newProds[np]
			np++
		}
		ts := b.ts[i]
		if skew > 0 {
			if s.fut.live && ts > wallNow+skew {
				// Ahead of this machine's clock: no confirmation can make
				// it true.
				b.dropped = append(b.dropped, s.pendingOf(b, i, newP, encode.Future))
				continue
			}
			if s.haveTS && ts > s.front()+skew {
				gen := s.products.Gen()
				s.hold(b, s.pendingOf(b, i, newP, encode.Future))
				if s.front()-s.oldest > s.fut.maxHold {
					s.expire(b)
				}
				if s.products.Gen() != gen {
					s.reresolve(b, i+1) // released events changed a code's owner
					np = 0
				}
				continue
			}
		}
		// A new product gets its code as its first on-time event is
		// accepted (a late one needs none).
		if newP != nil && minuteOf(ts) > s.frontier {
			gen := s.products.Gen()
			if !s.assignProduct(b, i, newP.uuid) {
				b.rejects = append(b.rejects, reject{line: b.evLine[i], reason: encode.TooManyProducts, start: b.evStart[i], end: b.evEnd[i]})
				continue
			}
			if s.products.Gen() != gen {
				s.reresolve(b, i+1)
				np = 0
			}
		}
		s.accept(b, i)
		if len(s.held) > 0 && s.front()-s.oldest > s.fut.maxHold {
			s.expire(b)
		}
	}
	if s.accepted {
		s.lastEventWall = wallNow
		s.anchorTS = s.maxTS
	}
	b.frontier = s.frontier
	s.lastEnd = [2]int64{b.endPos, b.endLine}
	s.stampResume(b)
	if b.eof {
		// Nothing can confirm what is still held.
		b.dropped = append(b.dropped, s.held...)
		clear(s.held)
		s.held = s.held[:0]
		if s.haveTS {
			b.final, b.hasFinal = minuteOf(s.maxTS), true
		}
	}
	st.Late.Add(s.late)
	st.Duplicates.Add(s.dups)
	st.Counted.Add(int64(len(b.counted)))
	st.Held.Store(int64(len(s.held)))
	st.DedupBytes.Store(int64(s.dedup.Bytes()))
	if s.haveTS {
		st.MaxTS.Store(s.maxTS)
	}
}

// accept is the contract's step for an event that is not ahead: late, or
// first for its (rider, product, minute), or a duplicate; it moves the
// watermark unless late.
func (s *sequencer) accept(b *batch, i int) {
	if len(s.streak) > 0 {
		clear(s.streak)
	}
	ts := b.ts[i]
	m := minuteOf(ts)
	if m <= s.frontier {
		s.late++
		return
	}
	s.accepted = true
	if m != s.lastMinute {
		s.noteMinute(m)
	}
	if s.dedup.First(m, b.prod[i], b.hash[i], b.rider(i)) {
		b.counted = append(b.counted, int32(i))
		b.minute = append(b.minute, m)
		if p := b.prod[i]; m > s.lastCounted[p] {
			s.lastCounted[p] = m
		}
	} else {
		s.dups++
	}
	s.advance(ts)
}

// pendingOf copies event i of b out of the batch, to be held or dropped
// for reason r; newP is its product when it has no code yet.
func (s *sequencer) pendingOf(b *batch, i int, newP *newProd, r encode.Reason) pending {
	rd := b.rider(i)
	p := pending{
		ts: b.ts[i], lat: b.lat[i], lng: b.lng[i], prod: b.prod[i], hash: b.hash[i],
		riderKey: xxhash.Sum64(rd), line: b.evLine[i], heldAt: s.front(),
		rider: append([]byte(nil), rd...), reason: r,
	}
	if newP != nil {
		p.newProduct, p.uuid = true, newP.uuid
	}
	if b.evStart[i] >= 0 {
		p.text = append([]byte(nil), trimCR(b.buf[b.evStart[i]:b.evEnd[i]])...)
	}
	return p
}

func trimCR(l []byte) []byte {
	for len(l) > 0 && l[len(l)-1] == '\r' {
		l = l[:len(l)-1]
	}
	return l
}

// hold keeps p and confirms the new time once enough riders agree.
func (s *sequencer) hold(b *batch, p pending) {
	if len(s.held) >= s.fut.maxHeld {
		b.dropped = append(b.dropped, s.held[0])
		s.held[0] = pending{}
		s.held = s.held[1:]
	}
	if len(s.held) == 0 || p.heldAt < s.oldest {
		s.oldest = p.heldAt
	}
	s.held = append(s.held, p)
	if old, ok := s.streak[p.riderKey]; !ok || p.ts > old {
		s.streak[p.riderKey] = p.ts
	}
	if len(s.streak) < s.fut.confirm {
		return
	}
	// Confirmed: the confirm-th largest per-rider time.
	s.vals = s.vals[:0]
	for _, v := range s.streak {
		s.vals = append(s.vals, v)
	}
	slices.Sort(s.vals)
	x := s.vals[len(s.vals)-s.fut.confirm]
	if !s.refSet || x > s.ref {
		s.ref, s.refSet = x, true
	}
	clear(s.streak)
	// Release in arrival order; what is still ahead stays held (its
	// riders are fewer than confirm, so it cannot confirm again alone).
	held := s.held
	s.held = nil
	s.oldest = math.MaxInt64
	for k := range held {
		q := &held[k]
		if q.ts > s.front()+s.fut.skew {
			s.held = append(s.held, *q)
			s.oldest = min(s.oldest, q.heldAt)
			continue
		}
		j := b.appendEvent(q)
		if q.newProduct && minuteOf(q.ts) > s.frontier && !s.assignProduct(b, j, q.uuid) {
			q.reason = encode.TooManyProducts
			b.dropped = append(b.dropped, *q)
			continue
		}
		s.accept(b, j)
	}
	clear(held)
}

// expire rejects held events the frontier has left maxHold behind.
func (s *sequencer) expire(b *batch) {
	f := s.front()
	keep := s.held[:0]
	s.oldest = math.MaxInt64
	for _, p := range s.held {
		if f-p.heldAt > s.fut.maxHold {
			b.dropped = append(b.dropped, p)
		} else {
			keep = append(keep, p)
			s.oldest = min(s.oldest, p.heldAt)
		}
	}
	clear(s.held[len(keep):])
	s.held = keep
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
	b.hash[i] = dedup.Mix(xxhash.Sum64(b.rider(i)), c)
	return true
}

// reusable: no window holds product c's counts any more (its last counted
// minute has slid out of the longest window of every minute still open),
// and no held event names it. Rows of minutes before the reuse keep its
// old owner's name (encode.Products.UUIDAt).
func (s *sequencer) reusable(c byte) bool {
	if s.lastCounted[c] > s.frontier-s.maxW {
		return false
	}
	for k := range s.held {
		if s.held[k].prod == c {
			return false
		}
	}
	return true
}

// reresolve looks up again the products of events from..end of b (by
// projecting their lines once more: rare, only after a code changed owner),
// so none keeps a code that now names another product.
func (s *sequencer) reresolve(b *batch, from int) {
	b.newProds = b.newProds[:0]
	b.gen = s.products.Gen()
	var ev encode.Event
	for j := from; j < len(b.ts); j++ {
		if b.evStart[j] < 0 {
			continue // released from the hold: its code is protected
		}
		if r := s.proj.Project(b.buf[b.evStart[j]:b.evEnd[j]], &ev); r != encode.OK {
			panic("pipeline: a parsed line no longer projects") // parse and Project are one function
		}
		c, ok := s.products.Lookup(ev.Product)
		if !ok {
			b.newProds = append(b.newProds, newProd{idx: int32(j), uuid: ev.Product})
			continue
		}
		b.prod[j] = c
		b.hash[j] = dedup.Mix(xxhash.Sum64(b.rider(j)), c)
	}
}

// noteMinute records the state before this batch as the resume point of
// minute m, if m has none yet: every event of m is at or after it.
func (s *sequencer) noteMinute(m int64) {
	s.lastMinute = m
	for _, o := range s.open {
		if o.minute == m {
			return
		}
	}
	if s.batchSnap == nil {
		// A copy of the state before the batch (atStart is reused).
		snap := s.atStart
		snap.held = slices.Clone(s.atStart.held)
		snap.streak = maps.Clone(s.atStart.streak)
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
