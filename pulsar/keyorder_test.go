package pulsar

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"

	"github.com/demandpipe/demandpipe/internal/keyshared"
)

// keyedMsg is a client message with an id and a key, for ingest.
type keyedMsg struct {
	pulsar.Message
	id  pulsar.MessageID
	key string
}

func (m keyedMsg) ID() pulsar.MessageID { return m.id }
func (m keyedMsg) Key() string          { return m.key }
func (m keyedMsg) OrderingKey() string  { return "" }
func (m keyedMsg) Payload() []byte      { return nil }
func (m keyedMsg) EventTime() time.Time { return time.Time{} }
func (m keyedMsg) PublishTime() time.Time {
	return time.UnixMilli(m.id.EntryID())
}
func (m keyedMsg) RedeliveryCount() uint32 { return 0 }

func newBareSource(typ string) *Source {
	p := &Source{log: quiet, stop: make(chan struct{}), failed: make(chan struct{})}
	p.cfg.Type = typ
	p.grow(0)
	p.noAck = true
	return p
}

// TestKeySharedCopiesMatchReference: on key_shared, ingest calls a
// message a copy exactly when it was taken before (the reference: the set
// of ids taken), over random deliveries a Key_Shared broker may make: each
// slot's messages in id order, slots interleaved at random, and at random
// a slot replayed from an earlier message (a reconnect's redelivery),
// messages of several keys sharing slots. The partition's last id, the
// rule before key_shared had its own, is shown to fail the same input.
func TestKeySharedCopiesMatchReference(t *testing.T) {
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 7))
		// Keys "k0".."k(n-1)", grouped by slot; two keys share slot
		// keys[0]'s by construction (a collision found by search).
		nKeys := 2 + rng.IntN(6)
		keys := make([]string, nKeys)
		for i := range keys {
			keys[i] = fmt.Sprintf("k%d-%d", seed, i)
		}
		keys = append(keys, collidingKey(keys[0]))
		const n = 300
		bySlot := map[int][]keyedMsg{}
		var slots []int
		for e := range n {
			k := keys[rng.IntN(len(keys))]
			s := keyshared.Slot([]byte(k))
			if _, ok := bySlot[s]; !ok {
				slots = append(slots, s)
			}
			bySlot[s] = append(bySlot[s], keyedMsg{id: pulsar.NewMessageID(1, int64(e), -1, 0), key: k})
		}
		p := newBareSource("key_shared")
		last := newBareSource("failover") // the partition's last id
		next := map[int]int{}             // per slot: the next message to deliver
		taken := map[int64]bool{}
		lastDisagreed, rewinds := false, 0
		for steps := 0; len(taken) < n; steps++ {
			if steps > 100*n {
				t.Fatalf("seed %d: not done after %d steps", seed, steps)
			}
			s := slots[rng.IntN(len(slots))]
			if rewinds < 30 && rng.IntN(20) == 0 && next[s] > 0 {
				rewinds++
				next[s] = rng.IntN(next[s]) // a replay from an earlier message
			}
			if next[s] == len(bySlot[s]) {
				continue
			}
			m := bySlot[s][next[s]]
			next[s]++
			wasTaken := taken[m.id.EntryID()]
			taken[m.id.EntryID()] = true
			before := p.stats.skipped.Load()
			p.ingest(m)
			if copied := p.stats.skipped.Load() > before; copied != wasTaken {
				t.Fatalf("seed %d: %v (slot %d): copy %v, taken before %v", seed, m.id, s, copied, wasTaken)
			}
			before = last.stats.skipped.Load()
			last.ingest(m)
			lastDisagreed = lastDisagreed || (last.stats.skipped.Load() > before) != wasTaken
		}
		if seed == 0 && !lastDisagreed {
			t.Fatal("the partition's last id called the same messages copies: the input does not reorder")
		}
	}
}

// collidingKey returns a key other than k in k's slot.
func collidingKey(k string) string {
	want := keyshared.Slot([]byte(k))
	for i := 0; ; i++ {
		c := fmt.Sprintf("c%d", i)
		if keyshared.Slot([]byte(c)) == want && c != k {
			return c
		}
	}
}

// TestKeySharedSlotAllocationFree: a message's slot and copy check cost
// no allocation (the chunk of a slot is allocated once, on its first
// message).
func TestKeySharedSlotAllocationFree(t *testing.T) {
	o := &keyOrder{entryLedger: -1}
	id := pulsar.NewMessageID(1, 5, -1, 0)
	var m pulsar.Message = keyedMsg{id: id, key: "a rider's key, longer than 32 bytes to need a buffer"}
	o.chunks[o.slotOf(m, id)/slotsPerChunk] = new(slotChunk)
	if a := testing.AllocsPerRun(100, func() {
		st := o.state(o.slotOf(m, id))
		if !st.taken.covers(id) {
			st.taken = toSlotID(id)
		}
	}); a != 0 {
		t.Errorf("%v allocations a message", a)
	}
}

// TestKeySharedBatchTakesItsEntrysSlot: a batch entry is routed by its
// first message's key, and its later messages take that slot.
func TestKeySharedBatchTakesItsEntrysSlot(t *testing.T) {
	o := &keyOrder{entryLedger: -1}
	first := keyedMsg{id: batchID{MessageID: pulsar.NewMessageID(1, 5, 0, 0), size: 2}, key: "a"}
	second := keyedMsg{id: batchID{MessageID: pulsar.NewMessageID(1, 5, 1, 0), size: 2}, key: "b"}
	if a, b := o.slotOf(first, first.id), o.slotOf(second, second.id); a != b || int(a) != keyshared.Slot([]byte("a")) {
		t.Errorf("slots %d and %d, want both a's %d", a, b, keyshared.Slot([]byte("a")))
	}
	alone := keyedMsg{id: batchID{MessageID: pulsar.NewMessageID(1, 9, 1, 0), size: 2}, key: "b"}
	if s := o.slotOf(alone, alone.id); int(s) != keyshared.Slot([]byte("b")) {
		t.Errorf("a batch's message without its entry's first: slot %d, want its own key's %d", s, keyshared.Slot([]byte("b")))
	}
}
