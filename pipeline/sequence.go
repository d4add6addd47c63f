package pipeline

import (
	"math"
	"slices"

	"github.com/cespare/xxhash/v2"

	"github.com/demandpipe/demandpipe/dedup"
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
	lastEventWall int64
	anchorTS      int64

	fut    futureRule
	ref    int64            // last confirmed time (ms); valid when refSet
	refSet bool             //
	held   []pending        // arrival order
	streak map[uint64]int64 // rider -> largest ts, held since the last accepted event
	vals   []int64          // scratch for confirm
	oldest int64            // smallest heldAt in held

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
	text     []byte // the line, for the rejects file (nil when not kept)
}

func newSequencer(lateness, idle int64, dt *dedup.Table, fr futureRule) *sequencer {
	return &sequencer{lateness: lateness, idle: idle, dedup: dt, frontier: noMinute, fut: fr, streak: map[uint64]int64{}}
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

// sequence marks the counted events of b (in order) and stamps the frontier.
func (s *sequencer) sequence(b *batch, st *Stats, wallNow int64) {
	if b.idle {
		if s.haveTS && wallNow-s.lastEventWall >= s.idle {
			s.advance(s.anchorTS + (wallNow - s.lastEventWall))
		}
	}
	s.late, s.dups, s.accepted = 0, 0, false
	skew := s.fut.skew
	for i, n := 0, len(b.ts); i < n; i++ {
		ts := b.ts[i]
		if skew > 0 {
			if s.fut.live && ts > wallNow+skew {
				// Ahead of this machine's clock: no confirmation can make
				// it true.
				b.future = append(b.future, s.pendingOf(b, i, true))
				continue
			}
			if s.haveTS && ts > s.front()+skew {
				s.hold(b, s.pendingOf(b, i, true))
				if s.front()-s.oldest > s.fut.maxHold {
					s.expire(b)
				}
				continue
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
	if b.eof {
		// Nothing can confirm what is still held.
		b.future = append(b.future, s.held...)
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
	if s.dedup.First(m, b.prod[i], b.hash[i], b.rider(i)) {
		b.counted = append(b.counted, int32(i))
		b.minute = append(b.minute, m)
	} else {
		s.dups++
	}
	s.advance(ts)
}

// pendingOf copies event i of b out of the batch.
func (s *sequencer) pendingOf(b *batch, i int, withText bool) pending {
	r := b.rider(i)
	p := pending{
		ts: b.ts[i], lat: b.lat[i], lng: b.lng[i], prod: b.prod[i], hash: b.hash[i],
		riderKey: xxhash.Sum64(r), line: b.evLine[i], heldAt: s.front(),
		rider: append([]byte(nil), r...),
	}
	if withText && b.evStart[i] >= 0 {
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
		b.future = append(b.future, s.held[0])
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
		s.accept(b, b.appendEvent(q))
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
			b.future = append(b.future, p)
		} else {
			keep = append(keep, p)
			s.oldest = min(s.oldest, p.heldAt)
		}
	}
	clear(s.held[len(keep):])
	s.held = keep
}
