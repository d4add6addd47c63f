package pulsartest

import (
	"fmt"
	"slices"
	"testing"

	"github.com/demandpipe/demandpipe/internal/murmur3"
)

// Dispatch semantics pinned without the network: consumers sit on conns
// whose writer never runs, so the frames they would get stay queued.

type dispatchRig struct {
	s   *Server
	t   *topic
	sub *subscription
}

func newRig(typ subType) *dispatchRig { return newRigWith(typ, Config{}) }

// newRigWith is newRig with cfg (defaults applied, as Start does).
func newRigWith(typ subType, cfg Config) *dispatchRig {
	cfg.setDefaults()
	s := &Server{cfg: cfg, topics: map[string]*topic{}, stats: Stats{MessagesIn: map[string]int64{}}}
	t := s.topicLocked("persistent://public/default/rig")
	sub := newSubscription(t, "s", typ, true)
	t.subs["s"] = sub
	return &dispatchRig{s: s, t: t, sub: sub}
}

func (r *dispatchRig) consumer(name string, permits int64) *consumer {
	c := &consumer{id: uint64(len(r.sub.consumers) + 1), name: name, c: newConn(r.s, nil), sub: r.sub, pending: map[int64]struct{}{}}
	if err := r.sub.addConsumer(c, subscribeCmd{subType: r.sub.typ}); err != nil {
		panic(err)
	}
	c.permits = permits
	r.sub.activeChanged()
	return c
}

func (r *dispatchRig) produce(key string, batch int32) {
	m := msgMeta{partitionKey: key, numMessages: batch, haveNumMessages: batch > 1, publishTime: uint64(len(r.t.entries))}
	r.t.append(m, batch, appendPayload(nil, nil, []byte(key)))
	r.sub.dispatch()
}

// got drains the entry ids dispatched to c so far.
func got(t *testing.T, c *consumer) []int64 {
	t.Helper()
	c.c.wmu.Lock()
	q := c.c.queue
	c.c.queue = nil
	c.c.wmu.Unlock()
	var ids []int64
	for _, fr := range q {
		f, err := parseFrame(fr[4:])
		if err != nil {
			t.Fatal(err)
		}
		typ, body, err := decodeBase(f.cmd)
		if err != nil {
			t.Fatal(err)
		}
		if typ != cmdMessage {
			continue
		}
		walk(body, func(fl field) error {
			if fl.num == 2 {
				id, _ := decodeMsgID(fl.b)
				ids = append(ids, id.entry)
			}
			return nil
		})
	}
	return ids
}

func TestDispatchPermitsCountMessages(t *testing.T) {
	r := newRig(subExclusive)
	c := r.consumer("a", 5)
	r.produce("k", 4) // batch of 4: permits 5 -> 1
	r.produce("k", 4) // permits 1 > 0: sent, permits -> -3
	r.produce("k", 1) // held
	if ids := got(t, c); !slices.Equal(ids, []int64{0, 1}) || c.permits != -3 {
		t.Fatalf("dispatched %v, permits %d", ids, c.permits)
	}
	c.permits += 4
	r.sub.dispatch()
	if ids := got(t, c); !slices.Equal(ids, []int64{2}) {
		t.Fatalf("after FLOW: %v", ids)
	}
}

func TestDispatchKeySharedParksBlockedKeys(t *testing.T) {
	r := newRig(subKeyShared)
	a := r.consumer("a", 0) // owns the upper half, no permits yet
	b := r.consumer("b", 100)
	// Find one key per consumer.
	var ka, kb string
	for i := 0; ka == "" || kb == ""; i++ {
		k := fmt.Sprintf("key-%d", i)
		if r.sub.ks.owner(int32(murmur3.Sum31([]byte(k))%hashRangeSize)) == a {
			ka = k
		} else {
			kb = k
		}
	}
	for range 3 {
		r.produce(ka, 1)
		r.produce(kb, 1)
	}
	if ids := got(t, b); !slices.Equal(ids, []int64{1, 3, 5}) {
		t.Fatalf("b got %v, want its own keys despite a being blocked", ids)
	}
	if len(r.sub.replay) != 3 {
		t.Fatalf("parked %d entries for a, want 3", len(r.sub.replay))
	}
	a.permits = 100
	r.sub.dispatch()
	if ids := got(t, a); !slices.Equal(ids, []int64{0, 2, 4}) {
		t.Fatalf("a got %v after FLOW, want [0 2 4] in order", ids)
	}
	// b leaves: its unacked entries move to a, dispatched again (Stats)
	// with their redelivery count unchanged (the broker's).
	r.sub.removeConsumer(b)
	if ids := got(t, a); !slices.Equal(ids, []int64{1, 3, 5}) || r.s.stats.Redelivered != 3 || len(r.sub.redeliveries) != 0 {
		t.Fatalf("after b left a got %v (redelivered %d, counts %v)", ids, r.s.stats.Redelivered, r.sub.redeliveries)
	}
}

func TestCursorAcks(t *testing.T) {
	r := newRig(subExclusive)
	c := r.consumer("a", 100)
	for range 6 {
		r.produce("k", 1)
	}
	got(t, c)
	id := func(e int64) msgID { return msgID{ledger: r.t.ledger, entry: e} }
	r.sub.ack(ackCmd{ids: []msgID{id(1), id(3)}})
	if r.sub.markDelete != -1 || r.sub.backlog() != 4 {
		t.Fatalf("after acking 1,3: mark-delete %d backlog %d", r.sub.markDelete, r.sub.backlog())
	}
	r.sub.ack(ackCmd{ids: []msgID{id(0)}})
	if r.sub.markDelete != 1 {
		t.Fatalf("after acking 0: mark-delete %d, want 1", r.sub.markDelete)
	}
	// A batch-index ack with unacked indexes left is not an entry ack.
	partial := id(2)
	partial.ackSet = []int64{0b10}
	r.sub.ack(ackCmd{ids: []msgID{partial}})
	if r.sub.isAcked(2) {
		t.Fatal("partial batch ack acked the entry")
	}
	r.sub.ack(ackCmd{cumulative: true, ids: []msgID{id(4)}})
	if r.sub.markDelete != 4 || r.sub.backlog() != 1 || len(r.sub.acked) != 0 {
		t.Fatalf("after cumulative 4: mark-delete %d backlog %d acked %v", r.sub.markDelete, r.sub.backlog(), r.sub.acked)
	}
	// Redeliver the rest: only entry 5 is unacked.
	r.sub.redeliver(c, nil)
	if ids := got(t, c); !slices.Equal(ids, []int64{5}) {
		t.Fatalf("redelivered %v, want [5]", ids)
	}
	if r.s.stats.Acked != 5 {
		t.Fatalf("acked %d messages, want 5", r.s.stats.Acked)
	}
}
