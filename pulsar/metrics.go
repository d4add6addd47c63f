package pulsar

import (
	"fmt"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/internal/metrics"
)

// RegisterMetrics exports the Pulsar source's counters on reg (nil: none),
// all or none (metrics.Register), namespace demandpipe, subsystem source:
//
//	pulsar_messages_total              messages received from the broker (copies included)
//	pulsar_received_bytes_total        their payload bytes
//	pulsar_redeliveries_total          messages with a redelivery count above 0, and copies
//	                                   dropped as already handed or checkpointed (after a
//	                                   reconnect or a resume)
//	pulsar_acked_messages_total        messages acknowledged (checkpoint durable)
//	pulsar_ack_errors_total            acknowledgements the client refused (redelivered later)
//	pulsar_reconnects_total            consumer reconnections to a broker
//	pulsar_dead_lettered_total         rejected lines stored on the dead-letter topic
//	pulsar_unacked_messages            messages handed to the engine, awaiting a checkpoint
//	pulsar_partition_unacked_messages  the most messages of one partition taken and not
//	                                   acknowledged: what the broker's unacked limit counts
//	pulsar_max_unacked_messages        that limit, max-unacked= (shared and key_shared; 0: none):
//	                                   the run fails when the gauge above comes within what
//	                                   the client may hold (receiver-queue + 10 + a batch)
//	pulsar_consumer_lag_seconds        now minus the publish time of the last message handed
//	                                   to the engine (0 before the first)
//	pulsar_key_slot_bytes              key_shared: the per-slot tables (the last message taken
//	                                   and acknowledged of each sticky-key slot met), 12 KiB
//	                                   per 256 slots, at most 3 MiB a partition; 0 otherwise
func (p *Source) RegisterMetrics(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	s := &p.stats
	const sub = "source"
	return metrics.Register(reg,
		metrics.Counter(sub, "pulsar_messages_total", "Messages received from Pulsar, redelivered copies included.", &s.messages),
		metrics.Counter(sub, "pulsar_received_bytes_total", "Payload bytes of the messages received from Pulsar.", &s.bytes),
		metrics.CounterFunc(sub, "pulsar_redeliveries_total", "Messages Pulsar delivered again: a redelivery count above 0, or a copy dropped as already handed to the engine or checkpointed (after a reconnect or a resume).",
			func() float64 { return float64(s.redelivered.Load() + s.skipped.Load()) }),
		metrics.Counter(sub, "pulsar_acked_messages_total", "Messages acknowledged to Pulsar, each once a checkpoint past it was durable.", &s.acked),
		metrics.Counter(sub, "pulsar_ack_errors_total", "Acknowledgements the Pulsar client refused (the messages come again and are dropped then).", &s.ackErrors),
		metrics.CounterFunc(sub, "pulsar_reconnects_total", "Times the Pulsar consumer reconnected to a broker (a dropped connection, a broker restart or a topic moved).",
			func() float64 { return float64(p.reconnects()) }),
		metrics.Counter(sub, "pulsar_dead_lettered_total", "Rejected lines stored on the dead-letter topic.", &s.deadLettered),
		metrics.Gauge(sub, "pulsar_unacked_messages", "Messages handed to the engine and not yet acknowledged (waiting for a checkpoint past them).", &s.unacked),
		metrics.GaugeFunc(sub, "pulsar_partition_unacked_messages", "The most messages of one partition taken from the broker and not acknowledged, as the broker counts them against maxUnackedMessagesPerConsumer (shared and key_shared; 0 otherwise).",
			func() float64 { return float64(p.heldMax()) }),
		metrics.GaugeFunc(sub, "pulsar_max_unacked_messages", "The broker's limit on messages delivered and not acknowledged per consumer and partition, max-unacked= (shared and key_shared; 0: none): the run fails when pulsar_partition_unacked_messages comes within what the client may hold (receiver-queue, 10 and a batch) of it.",
			func() float64 { return float64(p.limit) }),
		metrics.GaugeFunc(sub, "pulsar_key_slot_bytes", "Bytes of the key_shared source's per-slot tables: the last message taken and acknowledged of each sticky-key slot met, allocated 256 slots at a time, at most 3 MiB a partition (0 on other subscription types).",
			func() float64 { return float64(p.keySlotBytes()) }),
		metrics.GaugeFunc(sub, "pulsar_consumer_lag_seconds", "Seconds between now and the publish time of the last message handed to the engine (0 before the first).",
			func() float64 {
				t := s.publishNanos.Load()
				if t == 0 {
					return 0
				}
				return max(0, time.Since(time.Unix(0, t)).Seconds())
			}),
	)
}

// keySlotBytes is the memory of the key_shared slot tables.
func (p *Source) keySlotBytes() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n int64
	for _, o := range p.order {
		for _, c := range o.chunks {
			if c != nil {
				n += int64(unsafe.Sizeof(*c))
			}
		}
	}
	return n
}

// reconnects counts the consumer's reconnections (0 before it subscribed).
func (p *Source) reconnects() int64 {
	if p.client == nil {
		return 0
	}
	return p.client.Reconnects()
}

// heldMax is the most messages of one partition taken and not
// acknowledged.
func (p *Source) heldMax() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n int64
	for _, h := range p.held {
		n = max(n, h)
	}
	return n
}

// AckStats reports the messages acknowledged so far and those handed to
// the engine and not yet acknowledged.
func (p *Source) AckStats() (acked, unacked int64) {
	return p.stats.acked.Load(), p.stats.unacked.Load()
}

// Summary is one line for the end of a run: messages received, copies
// dropped, acknowledged, dead-lettered, reconnects.
func (p *Source) Summary() string {
	s := &p.stats
	line := fmt.Sprintf("%d messages received, %d redelivered (%d copies dropped as already read), %d acknowledged, %d dead-lettered, %d reconnects",
		s.messages.Load(), s.redelivered.Load()+s.skipped.Load(), s.skipped.Load(), s.acked.Load(), s.deadLettered.Load(), p.reconnects())
	if n := s.trimmed.Load(); n > 0 {
		line += fmt.Sprintf("; NOT READ: %d messages at the topic's start, deleted by the broker's retention before this run (allow-trimmed=true)", n)
	}
	return line
}
