package pulsar

import (
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
)

// The merge. The client hands over a partitioned topic's messages in the
// order they happen to arrive from each partition's connection: each
// partition in its order, but one partition may run thousands of messages
// ahead of another (measured here: 1,800 to 7,500 of 40,000 with a receiver
// queue of 1 to 1,000), so the engine's lateness decisions would depend on
// timing. Instead each partition's messages wait in a queue and the source
// hands out the head with the earliest key, the message's event time when
// the producer set one (demandpipe publish sets it from ts), else its
// publish time; ties go to the lower partition. A head is handed out once
// every other partition has a head too, has been read to its end
// (until=end), or (a live stream) the head has waited merge-wait for a
// silent partition. Each partition keeps its own order; across partitions
// event time advances evenly, so a partition that arrives late is not made
// late by another that ran ahead. The merge's output from any point
// depends only on the messages still to come in each partition, so a
// resumed run, whose partitions continue after the checkpoint's cursor,
// hands the engine the same sequence as the first run did from that point
// (RECOVERY.md).

// queued is a message waiting in its partition's queue.
type queued struct {
	msg     pulsar.Message
	key     int64 // merge key: event time, else publish time (unix ms)
	arrived time.Time
	slot    int32 // key_shared: the message's sticky-key slot (keyorder.go), else -1
}

// mergeKey is msg's event time if its producer set one, else its publish
// time, in unix milliseconds.
func mergeKey(msg pulsar.Message) int64 {
	if t := msg.EventTime(); !t.IsZero() {
		return t.UnixMilli()
	}
	return msg.PublishTime().UnixMilli()
}

// partQueue is a FIFO of one partition's messages.
type partQueue struct {
	q    []queued
	head int
}

func (pq *partQueue) len() int { return len(pq.q) - pq.head }

func (pq *partQueue) push(x queued) {
	if pq.head > 0 && pq.head >= len(pq.q)/2 {
		pq.q = pq.q[:copy(pq.q, pq.q[pq.head:])]
		clear(pq.q[len(pq.q):cap(pq.q)][:pq.head])
		pq.head = 0
	}
	pq.q = append(pq.q, x)
}

func (pq *partQueue) front() *queued { return &pq.q[pq.head] }

func (pq *partQueue) pop() queued {
	x := pq.q[pq.head]
	pq.q[pq.head] = queued{}
	pq.head++
	if pq.head == len(pq.q) {
		pq.q, pq.head = pq.q[:0], 0
	}
	return x
}

// pick returns the partition whose head is next, or -1 and how long to
// wait for a silent partition (0: until more input arrives).
func (p *Source) pick(now time.Time) (int, time.Duration) {
	best, bestKey := -1, int64(0)
	for i := range p.queues {
		if p.queues[i].len() == 0 {
			continue
		}
		if k := p.queues[i].front().key; best < 0 || k < bestKey {
			best, bestKey = i, k
		}
	}
	if best < 0 {
		return -1, 0
	}
	for i := range p.queues {
		if i == best || p.queues[i].len() > 0 || (p.end != nil && i < len(p.end) && p.end[i] == nil) {
			continue // has a head, or was read to its end
		}
		// Partition i may still send an earlier message.
		if p.cfg.UntilEnd {
			return -1, 0 // it will: it has not reached its end
		}
		if w := p.cfg.MergeWait - now.Sub(p.queues[best].front().arrived); w > 0 {
			return -1, w
		}
	}
	return best, 0
}

// past reports whether id comes after end, the last message id a
// partition had when an until=end run started (end's batch index names the
// last message of a batch entry; -1 when the broker does not say: then the
// whole entry is before the end).
func past(id, end pulsar.MessageID) bool {
	if end == nil {
		return false
	}
	if end.EntryID() < 0 {
		return true // the partition was empty
	}
	if d := cmpEntry(id, end); d != 0 {
		return d > 0
	}
	return end.BatchIdx() >= 0 && id.BatchIdx() > end.BatchIdx()
}
