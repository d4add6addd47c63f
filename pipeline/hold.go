package pipeline

import (
	"bytes"
	"math"
	"slices"

	"github.com/demandpipe/demandpipe/dedup"
	"github.com/demandpipe/demandpipe/encode"
)

// Product codes are one byte, so the 256 of them are a resource every
// product shares. A code is held for the longest window after its
// product's last counted minute, so one event of a made-up product type
// takes a code for 32 minutes, and 256 junk UUIDs ahead of real data took
// them all: every real event was rejected as too_many_products (issue 21).
//
// The hold keeps the last FutureConfig.ProductReserve codes for products K
// riders have confirmed, K being event time's confirmation count: while
// fewer codes than the reserve are free, a new product's events wait here,
// not counted, until K distinct riders have used it; then they are
// released, in input order and before the event that confirmed it, and
// counted as if they had never waited (their minutes are still open). The
// events of a product never confirmed are rejected as unconfirmed_product
// when their minute closes, or at the end of the input. So fewer than K
// riders cannot take the reserve from the products after them, and the
// damage of a junk UUID stays its own events. A real product's events wait
// only while codes are scarce (more than 192 product types active at once
// by default), and then only until its K-th rider, a fraction of a second
// in a city; a product of fewer riders than K in its minutes' lateness is
// rejected then, counted, with its lines in the rejects file.

// heldEvent is an event waiting for its product's confirmation: what the
// locate and count stages need of it, and its line for the rejects file.
type heldEvent struct {
	uuid         encode.UUID
	minute, ts   int64
	lat, lng     float64
	rkey, rcheck uint64
	line         int64
	text         []byte
}

// heldReject is a held event rejected: its line and text, since the batch
// that read it is gone.
type heldReject struct {
	line   int64
	reason encode.Reason
	text   []byte
}

// maxHeld bounds the waiting events (~600 bytes each with their text):
// past it a new product's event is rejected at once as too_many_products.
const maxHeld = 20_000

// pendingProduct is a product whose events wait: the distinct riders seen
// (fewer than K).
type pendingProduct struct {
	riders []uint64
}

// codesFree counts the codes a new product could take: unused, or of a
// product no window holds any more.
func (s *sequencer) codesFree() int {
	n := s.products.Len()
	free := encode.MaxProducts - n
	for c := range n {
		if s.reusable(byte(c)) {
			free++
		}
	}
	return free
}

// newProduct decides event i, the on-time event of a product without a
// code: a code now (released held events of its product first), a wait,
// or a reject. It reports whether i is to be accepted.
func (s *sequencer) newProduct(b *batch, i int, u encode.UUID) bool {
	if c, ok := s.products.Lookup(u); ok { // given a code since b was parsed
		b.prod[i], b.hash[i] = c, dedup.Mix(b.rkey[i], c)
		return true
	}
	p := s.pending[u]
	if p == nil && (s.fut.reserve == 0 || s.codesFree() > s.fut.reserve) {
		return s.assignOrReject(b, i, u)
	}
	if p == nil {
		if !s.canHold(b, i) {
			s.rejectAt(b, i, encode.TooManyProducts)
			return false
		}
		p = &pendingProduct{}
		s.pending[u] = p
	}
	if r := b.rkey[i]; !slices.Contains(p.riders, r) {
		p.riders = append(p.riders, r)
	}
	if len(p.riders) < s.fut.confirm && s.codesFree() <= s.fut.reserve {
		if !s.canHold(b, i) {
			s.rejectAt(b, i, encode.TooManyProducts)
			return false
		}
		s.hold(b, i, u)
		return false
	}
	// Confirmed (or codes are free again): a code, then its events.
	delete(s.pending, u)
	if !s.assignProduct(b, i, u) {
		// No code at all: its events are the excess, rejected in their
		// input order (held ones, then this one).
		s.dropHeld(b, func(h *heldEvent) bool { return h.uuid == u }, encode.TooManyProducts)
		b.heldRejects = append(b.heldRejects, heldReject{line: b.evLine[i], reason: encode.TooManyProducts,
			text: bytes.Clone(trimCR(b.buf[b.evStart[i]:b.evEnd[i]]))})
		return false
	}
	s.release(b, u, b.prod[i])
	return true
}

// canHold reports whether event i of b fits among the held events: at most
// maxHeld, and within the sequencer's share of -max-memory (roomFor).
func (s *sequencer) canHold(b *batch, i int) bool {
	return len(s.held) < maxHeld && s.roomFor(heldCost+int64(b.evEnd[i]-b.evStart[i]))
}

func (s *sequencer) assignOrReject(b *batch, i int, u encode.UUID) bool {
	if !s.assignProduct(b, i, u) {
		s.rejectAt(b, i, encode.TooManyProducts)
		return false
	}
	return true
}

