package sink

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/internal/metrics"
)

// QueueMetrics exports a Queue's QueueStats to Prometheus. It reads one
// snapshot per scrape, so the queue counts once (plain atomics) and the
// metrics cost nothing between scrapes. Metrics (namespace demandpipe,
// subsystem sink, constant labels as given, e.g. sink="cassandra"):
//
//	demandpipe_sink_sent_items_total        counter   items written
//	demandpipe_sink_sent_batches_total      counter   batches written
//	demandpipe_sink_failures_total          counter   failed write attempts
//	demandpipe_sink_retries_total           counter   attempts after a failure
//	demandpipe_sink_dropped_items_total     counter   items given up on (the run fails)
//	demandpipe_sink_dropped_batches_total   counter
//	demandpipe_sink_enqueue_blocked_total   counter   times a Write waited for room
//	demandpipe_sink_in_flight_writes        gauge     writes being sent now
//	demandpipe_sink_queue_items             gauge     items held (queue fill)
//	demandpipe_sink_queue_capacity_items    gauge     the bound on queue_items
//	demandpipe_sink_batch_items             histogram items per sent batch
//	demandpipe_sink_write_duration_seconds  histogram duration of write attempts
type QueueMetrics struct {
	reg   prometheus.Registerer
	stats func() QueueStats

	counters   []*prometheus.Desc
	inFlight   *prometheus.Desc
	queued     *prometheus.Desc
	capacity   *prometheus.Desc
	batchItems *prometheus.Desc
	writeSecs  *prometheus.Desc
}

// NewQueueMetrics builds the adapter over stats (usually a Queue's Stats
// method) and registers it with reg (metrics.Register). A nil reg
// registers nothing: a caller that registers the adapter with collectors
// of its own, all or none, passes nil and registers them together.
func NewQueueMetrics(reg prometheus.Registerer, labels prometheus.Labels, stats func() QueueStats) (*QueueMetrics, error) {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(metrics.Namespace, "sink", name), help, nil, labels)
	}
	m := &QueueMetrics{
		reg: reg, stats: stats,
		counters: []*prometheus.Desc{
			d("sent_items_total", "Items written by the sink's store."),
			d("sent_batches_total", "Batches written by the sink's store."),
			d("failures_total", "Failed write attempts (each is retried until max retries)."),
			d("retries_total", "Write attempts made after a failure, each after a jittered back-off."),
			d("dropped_items_total", "Items given up on after max retries, a permanent error or the close deadline; any drop fails the run."),
			d("dropped_batches_total", "Batches given up on."),
			d("enqueue_blocked_total", "Times a write waited for room in the full queue (back-pressure)."),
		},
		inFlight:   d("in_flight_writes", "Writes being sent now (at most -sink.writers)."),
		queued:     d("queue_items", "Items held by the queue: open, sealed and in flight."),
		capacity:   d("queue_capacity_items", "The queue's bound on queue_items (-sink.queue-capacity)."),
		batchItems: d("batch_items", "Items per sent batch."),
		writeSecs:  d("write_duration_seconds", "Duration of write attempts, failed ones included."),
	}
	if err := metrics.Register(reg, m); err != nil {
		return nil, err
	}
	return m, nil
}

// Unregister removes the adapter from the registerer NewQueueMetrics
// registered it with.
func (m *QueueMetrics) Unregister() {
	metrics.Unregister(m.reg, m)
}

// Describe implements prometheus.Collector.
func (m *QueueMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range m.counters {
		ch <- d
	}
	ch <- m.inFlight
	ch <- m.queued
	ch <- m.capacity
	ch <- m.batchItems
	ch <- m.writeSecs
}

// Collect implements prometheus.Collector.
func (m *QueueMetrics) Collect(ch chan<- prometheus.Metric) {
	s := m.stats()
	for i, v := range []int64{s.SentItems, s.SentBatches, s.Failures, s.Retries, s.DroppedItems, s.DroppedBatches, s.Blocked} {
		ch <- prometheus.MustNewConstMetric(m.counters[i], prometheus.CounterValue, float64(v))
	}
	ch <- prometheus.MustNewConstMetric(m.inFlight, prometheus.GaugeValue, float64(s.InFlight))
	ch <- prometheus.MustNewConstMetric(m.queued, prometheus.GaugeValue, float64(s.Queued))
	ch <- prometheus.MustNewConstMetric(m.capacity, prometheus.GaugeValue, float64(s.Capacity))
	ch <- prometheus.MustNewConstHistogram(m.batchItems, s.BatchItems.Count, s.BatchItems.Sum, s.BatchItems.Cumulative())
	ch <- prometheus.MustNewConstHistogram(m.writeSecs, s.SendSeconds.Count, s.SendSeconds.Sum, s.SendSeconds.Cumulative())
}
