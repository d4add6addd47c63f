package store

import (
	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/internal/metrics"
)

// storeMetrics are the store's collectors (listed in doc.go). They are
// counted per batch or per call, never per row.
type storeMetrics struct {
	reg prometheus.Registerer
	all []prometheus.Collector

	rowsWritten, rowsDropped, bytesWritten, minutesClosed prometheus.Counter
	minutesExpired, compactions, readRows                 prometheus.Counter
	readGet, readMany, readScan                           prometheus.Counter
	commitSeconds                                         prometheus.Histogram
}

// subsystem is the store's metrics' subsystem: demandpipe_store_*.
const subsystem = "store"

// newMetrics builds the store's collectors and registers them with reg, all
// or none (metrics.Register); nil registers nothing.
func newMetrics(reg prometheus.Registerer, s *Store) (*storeMetrics, error) {
	opts := func(name, help string) prometheus.CounterOpts {
		return prometheus.CounterOpts{Namespace: metrics.Namespace, Subsystem: subsystem, Name: name, Help: help}
	}
	reads := prometheus.NewCounterVec(opts("reads_total", "Read calls, by operation (get, get_many, scan)."), []string{"op"})
	m := &storeMetrics{
		reg:            reg,
		rowsWritten:    prometheus.NewCounter(opts("rows_written_total", "Rows committed.")),
		rowsDropped:    prometheus.NewCounter(opts("rows_dropped_total", "Rows not stored: their minute was never closed before Close (a minute past retention is refused with an error instead).")),
		bytesWritten:   prometheus.NewCounter(opts("bytes_written_total", "Encoded key+value bytes committed.")),
		minutesClosed:  prometheus.NewCounter(opts("minute_commits_total", "Minutes committed, zero-row minutes included.")),
		minutesExpired: prometheus.NewCounter(opts("minute_expirations_total", "Minutes removed by retention.")),
		compactions:    prometheus.NewCounter(opts("compactions_total", "Manual compactions of expired key ranges.")),
		readRows:       prometheus.NewCounter(opts("read_rows_total", "Rows returned by reads, found or all-zero.")),
		readGet:        reads.WithLabelValues("get"),
		readMany:       reads.WithLabelValues("get_many"),
		readScan:       reads.WithLabelValues("scan"),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metrics.Namespace, Subsystem: subsystem, Name: "commit_duration_seconds",
			Help: "Time to commit a closed minute: batch apply and WAL fsync.",
			// 0.5 ms .. ~8 s: an fsync is ~1-5 ms here, a dense minute's batch ~10-50 ms.
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 15),
		}),
	}
	diskBytes := metrics.GaugeFunc(subsystem, "disk_bytes", "Disk space used by the store (pebble's estimate).", func() float64 {
		s.rmu.RLock()
		defer s.rmu.RUnlock()
		if s.closed {
			return 0
		}
		return float64(s.db.Metrics().DiskSpaceUsage())
	})
	latest := metrics.GaugeFunc(subsystem, "latest_minute_timestamp_seconds", "Start of the newest closed minute, unix seconds (0 when none).", func() float64 {
		m, _ := s.LatestMinute()
		return float64(m * 60)
	})
	// Pebble's internals that matter to an operator: compaction debt (bytes
	// to compact before the LSM is in shape: growing debt precedes write
	// stalls) and the write stalls themselves (commits waiting on flushes).
	pebbleGauge := func(name, help string, f func(*pebble.Metrics) float64) prometheus.Collector {
		return metrics.GaugeFunc(subsystem, name, help, func() float64 {
			s.rmu.RLock()
			defer s.rmu.RUnlock()
			if s.closed {
				return 0
			}
			return f(s.db.Metrics())
		})
	}
	debt := pebbleGauge("compaction_debt_bytes", "Bytes pebble estimates it must compact to bring the LSM into shape.",
		func(pm *pebble.Metrics) float64 { return float64(pm.Compact.EstimatedDebt) })
	l0 := pebbleGauge("l0_sublevels", "Sublevels in pebble's level 0 (write stalls start past ~20).",
		func(pm *pebble.Metrics) float64 { return float64(pm.Levels[0].Sublevels) })
	stalls := metrics.Counter(subsystem, "write_stalls_total", "Times pebble stalled writes (memtables or level 0 full).", &s.faults.stalls)
	m.all = []prometheus.Collector{m.rowsWritten, m.rowsDropped, m.bytesWritten, m.minutesClosed,
		m.minutesExpired, m.compactions, m.readRows, reads, m.commitSeconds, diskBytes, latest, debt, l0, stalls}
	if err := metrics.Register(reg, m.all...); err != nil {
		return nil, err
	}
	return m, nil
}

// unregister removes the collectors, so that a store reopened in the same
// process (tests, a restart of the writer) can register again.
func (m *storeMetrics) unregister() {
	metrics.Unregister(m.reg, m.all...)
}
