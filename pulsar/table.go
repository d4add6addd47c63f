package pulsar

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/apache/pulsar-client-go/pulsar"

	"github.com/demandpipe/demandpipe/internal/keyshared"
)

// boundary: a message's line ends at stream offset end.
type boundary struct {
	end  int64
	part int32
	slot int32 // key_shared: the message's sticky-key slot (keyorder.go)
	id   pulsar.MessageID
}

// boundaries is a FIFO ring of message boundaries in stream order, from
// the last acknowledged position to the last message handed to the engine:
// Ack pops from the front, Read pushes at the back. It grows by doubling and
// never shrinks below its peak; its length is the messages handed and not
// yet acknowledged, which a checkpointing sink keeps to about the lateness
// plus a minute of input (RECOVERY.md), ~40 bytes each plus the client's id.
type boundaries struct {
	ring       []boundary
	head, size int
}

func (b *boundaries) push(x boundary) {
	if b.size == len(b.ring) {
		grown := make([]boundary, max(64, 2*len(b.ring)))
		for i := range b.size {
			grown[i] = b.ring[(b.head+i)%len(b.ring)]
		}
		b.ring, b.head = grown, 0
	}
	b.ring[(b.head+b.size)%len(b.ring)] = x
	b.size++
}

func (b *boundaries) at(i int) *boundary { return &b.ring[(b.head+i)%len(b.ring)] }

// popThrough removes the boundaries ending at or before pos, in order.
func (b *boundaries) popThrough(pos int64, fn func(boundary)) {
	for b.size > 0 {
		x := b.at(0)
		if x.end > pos {
			return
		}
		fn(*x)
		*x = boundary{} // let the client's id go
		b.head = (b.head + 1) % len(b.ring)
		b.size--
	}
}

// cmpID orders message ids of one partition: ledger, entry, batch index.
// nil is before every id.
func cmpID(a, b pulsar.MessageID) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	for _, d := range [3]int64{a.LedgerID() - b.LedgerID(), a.EntryID() - b.EntryID(), int64(a.BatchIdx()) - int64(b.BatchIdx())} {
		if d != 0 {
			if d < 0 {
				return -1
			}
			return 1
		}
	}
	return 0
}

// reached reports whether id is at or past last, the last message id of
// its partition: the last id of a batch entry names the batch's last
// message (a broker that gives batch index -1 names the whole entry: then a
// message that ends its batch ends it).
func reached(id, last pulsar.MessageID) bool {
	if last == nil || last.EntryID() < 0 {
		return true // empty partition
	}
	if id == nil {
		return false
	}
	if d := cmpEntry(id, last); d != 0 {
		return d > 0
	}
	// (A resume cursor's id does not know its batch's size: only its index
	// then counts.)
	endsBatch := id.BatchIdx() < 0 || (id.BatchSize() > 0 && id.BatchIdx() == id.BatchSize()-1)
	if last.BatchIdx() < 0 {
		return endsBatch
	}
	return id.BatchIdx() >= last.BatchIdx() || endsBatch
}

// cmpEntry orders the entries (ledger, entry) of two message ids.
func cmpEntry(a, b pulsar.MessageID) int {
	switch {
	case a.LedgerID() != b.LedgerID():
		return cmp.Compare(a.LedgerID(), b.LedgerID())
	default:
		return cmp.Compare(a.EntryID(), b.EntryID())
	}
}

// The cursor's encoding (stored in the engine's checkpoint). Version 1,
// written when no partition has slots (every type but key_shared):
//
//	version byte (1)
//	uvarint n: partitions named
//	n times: uvarint partition, varint ledger, varint entry, varint batch index
//
// Version 2 (key_shared, keyorder.go) adds per partition a floor and the
// last message handed of each sticky-key slot:
//
//	version byte (2)
//	uvarint n: partitions named
//	n times:
//	  uvarint partition
//	  id: varint ledger, varint entry, varint batch index (the last handed)
//	  uvarint floor: 0 none, 1 the id above, 2 an id follows (varints as above)
//	  uvarint k: slots named, in increasing order
//	  k times: uvarint slot - (previous slot + 1) (the first: slot),
//	           varint ledger - the id's ledger, varint entry - the id's entry,
//	           varint batch index
//
// About 4 to 6 bytes a slot: at most ~400 KB a partition with all 65,536
// slots, 1/N of that for a consumer of N with key-ranges=. A partition
// absent from the cursor has had nothing read before the position. A
// version 1 cursor reads as every partition's id being its floor: what an
// in-order type (failover, exclusive) means by it, and what key_shared
// meant before version 2.
const (
	cursorV1 = 1
	cursorV2 = 2
)

