package scaleout

import (
	"context"
	"fmt"

	"github.com/apache/pulsar-client-go/pulsar"
)

// The state topic keeps each dedup process's checkpoints (Checkpoint; read
// back at start by LoadCheckpoint with a reader). A Pulsar broker deletes
// a topic, with its messages, once it has had no producer, no consumer and
// no subscription for a minute or two (brokerDeleteInactiveTopicsEnabled=
// true, every 60 s, delete_when_no_subscriptions: PersistentTopic.checkGC),
// and a reader's subscription is not durable: without more, a dedup
// deployment stopped for two minutes would lose every checkpoint, and its
// restart would be refused (the aggregators stop rather than count events
// twice: errDedupRestarted). And with the default retention (0) a topic
// without a subscription keeps nothing once its ledger rolls over.
//
// So every dedup process subscribes to the state topic under
// StateSubscription (durable, Shared, from the earliest message) before
// it stores a checkpoint, and never consumes from it: an unacknowledged
// message is kept whatever the retention, and a subscription keeps the
// topic. To bound what it keeps, a process acknowledges, on that
// subscription, each of its checkpoints once a newer one is stored (by
// message id: Shared dispatch gives a message to any process's consumer,
// and an acknowledgement by id counts wherever it was dispatched), and, at
// its first checkpoint after a start, every older checkpoint of its own
// (found by reading the topic up to it: those of earlier starts, and any
// whose acknowledgement was lost in a crash). The subscription's backlog
// is then one checkpoint per dedup process id, the latest, which
// LoadCheckpoint finds. The read costs what LoadCheckpoint's does, once
// per start, before the first watermark.
//
// Why not compaction, which keeps the latest message of each key by
// itself: the broker compacts a topic only when told to (pulsar-admin
// topics compact, or a namespace compaction threshold, 0 by default), so a
// deployment would depend on an admin setting made elsewhere, and the test
// double does not compact.
//
// What stays: a dedup process id that never runs again keeps its last
// checkpoint unacknowledged, and since a broker trims a topic by ledger
// below the subscription's mark-delete position, everything stored after
// that checkpoint is kept too (acknowledged or not). A deployment that
// retires a process id for good acknowledges its last checkpoint by hand
// (pulsar-admin topics skip, or a consumer on StateSubscription).

// StateSubscription is the durable subscription that keeps the state
// topic's checkpoints.
const StateSubscription = "demandpipe-checkpoints"

// subscribeState makes sure StateSubscription exists and returns a
// consumer on it, for acknowledgements only: it never receives (a
// receiver queue of 1: one message waits in it, which is harmless, since
// every process acknowledges by id).
func subscribeState(client pulsar.Client, cfg Config, src uint32) (pulsar.Consumer, error) {
	c, err := client.Subscribe(pulsar.ConsumerOptions{
		Topic:                       cfg.StateTopic(),
		SubscriptionName:            StateSubscription,
		Type:                        pulsar.Shared,
		SubscriptionInitialPosition: pulsar.SubscriptionPositionEarliest,
		ReceiverQueueSize:           1,
		Name:                        fmt.Sprintf("demandpipe-dedup-%d-state", src),
	})
	if err != nil {
		return nil, fmt.Errorf("scaleout: the durable subscription %s that keeps the checkpoints on %s: %w", StateSubscription, cfg.StateTopic(), err)
	}
	return c, nil
}

// release acknowledges the checkpoints that id, the one just stored,
// replaces: this start's previous one, or at the first checkpoint of a
// start every older one of this process. A failed acknowledgement is not
// an error: it only leaves an old checkpoint in the subscription's
// backlog (LoadCheckpoint takes the latest anyway), and the next start
// acknowledges it.
func (p *Publisher) release(id pulsar.MessageID) {
	if p.last != nil {
		p.keep.AckID(p.last)
	} else {
		p.sweep(id)
	}
	p.last = id
}

// sweep acknowledges every checkpoint of this process stored before id,
// read from the earliest message on up to id with a non-durable consumer
// of its own (as members.go reads announcements: v0.21.0's pulsar.Reader
// races its reconnection under -race).
func (p *Publisher) sweep(id pulsar.MessageID) {
	ctx, cancel := context.WithTimeout(p.ctx, closeFlushTimeout)
	defer cancel()
	r, err := p.client.Subscribe(pulsar.ConsumerOptions{
		Topic:                       p.cfg.StateTopic(),
		SubscriptionName:            fmt.Sprintf("demandpipe-dedup-%d-sweep-%d", p.src, p.epoch),
		Type:                        pulsar.Exclusive,
		SubscriptionMode:            pulsar.NonDurable,
		SubscriptionInitialPosition: pulsar.SubscriptionPositionEarliest,
	})
	if err != nil {
		return
	}
	defer r.Close()
	key := stateKey(p.src)
	for {
		m, err := r.Receive(ctx)
		if err != nil {
			return
		}
		mid := m.ID()
		if sameEntry(mid, id) {
			return
		}
		if m.Key() == key {
			// A plain id, not the one received (whose batch tracker
			// belongs to the other consumer).
			p.keep.AckID(pulsar.NewMessageID(mid.LedgerID(), mid.EntryID(), mid.BatchIdx(), mid.PartitionIdx()))
		}
	}
}

// sameEntry compares the entries two ids name (ledger ids are unique
// across a cluster's topics and partitions).
func sameEntry(a, b pulsar.MessageID) bool {
	return a.LedgerID() == b.LedgerID() && a.EntryID() == b.EntryID()
}
