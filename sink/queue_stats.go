package sink

import (
	"math"
	"sync/atomic"
)

// QueueStats are a Queue's plain counters (Queue.Stats). The metrics
// adapter (NewQueueMetrics) reads them; nothing else counts.
type QueueStats struct {
	Enqueued       int64 // items accepted by Enqueue
	SentItems      int64 // items in batches Send accepted
	SentBatches    int64
	Failures       int64 // failed Send attempts
	Retries        int64 // attempts after a failure (each after a back-off)
	DroppedItems   int64 // items given up on: after MaxRetries, a permanent error, or Close's deadline
	DroppedBatches int64
	Blocked        int64 // times Enqueue waited for room (back-pressure)
	InFlight       int64 // Sends running now (never above Writers)
	InFlightPeak   int64
	Queued         int64 // items held now: open, sealed and in flight
	Capacity       int64
	// BatchItems is the distribution of the sizes of sent batches;
	// SendSeconds that of Send attempts' durations, failed ones included.
	BatchItems  Histogram
	SendSeconds Histogram
}

// Histogram is a snapshot of a fixed-bucket histogram: Counts[i] counts
// observations <= Bounds[i] and > Bounds[i-1]; the last count is above
// every bound.
type Histogram struct {
	Bounds []float64
	Counts []uint64 // len(Bounds)+1
	Count  uint64
	Sum    float64
}

// Cumulative returns the counts at or below each bound (Prometheus' form).
func (h Histogram) Cumulative() map[float64]uint64 {
	out := make(map[float64]uint64, len(h.Bounds))
	var c uint64
	for i, b := range h.Bounds {
		c += h.Counts[i]
		out[b] = c
	}
	return out
}

var (
	batchItemBounds = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000}
	// 0.25 ms .. 8 s: a loopback round trip is ~0.1 ms, a live node answers a
	// batch in 1-10 ms, and AttemptTimeout defaults to 5 s.
	sendSecondBounds = []float64{0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192}
)

type queueCounters struct {
	enqueued, sentItems, sentBatches, failures, retries atomic.Int64
	droppedItems, droppedBatches, blocked               atomic.Int64
	inFlight, inFlightPeak, queued, capacity            atomic.Int64
	batchItems, sendSeconds                             histogram
}

// histogram counts observations into fixed buckets with atomics: an
// observation is one binary search and two atomic adds.
type histogram struct {
	bounds []float64
	counts []atomic.Uint64
	count  atomic.Uint64
	sum    atomic.Uint64 // float64 bits
}

func (h *histogram) init(bounds []float64) {
	h.bounds = bounds
	h.counts = make([]atomic.Uint64, len(bounds)+1)
}

func (h *histogram) observe(v float64) {
	lo, hi := 0, len(h.bounds)
	for lo < hi {
		m := (lo + hi) / 2
		if v <= h.bounds[m] {
			hi = m
		} else {
			lo = m + 1
		}
	}
	h.counts[lo].Add(1)
	h.count.Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

func (h *histogram) snapshot() Histogram {
	out := Histogram{Bounds: h.bounds, Counts: make([]uint64, len(h.counts))}
	for i := range h.counts {
		out.Counts[i] = h.counts[i].Load()
	}
	out.Count = h.count.Load()
	out.Sum = math.Float64frombits(h.sum.Load())
	return out
}

// Stats returns a snapshot of the queue's counters.
func (q *Queue[T, K]) Stats() QueueStats {
	s := &q.stats
	return QueueStats{
		Enqueued: s.enqueued.Load(), SentItems: s.sentItems.Load(), SentBatches: s.sentBatches.Load(),
		Failures: s.failures.Load(), Retries: s.retries.Load(),
		DroppedItems: s.droppedItems.Load(), DroppedBatches: s.droppedBatches.Load(), Blocked: s.blocked.Load(),
		InFlight: s.inFlight.Load(), InFlightPeak: s.inFlightPeak.Load(),
		Queued: s.queued.Load(), Capacity: s.capacity.Load(),
		BatchItems: s.batchItems.snapshot(), SendSeconds: s.sendSeconds.snapshot(),
	}
}