// cursorPart is one partition of a cursor.
type cursorPart struct {
	last  pulsar.MessageID // the last message handed before the position (nil: none)
	floor pulsar.MessageID // every message at or before it was handed (nil: none)
	slots []cursorSlot     // key_shared: per slot, the last message handed
}

type cursorSlot struct {
	slot int32
	id   slotID
}

func appendID(b []byte, id pulsar.MessageID) []byte {
	b = binary.AppendVarint(b, id.LedgerID())
	b = binary.AppendVarint(b, id.EntryID())
	return binary.AppendVarint(b, int64(id.BatchIdx()))
}

func encodeCursor(parts []cursorPart) []byte {
	v2, n := false, 0
	for _, c := range parts {
		if c.last != nil {
			n++
			v2 = v2 || len(c.slots) > 0 || (c.floor == nil) != (c.last == nil) || (c.floor != nil && cmpID(c.floor, c.last) != 0)
		}
	}
	b := []byte{cursorV1}
	if v2 {
		b[0] = cursorV2
	}
	b = binary.AppendUvarint(b, uint64(n))
	for p, c := range parts {
		if c.last == nil {
			continue
		}
		b = binary.AppendUvarint(b, uint64(p))
		b = appendID(b, c.last)
		if !v2 {
			continue
		}
		switch {
		case c.floor == nil:
			b = binary.AppendUvarint(b, 0)
		case cmpID(c.floor, c.last) == 0:
			b = binary.AppendUvarint(b, 1)
		default:
			b = appendID(binary.AppendUvarint(b, 2), c.floor)
		}
		b = binary.AppendUvarint(b, uint64(len(c.slots)))
		next := int32(0)
		for _, s := range c.slots {
			b = binary.AppendUvarint(b, uint64(s.slot-next))
			b = binary.AppendVarint(b, s.id.ledger-c.last.LedgerID())
			b = binary.AppendVarint(b, s.id.entry-c.last.EntryID())
			b = binary.AppendVarint(b, int64(s.id.batch-2))
			next = s.slot + 1
		}
	}
	return b
}

var errCursor = errors.New("pulsar: the checkpoint's cursor is corrupt: run with -resume=false to start over (the subscription then redelivers what it has not acknowledged)")

// decodeCursor returns the cursor's partitions (last nil where none).
func decodeCursor(b []byte) ([]cursorPart, error) {
	if len(b) == 0 {
		return nil, nil
	}
	version := b[0]
	if version != cursorV1 && version != cursorV2 {
		return nil, fmt.Errorf("pulsar: checkpoint cursor version %d, this build reads %d and %d: run with -resume=false to start over", b[0], cursorV1, cursorV2)
	}
	b = b[1:]
	bad := false
	varint := func() int64 {
		v, k := binary.Varint(b)
		if k <= 0 {
			bad = true
			return 0
		}
		b = b[k:]
		return v
	}
	uvarint := func(limit uint64) uint64 {
		v, k := binary.Uvarint(b)
		if k <= 0 || v > limit {
			bad = true
			return 0
		}
		b = b[k:]
		return v
	}
	batchIdx := func() int32 {
		v := varint()
		if v < -1 || v > 1<<30 {
			bad = true
		}
		return int32(v)
	}
	n := uvarint(1 << 16)
	var parts []cursorPart
	for range n {
		p := int(uvarint(1<<16 - 1))
		l, e, bi := varint(), varint(), batchIdx()
		if bad {
			return nil, errCursor
		}
		for len(parts) <= p {
			parts = append(parts, cursorPart{})
		}
		c := &parts[p]
		if c.last != nil {
			return nil, errCursor // named twice
		}
		c.last = pulsar.NewMessageID(l, e, bi, int32(p))
		if version == cursorV1 {
			c.floor = c.last
			continue
		}
		switch uvarint(2) {
		case 1:
			c.floor = c.last
		case 2:
			fl, fe, fb := varint(), varint(), batchIdx()
			c.floor = pulsar.NewMessageID(fl, fe, fb, int32(p))
		}
		k := uvarint(keyshared.HashSpace)
		if bad {
			return nil, errCursor
		}
		if k > 0 {
			c.slots = make([]cursorSlot, 0, k)
		}
		next := uint64(0)
		for range k {
			slot := next + uvarint(keyshared.HashSpace)
			dl, de, sb := varint(), varint(), batchIdx()
			if bad || slot >= keyshared.HashSpace {
				return nil, errCursor
			}
			c.slots = append(c.slots, cursorSlot{slot: int32(slot), id: slotID{ledger: l + dl, entry: e + de, batch: sb + 2}})
			next = slot + 1
		}
	}
	if bad || len(b) != 0 {
		return nil, errCursor
	}
	return parts, nil
}
