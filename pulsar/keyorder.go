package pulsar

import (
	"unsafe"

	"github.com/apache/pulsar-client-go/pulsar"

	"github.com/demandpipe/demandpipe/internal/keyshared"
)

// Copies on key_shared. A reconnect makes the broker send again every
// message it had sent and not seen acknowledged; the source drops those
// it took before (copies) by their ids. On failover and exclusive a
// partition's messages reach the consumer in id order, so a message at or
// before the last one taken from its partition is a copy. Key_Shared
// keeps the order of each sticky-key hash slot only: after a reconnect a
// broker may send newer messages of one slot before the replay of older
// ones of another (apache/pulsar#10762), older messages the client held
// in its receive queue at the disconnect and never handed over among
// them; the last id of the partition would call them copies and lose
// them.
//
// So on key_shared the source keeps, per partition and per slot, the last
// message taken and the last one acknowledged (or resumed at), and a
// message is a copy if it is at or before the last one taken of its slot.
// That is exact because it is the broker's own guarantee: it dispatches a
// slot's messages in id order, and before a replay of a slot's message it
// sends no newer message of that slot
// (PersistentStickyKeyDispatcherMultipleConsumers: a Normal read holds back
// entries whose hash redeliveryMessages contains). RECOVERY.md had planned
// the set of ids taken and not yet acknowledged, plus the acknowledged set
// with its holes as Pulsar's cursor keeps it; with key-ranges= the holes
// are the other consumers' messages, which never come, so that set grows
// with every message; the per-slot ids are bounded by the hash space
// (65,536 slots) whatever the input, and each message costs a hash of its
// key and an array index. The checkpoint's cursor holds the slots' ids
// (cursor version 2, table.go), so a restart drops exactly the messages
// handed before its position.
//
// A batch entry is routed by the key of its first message (the Go
// client's batch builder puts that key in the entry's metadata), so the
// later messages of an entry take the slot of its first; should the first
// not be seen (an entry arriving part-way through), a message takes its
// own key's slot, exact whenever an entry holds one key (key-based
// batching or none, which key-ranges= requires anyway).

// slotsPerChunk slots share an allocation: a partition's tables grow by
// 256 slots x 48 bytes = 12 KiB as the slots it meets, to 3 MiB with all
// 65,536 (a consumer with key-ranges= meets only its own).
const slotsPerChunk = 256

// slotID is a message id in the slot tables; the zero value is none.
type slotID struct {
	ledger, entry int64
	batch         int32 // batch index + 2: 0 none, 1 a message without a batch index (-1)
}

func toSlotID(id pulsar.MessageID) slotID {
	return slotID{ledger: id.LedgerID(), entry: id.EntryID(), batch: id.BatchIdx() + 2}
}

func (s slotID) none() bool { return s.batch == 0 }

// messageID is s as a client id of partition part (nil for none).
func (s slotID) messageID(part int) pulsar.MessageID {
	if s.none() {
		return nil
	}
	return pulsar.NewMessageID(s.ledger, s.entry, s.batch-2, int32(part))
}

// covers reports whether id is at or before s (never for none).
func (s slotID) covers(id pulsar.MessageID) bool {
	switch {
	case s.none():
		return false
	case s.ledger != id.LedgerID():
		return s.ledger > id.LedgerID()
	case s.entry != id.EntryID():
		return s.entry > id.EntryID()
	}
	return s.batch-2 >= id.BatchIdx()
}

// before reports whether s comes before e (none before everything).
func (s slotID) before(e slotID) bool {
	switch {
	case s.none() || e.none():
		return s.none() && !e.none()
	case s.ledger != e.ledger:
		return s.ledger < e.ledger
	case s.entry != e.entry:
		return s.entry < e.entry
	}
	return s.batch < e.batch
}

// slotState is one slot's last message taken (Read's goroutine) and last
// acknowledged or resumed at (under Source.mu): separate words, so the two
// goroutines never share one.
type slotState struct{ taken, acked slotID }

type slotChunk [slotsPerChunk]slotState

// keyOrder is one partition's per-slot state on key_shared.
type keyOrder struct {
	// chunks[c] holds slots c*256 ..; a chunk is allocated under
	// Source.mu (Cursor reads the array under it) and never freed
	// before the source.
	chunks [keyshared.HashSpace / slotsPerChunk]*slotChunk
	// floor: every message at or before it was handed before the resume
	// position; from a cursor without slots (version 1, or a type whose
	// partitions arrive in order). nil: none.
	floor pulsar.MessageID
	// The batch entry last seen and its slot (a batch's later messages).
	entryLedger, entryID int64
	entrySlot            int32
}

// state returns slot's state, nil if its chunk was never allocated.
func (o *keyOrder) state(slot int32) *slotState {
	c := o.chunks[slot/slotsPerChunk]
	if c == nil {
		return nil
	}
	return &c[slot%slotsPerChunk]
}

// stickyKey is the key the broker routes msg's entry by: the ordering
// key, else the key, else "NONE_KEY" (PersistentStickyKeyDispatcher
// MultipleConsumers.getStickyKeyHash, Commands.peekStickyKey).
func stickyKey(msg pulsar.Message) string {
	if k := msg.OrderingKey(); k != "" {
		return k
	}
	if k := msg.Key(); k != "" {
		return k
	}
	return "NONE_KEY"
}

// slotOf returns the slot of msg's entry in partition o, remembering the
// entry for its later batch messages. Allocation-free.
func (o *keyOrder) slotOf(msg pulsar.Message, id pulsar.MessageID) int32 {
	if id.BatchIdx() > 0 && id.LedgerID() == o.entryLedger && id.EntryID() == o.entryID {
		return o.entrySlot
	}
	k := stickyKey(msg)
	// keyshared.Slot only reads its argument: a view of the string's
	// bytes, not a copy.
	slot := int32(keyshared.Slot(unsafe.Slice(unsafe.StringData(k), len(k))))
	o.entryLedger, o.entryID, o.entrySlot = id.LedgerID(), id.EntryID(), slot
	return slot
}
