package scaleout

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/internal/metrics"
)

// subsystem is the package's metrics' subsystem: demandpipe_scaleout_*.
// The metrics read the transport's plain atomics at scrape time (nothing
// on the hot path).
const subsystem = "scaleout"

// RegisterMetrics adds the aggregate transport's metrics (the package doc
// lists them) to reg, all or none (metrics.Register); nil registers
// nothing.
func (a *Aggregate) RegisterMetrics(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	c := &a.stats
	owned := 0
	for _, o := range a.owned {
		if o {
			owned++
		}
	}
	return metrics.Register(reg,
		metrics.Counter(subsystem, "messages_total", "Internal-topic messages handled.", &c.messages),
		metrics.Counter(subsystem, "duplicate_messages_total", "Messages dropped as copies of ones handled (redelivered after a lost connection).", &c.duplicates),
		metrics.Counter(subsystem, "replayed_events_total", "Counted events dropped because their slot was committed through their minute (restored from the sink).", &c.replayed),
		metrics.Counter(subsystem, "acked_messages_total", "Messages acknowledged (once every minute they carry is committed).", &c.acked),
		metrics.Counter(subsystem, "dedup_restarts_total", "Times a dedup process was heard starting again (a new epoch) on a slot: what it had sent after its checkpoint was taken back.", &c.restarts),
		metrics.Gauge(subsystem, "unacked_messages", "Messages handled and waiting for their minutes to commit.", &c.unacked),
		metrics.GaugeFunc(subsystem, "owned_slots", "Key slots this process owns.", func() float64 { return float64(owned) }),
		metrics.GaugeFunc(subsystem, "restore_seconds", "Time the process spent restoring its slots from the sink when it started.", func() float64 { return float64(a.agg.Stats.RestoreNanos.Load()) / 1e9 }),
		metrics.GaugeFunc(subsystem, "closed_minute_timestamp_seconds", "Start of the last minute closed and committed (0 before any).", func() float64 {
			if m := a.agg.Stats.Closed.Load(); m > 0 {
				return float64(m * 60)
			}
			return 0
		}),
		metrics.GaugeFunc(subsystem, "uncovered_slots", "Slots no live aggregate process of this deployment holds (-scaleout.ranges leave a gap: their regions' rows are missing), as announced on the members topic.", func() float64 { return float64(a.members.uncovered.Load()) }),
		metrics.GaugeFunc(subsystem, "overlapping_slots", "Slots two or more live aggregate processes of this deployment hold (a takeover under way, or ranges that overlap).", func() float64 { return float64(a.members.overlapping.Load()) }),
		metrics.GaugeFunc(subsystem, "watermark_lag_seconds", "Event time between the highest and the lowest watermark over (dedup process, owned slot), in whole minutes: a slot or a dedup process behind holds every close back.", func() float64 { return float64(c.lag.Load() * 60) }),
	)
}

// RegisterMetrics adds the dedup process's transport metrics to reg, all
// or none (metrics.Register); nil registers nothing:
//
//	demandpipe_scaleout_sent_messages_total   messages sent to the internal topic
//	demandpipe_scaleout_sent_bytes_total      their payload bytes (over demandpipe_pipeline_counted_total: bytes per counted event)
//	demandpipe_scaleout_checkpoints_total     checkpoints stored on the state topic
//	demandpipe_scaleout_checkpoint_minute_timestamp_seconds  start of the minute the last checkpoint is complete through (0 before any)
func (p *Publisher) RegisterMetrics(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	return metrics.Register(reg,
		metrics.Counter(subsystem, "sent_messages_total", "Messages this dedup process sent to the internal topic (events and watermarks).", &p.sent),
		metrics.Counter(subsystem, "sent_bytes_total", "Payload bytes of the messages sent to the internal topic.", &p.sentBytes),
		metrics.Counter(subsystem, "checkpoints_total", "Checkpoints stored on the state topic (one before each watermark).", &p.checkpoints),
		metrics.GaugeFunc(subsystem, "checkpoint_minute_timestamp_seconds", "Start of the minute the last stored checkpoint is complete through (0 before any): a restart resumes there.", func() float64 {
			return float64(p.checkpointed.Load() * 60)
		}),
	)
}
