package pulsartest

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"
)

// subscription is a cursor on a topic plus its consumers. Its state is the
// Pulsar cursor model: a mark-delete position (every entry at or before it
// is acknowledged) and the set of entries acknowledged individually after
// it. Everything not acknowledged is either pending (dispatched to one
// consumer and not yet acked), parked for replay (to be dispatched before
// new entries), or not yet read (at or after readPos).
//
// Durable subscriptions outlive their consumers, so a consumer that
// reconnects resumes from the cursor; non-durable ones (readers) are
// dropped with their last consumer.
//
// Acknowledgement is per entry. A batch-index ack (an ack carrying an
// ack_set with messages still unacked) is ignored: the entry stays unacked
// until an ack for the whole entry arrives, which is what the Go client
// sends unless EnableBatchIndexAcknowledgment is set.
type subscription struct {
	t       *topic
	name    string
	typ     subType
	durable bool

	markDelete   int64
	acked        map[int64]struct{}
	readPos      int64
	replay       map[int64]struct{}
	owner        map[int64]*consumer
	redeliveries map[int64]uint32   // the broker's redelivery count (InMemoryRedeliveryTracker)
	sent         map[int64]struct{} // unacked entries dispatched at least once (Stats.Redelivered)

	consumers []*consumer // in join order
	rr        int         // Shared round-robin cursor
	ks        keySelector
	active    *consumer // Exclusive/Failover: the consumer receiving messages

	// Shared and Key_Shared: messages dispatched to the consumers and not
	// acknowledged, and whether that reached MaxUnackedMessagesPerSubscription
	// (the dispatcher's totalUnackedMessages, blockedDispatcherOnUnackedMsgs).
	unacked int64
	blocked bool
	woken   bool // a limit was lifted: dispatch (see ack)

	// Key_Shared: new entries still to pass ahead of the replay of a
	// consumer that left (Config.KeySharedReorderAfterReconnect; passAhead).
	reorder int
}

type consumer struct {
	id      uint64
	name    string
	c       *conn
	sub     *subscription
	permits int64
	pending map[int64]struct{}
	ranges  []hashRange // Key_Shared: ranges owned (sticky or auto-split)

	// Shared and Key_Shared: messages dispatched to this consumer and not
	// acknowledged, and whether that reached MaxUnackedMessagesPerConsumer
	// (Consumer.unackedMessages, blockedConsumerOnUnackedMsgs).
	unacked int64
	blocked bool
}

var errAssign = errors.New("hash range assignment failed")

func newSubscription(t *topic, name string, typ subType, durable bool) *subscription {
	return &subscription{
		t: t, name: name, typ: typ, durable: durable,
		markDelete:   -1, // nothing acknowledged
		acked:        make(map[int64]struct{}),
		replay:       make(map[int64]struct{}),
		owner:        make(map[int64]*consumer),
		redeliveries: make(map[int64]uint32),
		sent:         make(map[int64]struct{}),
	}
}

// resetTo moves the cursor so that pos is the next entry to deliver and
// everything from pos on is unacknowledged (Pulsar's resetCursor).
func (s *subscription) resetTo(pos int64) {
	s.markDelete = pos - 1
	s.readPos = pos
	clear(s.acked)
	clear(s.replay)
	clear(s.owner)
	clear(s.redeliveries)
	clear(s.sent)
	s.unacked, s.blocked, s.reorder = 0, false, 0
	for _, c := range s.consumers {
		clear(c.pending)
		c.unacked, c.blocked = 0, false
	}
}

func (s *subscription) addConsumer(c *consumer, cmd subscribeCmd) error {
	if len(s.consumers) > 0 && cmd.subType != s.typ {
		return fmt.Errorf("subscription %s is %v, consumer asked for %v", s.name, s.typ, cmd.subType)
	}
	if len(s.consumers) == 0 {
		s.typ = cmd.subType // type may change while nobody is connected
		s.ks = keySelector{}
	}
	switch s.typ {
	case subExclusive:
		if len(s.consumers) > 0 {
			return fmt.Errorf("exclusive consumer is already connected to %s", s.name)
		}
	case subKeyShared:
		if err := s.ks.add(c, cmd.keySharedSticky, cmd.hashRanges); err != nil {
			return err
		}
	}
	s.consumers = append(s.consumers, c)
	return nil
}

