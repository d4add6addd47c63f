package pulsar

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/apache/pulsar-client-go/pulsar"
)

// boundary: a message's line ends at stream offset end.
type boundary struct {
	end  int64
	part int32
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

// The cursor's encoding (stored in the engine's checkpoint):
//
//	version byte (1)
//	uvarint n: partitions named
//	n times: uvarint partition, varint ledger, varint entry, varint batch index
//
// A partition absent from the cursor has had nothing read before the
// position.
const cursorVersion = 1

func encodeCursor(ids []pulsar.MessageID) []byte {
	b := []byte{cursorVersion}
	n := 0
	for _, id := range ids {
		if id != nil {
			n++
		}
	}
	b = binary.AppendUvarint(b, uint64(n))
	for p, id := range ids {
		if id == nil {
			continue
		}
		b = binary.AppendUvarint(b, uint64(p))
		b = binary.AppendVarint(b, id.LedgerID())
		b = binary.AppendVarint(b, id.EntryID())
		b = binary.AppendVarint(b, int64(id.BatchIdx()))
	}
	return b
}

var errCursor = errors.New("pulsar: the checkpoint's cursor is corrupt: run with -resume=false to start over (the subscription then redelivers what it has not acknowledged)")

// decodeCursor returns the ids per partition (nil where none).
func decodeCursor(b []byte) ([]pulsar.MessageID, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if b[0] != cursorVersion {
		return nil, fmt.Errorf("pulsar: checkpoint cursor version %d, this build reads %d: run with -resume=false to start over", b[0], cursorVersion)
	}
	b = b[1:]
	next := func() (int64, bool) {
		v, k := binary.Varint(b)
		if k <= 0 {
			return 0, false
		}
		b = b[k:]
		return v, true
	}
	n, k := binary.Uvarint(b)
	if k <= 0 || n > 1<<16 {
		return nil, errCursor
	}
	b = b[k:]
	var ids []pulsar.MessageID
	for range n {
		p, k := binary.Uvarint(b)
		if k <= 0 || p >= 1<<16 {
			return nil, errCursor
		}
		b = b[k:]
		l, ok1 := next()
		e, ok2 := next()
		bi, ok3 := next()
		if !ok1 || !ok2 || !ok3 {
			return nil, errCursor
		}
		for len(ids) <= int(p) {
			ids = append(ids, nil)
		}
		ids[p] = pulsar.NewMessageID(l, e, int32(bi), int32(p))
	}
	if len(b) != 0 {
		return nil, errCursor
	}
	return ids, nil
}