func (s *sequencer) rejectAt(b *batch, i int, r encode.Reason) {
	b.rejects = append(b.rejects, reject{line: b.evLine[i], reason: r, start: b.evStart[i], end: b.evEnd[i]})
}

// hold keeps event i of b, whose product u waits. Its minute is noted open
// (noteMinute), so that a checkpoint's resume point is never after it.
func (s *sequencer) hold(b *batch, i int, u encode.UUID) {
	ts := b.ts[i]
	m := minuteOf(ts)
	if m != s.lastMinute {
		s.noteMinute(m)
	}
	text := bytes.Clone(trimCR(b.buf[b.evStart[i]:b.evEnd[i]]))
	s.held = append(s.held, heldEvent{
		uuid: u, minute: m, ts: ts, lat: b.lat[i], lng: b.lng[i], rkey: b.rkey[i], rcheck: b.rcheck[i],
		line: b.evLine[i], text: text,
	})
	s.seqBytes += heldCost + int64(len(text))
}

// release appends the held events of product u, now code c, to b and
// accepts them in their input order; one whose minute has closed is
// rejected as unconfirmed_product instead (it waited past its lateness).
func (s *sequencer) release(b *batch, u encode.UUID, c byte) {
	keep := make([]heldEvent, 0, len(s.held)) // a new array: copy on compaction (sequence.go)
	for k := range s.held {
		h := s.held[k]
		if h.uuid != u {
			keep = append(keep, h)
			continue
		}
		if h.minute <= s.frontier {
			b.heldRejects = append(b.heldRejects, heldReject{line: h.line, reason: encode.UnconfirmedProduct, text: h.text})
			continue
		}
		j := b.appendEvent(&h, c)
		s.accept(b, j)
	}
	s.held = keep
	s.recount()
}

// appendEvent adds held event h, of product code c, to b's columns (its
// line after b's own), and returns its index.
func (b *batch) appendEvent(h *heldEvent, c byte) int {
	j := len(b.ts)
	start := len(b.buf)
	b.buf = append(b.buf, h.text...)
	b.ts, b.lat, b.lng = append(b.ts, h.ts), append(b.lat, h.lat), append(b.lng, h.lng)
	b.prod, b.hash = append(b.prod, c), append(b.hash, dedup.Mix(h.rkey, c))
	b.rkey, b.rcheck = append(b.rkey, h.rkey), append(b.rcheck, h.rcheck)
	b.riderOff = append(b.riderOff, b.riderOff[len(b.riderOff)-1]) // riders are not kept
	b.evLine = append(b.evLine, h.line)
	b.evStart, b.evEnd = append(b.evStart, int32(start)), append(b.evEnd, int32(len(b.buf)))
	return j
}

// expireHeld rejects the held events whose minute has closed (all of them
// at the end of the input) as unconfirmed_product, and forgets the
// products left with none.
func (s *sequencer) expireHeld(b *batch) {
	if len(s.held) == 0 {
		return
	}
	through := s.frontier
	if b.eof {
		through = math.MaxInt64
	}
	s.dropHeld(b, func(h *heldEvent) bool { return h.minute <= through }, encode.UnconfirmedProduct)
}

// dropHeld rejects the held events drop selects, with reason r.
func (s *sequencer) dropHeld(b *batch, drop func(*heldEvent) bool, r encode.Reason) {
	first := slices.IndexFunc(s.held, func(h heldEvent) bool { return drop(&h) })
	if first < 0 {
		return // nothing to drop: the array stays
	}
	keep := make([]heldEvent, first, len(s.held)) // a new array: copy on compaction (sequence.go)
	copy(keep, s.held[:first])
	dropped := false
	for k := first; k < len(s.held); k++ {
		h := &s.held[k]
		if !drop(h) {
			keep = append(keep, *h)
			continue
		}
		dropped = true
		b.heldRejects = append(b.heldRejects, heldReject{line: h.line, reason: r, text: h.text})
	}
	s.held = keep
	if dropped {
		s.recount()
		s.repend()
	}
}

// repend rebuilds the pending products from the held events: a product's
// riders are those of its events still waiting, so that a resume, which
// reads again every event of an open minute, confirms exactly where the
// first run did.
func (s *sequencer) repend() {
	clear(s.pending)
	for k := range s.held {
		h := &s.held[k]
		p := s.pending[h.uuid]
		if p == nil {
			p = &pendingProduct{}
			s.pending[h.uuid] = p
		}
		if !slices.Contains(p.riders, h.rkey) {
			p.riders = append(p.riders, h.rkey)
		}
	}
}