// removeConsumer detaches c; its pending entries are parked for replay
// with their redelivery count unchanged. As in the broker, only a request
// for redelivery (a negative ack or the client's ack timeout, both sent
// as REDELIVER_UNACKNOWLEDGED_MESSAGES: Consumer.
// redeliverUnacknowledgedMessages, InMemoryRedeliveryTracker.
// incrementAndGetRedeliveryCount) counts one; a consumer that closes or
// disconnects does not (PersistentDispatcherMultipleConsumers.
// removeConsumer only adds its pending messages to the replay set).
func (s *subscription) removeConsumer(c *consumer) {
	i := slices.Index(s.consumers, c)
	if i < 0 {
		return
	}
	s.consumers = slices.Delete(s.consumers, i, i+1)
	if s.typ == subKeyShared {
		s.ks.remove(c)
		if len(c.pending) > 0 {
			s.reorder = s.t.srv.ksReorder
		}
	}
	s.requeue(c, nil, false)
	// Its count leaves with it (PersistentDispatcherMultipleConsumers.
	// removeConsumer: addUnAckedMessages(-consumer.getUnackedMessages())).
	s.addUnacked(c, -c.unacked)
	if len(s.consumers) == 0 && !s.durable {
		delete(s.t.subs, s.name)
		return
	}
	s.activeChanged()
	s.dispatch()
}

// requeue parks c's pending entries (all, or those in ids) for replay.
// For a redelivery (count) their messages leave c's unacked count; a
// consumer leaving takes its whole count with it (removeConsumer).
func (s *subscription) requeue(c *consumer, ids []int64, count bool) {
	move := func(e int64) {
		delete(c.pending, e)
		delete(s.owner, e)
		s.replay[e] = struct{}{}
		if count {
			s.redeliveries[e]++
			s.addUnacked(c, -int64(s.t.entries[e].numMessages))
		}
	}
	if ids == nil {
		for e := range c.pending {
			move(e)
		}
		return
	}
	for _, e := range ids {
		if s.owner[e] == c {
			move(e)
		}
	}
}

func (s *subscription) isAcked(e int64) bool {
	if e <= s.markDelete || e < s.t.first { // a trimmed entry is gone
		return true
	}
	_, ok := s.acked[e]
	return ok
}

// activeChanged picks the active consumer for Exclusive and Failover and
// tells consumers when their role changes (ACTIVE_CONSUMER_CHANGE). As in
// Pulsar's Failover dispatcher, consumers are ordered by name and a
// partition picks index partition % count; a non-partitioned topic takes
// the first.
func (s *subscription) activeChanged() {
	if s.typ != subExclusive && s.typ != subFailover {
		s.active = nil
		return
	}
	var next *consumer
	if len(s.consumers) > 0 {
		sorted := slices.Clone(s.consumers)
		slices.SortStableFunc(sorted, func(a, b *consumer) int {
			switch {
			case a.name < b.name:
				return -1
			case a.name > b.name:
				return 1
			}
			return 0
		})
		idx := 0
		if s.t.partition >= 0 {
			idx = s.t.partition % len(sorted)
		}
		next = sorted[idx]
	}
	if next == s.active {
		return
	}
	old := s.active
	s.active = next
	if old != nil && s.typ == subFailover {
		// The old consumer's unacked messages go to the new one, as when
		// a Failover consumer loses its active role.
		s.requeue(old, nil, false)
	}
	if s.typ == subFailover {
		for _, c := range s.consumers {
			c.c.sendCmd(encActiveConsumerChange(c.id, c == next))
		}
	}
}

// dispatch sends as many entries as permits allow: parked entries first
// (lowest id first), then new entries from readPos. Called with Server.mu
// held after anything that may enable delivery.
func (s *subscription) dispatch() {
	srv := s.t.srv
	if len(s.consumers) == 0 || srv.stalledLocked() {
		return
	}
	// blocked marks Key_Shared hash slots whose consumer could not take
	// an entry in this pass: later entries with the same slot must wait
	// behind it to keep per-key order.
	var blocked map[int32]bool
	if s.typ == subKeyShared {
		blocked = make(map[int32]bool)
		if len(s.replay) == 0 {
			s.reorder = 0 // nothing waits: no replay to pass
		} else if s.reorder > 0 {
			s.passAhead(blocked)
		}
	}
	if len(s.replay) > 0 {
		ids := make([]int64, 0, len(s.replay))
		for e := range s.replay {
			ids = append(ids, e)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		for _, e := range ids {
			if s.isAcked(e) || e >= int64(len(s.t.entries)) {
				delete(s.replay, e)
				continue
			}
			c := s.pick(e, blocked)
			if c == nil {
				if s.typ != subKeyShared {
					return
				}
				continue
			}
			delete(s.replay, e)
			s.send(c, e)
		}
	}
	// New entries are read only while the subscription is not blocked on
	// unacknowledged messages; replays above go on regardless, as in the
	// broker's readMoreEntries.
	for s.readPos < int64(len(s.t.entries)) && !s.blocked {
		e := s.readPos
		if s.isAcked(e) {
			s.readPos++
			continue
		}
		if _, parked := s.replay[e]; parked {
			s.readPos++
			continue
		}
		c := s.pick(e, blocked)
		if c == nil {
			if s.typ != subKeyShared || len(s.replay) >= s.lookAhead() || !s.anyAvailable() {
				return
			}
			// Park it and read on: other keys may have consumers with
			// permits (Pulsar's Key_Shared dispatcher does the same).
			s.replay[e] = struct{}{}
			s.readPos++
			continue
		}
		s.readPos++
		s.send(c, e)
	}
}

// passAhead is the injected reordering of a Key_Shared replay
// (Config.KeySharedReorderAfterReconnect, apache/pulsar#10762): new
// entries are read before the entries waiting for replay, and those whose
// hash slot has no entry waiting are dispatched, up to s.reorder of them;
// those of a slot that has one are parked behind it, so each key keeps its
// order. It stops at the end of the topic (nothing more can pass), at a
// consumer without permits (the rest passes on its next FLOW), or at the
// look-ahead bound.
//
// The broker's path (PersistentStickyKeyDispatcherMultipleConsumers, as
// of 2.10): while isDispatcherStuckOnReplays is set,
// getMessagesToReplayNow returns nothing and readMoreEntries does a
// Normal read past the replay set; in sendMessagesToConsumers,
// getRestrictedMaxEntriesForConsumer gives 0 for a consumer's entries of
// a Normal read when redeliveryMessages.containsStickyKeyHashes(their
// hashes), and those go to the replay set (addMessageToReplay); the
// others are sent, ahead of the older replays. The broker decides per
// consumer and read (a read holding a waiting hash holds back all of that
// consumer's entries in it); this double reads one entry at a time, so
// per entry: the same per-key order, a few more entries passing.
func (s *subscription) passAhead(blocked map[int32]bool) {
	waiting := make(map[int32]bool, len(s.replay))
	for e := range s.replay {
		waiting[s.t.entries[e].keySlot] = true
	}
	for s.reorder > 0 && !s.blocked {
		if s.readPos >= int64(len(s.t.entries)) {
			s.reorder = 0
			return
		}
		e := s.readPos
		if _, parked := s.replay[e]; parked || s.isAcked(e) {
			s.readPos++
			continue
		}
		if slot := s.t.entries[e].keySlot; waiting[slot] {
			if len(s.replay) >= s.lookAhead() {
				return
			}
			s.replay[e] = struct{}{}
			s.readPos++
			continue
		}
		c := s.pick(e, blocked)
		if c == nil {
			return
		}
		s.readPos++
		s.send(c, e)
		s.reorder--
		s.t.srv.stats.KeySharedPassedAhead += int64(s.t.entries[e].numMessages)
	}
}

// anyAvailable reports whether some consumer could take an entry now.
func (s *subscription) anyAvailable() bool {
	for _, c := range s.consumers {
		if c.available() {
			return true
		}
	}
	return false
}

// available: c has permits and is not blocked on unacknowledged messages
// (PersistentDispatcherMultipleConsumers.isConsumerAvailable).
func (c *consumer) available() bool { return c.permits > 0 && !c.blocked }

// pick chooses the consumer for entry e, or nil if none can take it now.
func (s *subscription) pick(e int64, blocked map[int32]bool) *consumer {
	switch s.typ {
	case subExclusive, subFailover:
		if s.active != nil && s.active.permits > 0 {
			return s.active
		}
		return nil
	case subShared:
		n := len(s.consumers)
		for i := range n {
			c := s.consumers[(s.rr+i)%n]
			if c.available() {
				s.rr = (s.rr + i + 1) % n
				return c
			}
		}
		return nil
	case subKeyShared:
		slot := s.t.entries[e].keySlot
		if blocked[slot] {
			return nil
		}
		c := s.ks.owner(slot)
		if c == nil || !c.available() {
			blocked[slot] = true
			return nil
		}
		return c
	}
	return nil
}

func (s *subscription) send(c *consumer, e int64) {
	ent := s.t.entries[e]
	s.owner[e] = c
	c.pending[e] = struct{}{}
	c.permits -= int64(ent.numMessages) // permits count messages, not entries
	s.addUnacked(c, int64(ent.numMessages))
	stored := ent.stored
	if s.t.srv.cfg.ExposeEntryIndex {
		stored = append(brokerEntryMetadata(ent.publishTime, ent.index), stored...)
	}
	c.c.send(appendFrame(nil, encMessage(c.id, s.t.ledger, e, s.redeliveries[e]), stored))
	st := &s.t.srv.stats
	st.Dispatched += int64(ent.numMessages)
	if _, again := s.sent[e]; again {
		st.Redelivered += int64(ent.numMessages)
	}
	s.sent[e] = struct{}{}
}

// entryOf maps an acked id to an entry of this topic, or -1.
func (s *subscription) entryOf(id msgID) int64 {
	if id.ledger != s.t.ledger || id.entry < 0 || id.entry >= int64(len(s.t.entries)) {
		return -1
	}
	return id.entry
}

// partialBatchAck reports whether id acknowledges only some messages of a
// batch: its ack_set still has bits set for unacked indexes.
func partialBatchAck(id msgID) bool {
	for _, w := range id.ackSet {
		if w != 0 {
			return true
		}
	}
	return false
}

// ack applies an ACK; if acknowledgements lifted an unacked limit, the
// subscription dispatches again (Consumer.removePendingAcks then
// flowConsumerBlockedPermits, addUnAckedMessages then readMoreEntries).
func (s *subscription) ack(cmd ackCmd) {
	s.woken = false
	defer func() {
		if s.woken {
			s.woken = false
			s.dispatch()
		}
	}()
	if cmd.cumulative {
		if len(cmd.ids) == 0 || (s.typ != subExclusive && s.typ != subFailover) {
			return
		}
		id := cmd.ids[0]
		if id.ledger != s.t.ledger {
			return
		}
		pos := min(id.entry, int64(len(s.t.entries))-1)
		if partialBatchAck(id) {
			pos--
		}
		for e := s.markDelete + 1; e <= pos; e++ {
			s.ackEntry(e)
		}
		if pos > s.markDelete {
			s.markDelete = pos
		}
		s.advance()
		s.trimAfterAck()
		return
	}
	for _, id := range cmd.ids {
		if e := s.entryOf(id); e >= 0 && !partialBatchAck(id) && !s.isAcked(e) {
			s.ackEntry(e)
			s.acked[e] = struct{}{}
		}
	}
	s.advance()
	s.trimAfterAck()
}

// trimAfterAck trims the topic once a durable cursor's mark-delete
// position passed the end of its oldest ledger (ManagedLedgerImpl.
// updateCursor: the slowest reader moved, trimConsumedLedgersInBackground).
func (s *subscription) trimAfterAck() {
	if l := s.t.ledgers; s.durable && len(l) > 1 && s.markDelete+1 >= l[1].start {
		s.t.trimLocked(time.Now())
	}
}

// ackEntry drops e from pending and replay and counts it.
func (s *subscription) ackEntry(e int64) {
	if s.isAcked(e) {
		return
	}
	if c := s.owner[e]; c != nil {
		delete(c.pending, e)
		delete(s.owner, e)
		s.addUnacked(c, -int64(s.t.entries[e].numMessages))
	}
	delete(s.replay, e)
	delete(s.redeliveries, e)
	delete(s.sent, e)
	s.t.srv.stats.Acked += int64(s.t.entries[e].numMessages)
}

// advance moves the mark-delete position over contiguous acked entries.
func (s *subscription) advance() {
	for e := range s.acked {
		if e <= s.markDelete {
			delete(s.acked, e)
		}
	}
	for {
		if _, ok := s.acked[s.markDelete+1]; !ok {
			return
		}
		delete(s.acked, s.markDelete+1)
		s.markDelete++
	}
}

// redeliver handles REDELIVER_UNACKNOWLEDGED_MESSAGES: all of c's pending
// entries, or only those listed.
func (s *subscription) redeliver(c *consumer, ids []msgID) {
	var es []int64
	if len(ids) > 0 {
		es = make([]int64, 0, len(ids))
		for _, id := range ids {
			if e := s.entryOf(id); e >= 0 {
				es = append(es, e)
			}
		}
	}
	s.requeue(c, es, true)
	// Consumer.redeliverUnacknowledgedMessages unblocks the consumer
	// whatever its count (its next dispatch blocks it again if still at
	// the limit).
	c.blocked = false
	s.dispatch()
}

// flow adds FLOW permits. A consumer at its unacked limit stays blocked
// (Consumer.flowPermits); its permits count once it is unblocked.
func (s *subscription) flow(c *consumer, permits uint32) {
	if lim := s.consumerLimit(); lim > 0 && c.unacked >= lim {
		c.blocked = true
	}
	c.permits += int64(permits)
	s.dispatch()
}

// individualAck: Shared and Key_Shared, the types whose messages are
// acknowledged one by one and limited in number
// (Subscription.isIndividualAckMode).
func (s *subscription) individualAck() bool { return s.typ == subShared || s.typ == subKeyShared }

// consumerLimit is MaxUnackedMessagesPerConsumer for this subscription, 0
// for none: Exclusive and Failover have none, nor has a non-durable
// subscription (Consumer.getMaxUnackedMessages).
func (s *subscription) consumerLimit() int64 {
	if !s.individualAck() || !s.durable {
		return 0
	}
	return int64(max(s.t.srv.cfg.MaxUnackedMessagesPerConsumer, 0))
}

// subscriptionLimit is MaxUnackedMessagesPerSubscription, 0 for none.
func (s *subscription) subscriptionLimit() int64 {
	if !s.individualAck() {
		return 0
	}
	return int64(max(s.t.srv.cfg.MaxUnackedMessagesPerSubscription, 0))
}

// addUnacked adds n (negative: acknowledged, redelivered or gone) to c's
// and the subscription's unacked counts, blocking at a limit and
// unblocking at half of it, as the broker does: a consumer blocks at
// unacked >= limit and unblocks at <= limit/2 (Consumer.
// incrementUnackedMessages, removePendingAcks); the subscription blocks
// at >= limit and unblocks at < limit/2 (PersistentDispatcherMultiple
// Consumers.addUnAckedMessages). Exclusive and Failover count nothing.
// Called with Server.mu held; a caller that lowers a count dispatches
// afterwards.
func (s *subscription) addUnacked(c *consumer, n int64) {
	if !s.individualAck() || n == 0 {
		return
	}
	c.unacked += n
	s.unacked += n
	st := &s.t.srv.stats
	if lim := s.consumerLimit(); lim > 0 {
		switch {
		case n > 0 && !c.blocked && c.unacked >= lim:
			c.blocked = true
			st.ConsumersBlocked++
		case n < 0 && c.blocked && c.unacked <= lim/2:
			c.blocked = false
			s.woken = true
		}
	} else {
		c.blocked = false
	}
	if lim := s.subscriptionLimit(); lim > 0 {
		switch {
		case n > 0 && !s.blocked && s.unacked >= lim:
			s.blocked = true
			st.SubscriptionsBlocked++
		case n < 0 && s.blocked && s.unacked < lim/2:
			s.blocked = false
			s.woken = true
		}
	} else {
		s.blocked = false
	}
}

// lookAhead is how many entries a Key_Shared subscription may park for
// replay before it stops reading ahead
// (PersistentStickyKeyDispatcherMultipleConsumers.getEffectiveLookAheadLimit).
func (s *subscription) lookAhead() int {
	cfg := &s.t.srv.cfg
	n := len(s.consumers)
	perConsumer, perSub := max(cfg.KeySharedLookAheadPerConsumer, 0), max(cfg.KeySharedLookAheadPerSubscription, 0)
	limit := perSub
	if perConsumer > 0 {
		limit = perConsumer * n
		if perSub > 0 && perSub < limit {
			limit = perSub
		}
	}
	if limit <= 0 {
		bySub, byConsumers := max(cfg.MaxUnackedMessagesPerSubscription, 0), n*max(cfg.MaxUnackedMessagesPerConsumer, 0)
		if bySub <= 0 {
			bySub = math.MaxInt
		}
		if byConsumers <= 0 {
			byConsumers = math.MaxInt
		}
		limit = min(bySub, byConsumers)
	}
	return limit
}

// backlog counts unacknowledged entries.
func (s *subscription) backlog() int64 {
	return int64(len(s.t.entries)) - 1 - s.markDelete - int64(len(s.acked))
}
