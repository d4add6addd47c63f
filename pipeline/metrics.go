package pipeline

import (
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/aggregate"
	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/internal/metrics"
)

// RegisterMetrics exports the engine's counters to Prometheus, namespace
// demandpipe, subsystem pipeline. The values are read from Stats at scrape
// time (CounterFunc/GaugeFunc): the hot path pays nothing for metrics. They
// register all or none (metrics.Register); a nil registerer registers
// nothing.
//
// Metrics:
//
//	demandpipe_pipeline_lines_total                           non-blank input lines
//	demandpipe_pipeline_blank_lines_total                     blank lines (skipped, not rejected)
//	demandpipe_pipeline_input_bytes_total                     input bytes (decompressed)
//	demandpipe_pipeline_rejected_total{reason}                rejected lines, by reason (encode.Reason: a fixed set; "future": ahead of the clock or left open at the end)
//	demandpipe_pipeline_late_total                            events whose minute had closed
//	demandpipe_pipeline_duplicates_total                      events dropped by dedup
//	demandpipe_pipeline_counted_total                         events that count
//	demandpipe_pipeline_h3_errors_total                       counted events H3 could not place
//	demandpipe_pipeline_rows_total                            rows handed to the sink
//	demandpipe_pipeline_minute_closes_total                   minutes closed
//	demandpipe_pipeline_close_seconds_total                   time spent closing minutes
//	demandpipe_pipeline_event_time_lead_seconds               gauge: largest ts - event time T (the K-th rider)
//	demandpipe_pipeline_targets                               gauge: (cell, product) pairs with data
//	demandpipe_pipeline_state_bytes                           gauge: windows and cached disks
//	demandpipe_pipeline_source_state_bytes                    gauge: of it, what scales with the sources (disks, sparse sources)
//	demandpipe_pipeline_dedup_bytes                           gauge: dedup tables of open minutes
//	demandpipe_pipeline_sequencer_bytes                       gauge: events kept ahead of event time or waiting for their product
//	demandpipe_pipeline_restore_seconds_total                 time restoring windows on resume
//	demandpipe_pipeline_cell_index_compactions_total          renumberings of the cell index to the cells still held
//	demandpipe_pipeline_over_budget_events_total              events shed over -max-memory (at dedup or at a close)
//	demandpipe_pipeline_max_memory_bytes                      the budget (-max-memory; 0: none)
//	demandpipe_pipeline_freshness_seconds                     histogram: end of a minute (event time) -> its rows durable
//	demandpipe_pipeline_close_duration_seconds                histogram: start of a minute's close -> its rows durable
//	demandpipe_pipeline_ingestion_seconds                     histogram: last input of a minute read -> its rows durable
//	demandpipe_pipeline_max_event_timestamp_seconds           gauge: largest ts seen (0 before any)
//	demandpipe_pipeline_last_closed_minute_timestamp_seconds  gauge: start of the last closed minute (0 before any;
//	                                                          a dedup process: its last watermark)
//	demandpipe_pipeline_event_time_delay_seconds              gauge: wall clock at scrape minus the largest ts
//	                                                          (the watermark is -windows.lateness further back;
//	                                                          NaN before the first event)
func (e *Engine) RegisterMetrics(reg prometheus.Registerer) error {
	return e.registerMetrics(reg, time.Now)
}

func (e *Engine) registerMetrics(reg prometheus.Registerer, now func() time.Time) error {
	if reg == nil {
		return nil
	}
	s := &e.Stats
	const sub = "pipeline"
	cs := []prometheus.Collector{
		metrics.Counter(sub, "lines_total", "Non-blank input lines read.", &s.Lines),
		metrics.Counter(sub, "blank_lines_total", "Blank input lines, skipped (not rejections).", &s.Blank),
		metrics.Counter(sub, "input_bytes_total", "Input bytes read, after decompression.", &s.Bytes),
		metrics.Counter(sub, "late_total", "Valid events dropped because their minute had closed.", &s.Late),
		metrics.Counter(sub, "duplicates_total", "Valid on-time events dropped by dedup (not first for rider, product, minute).", &s.Duplicates),
		metrics.Counter(sub, "counted_total", "Events that count.", &s.Counted),
		metrics.Counter(sub, "h3_errors_total", "Counted events H3 could not place in a cell.", &s.H3Errors),
		metrics.Counter(sub, "rows_total", "Feature rows handed to the sink.", &s.Rows),
		metrics.Counter(sub, "minute_closes_total", "Minutes closed.", &s.Minutes),
		metrics.CounterFunc(sub, "close_seconds_total", "Wall time spent closing minutes.", func() float64 { return float64(s.CloseNanos.Load()) / 1e9 }),
		metrics.GaugeFunc(sub, "event_time_lead_seconds", "How far the largest accepted ts is ahead of event time (the -windows.future-confirm-riders-th largest of riders' latest ts), seconds: milliseconds on a dense stream; minutes on a thin one; hours on a dense one means a few riders' clocks are fast (their events count in the minutes they claim and move nothing else). NaN before K riders.", func() float64 {
			t := s.EventTime.Load()
			if t == 0 {
				return math.NaN()
			}
			return float64(s.MaxTS.Load()-t) / 1e3
		}),
		metrics.Gauge(sub, "targets", "(cell, product) pairs with data in some window after the last close.", &s.Targets),
		metrics.Gauge(sub, "state_bytes", "Memory held by the sliding windows, the sparse sources, the cell index, the smoothing scratch and the cached k-ring disks after the last close.", &s.StateBytes),
		metrics.Gauge(sub, "source_state_bytes", "Of state_bytes, what scales with the sources rather than the targets: the cached k-ring disks and the sources kept per source. (state_bytes - this) / targets is the state a target costs.", &s.SourceBytes),
		metrics.Gauge(sub, "dedup_bytes", "Memory held by the dedup tables (16 bytes a key; at most a quarter of -max-memory).", &s.DedupBytes),
		metrics.Gauge(sub, "sequencer_bytes", "Memory held by the events kept ahead of event time or waiting for their product's confirmation, with their lines (at most a sixteenth of -max-memory).", &s.SeqBytes),
		metrics.Counter(sub, "over_budget_events_total", "Events shed over -max-memory: at dedup (no room for their key in the dedup quarter) or at their minute's close (their cell was new and the close state was full). Their rows are understated.", &s.OverBudget),
		metrics.GaugeFunc(sub, "max_memory_bytes", "The bound on the close state (-max-memory); 0: none. Compare with state_bytes.", func() float64 { return float64(e.cfg.MaxMemory) }),
		metrics.Counter(sub, "cell_index_compactions_total", "Renumberings of the cell index to the cells the windows still hold (moving cells would grow it forever).", &s.Compactions),
		metrics.CounterFunc(sub, "restore_seconds_total", "Time spent restoring windows from a checkpoint on resume.", func() float64 { return float64(s.RestoreNanos.Load()) / 1e9 }),
		metrics.GaugeFunc(sub, "max_event_timestamp_seconds", "Largest event ts seen, unix seconds (0 before the first event).", func() float64 { return float64(s.MaxTS.Load()) / 1e3 }),
		metrics.GaugeFunc(sub, "last_closed_minute_timestamp_seconds", "Start of the last closed minute, unix seconds (0 before the first close).", func() float64 { return float64(s.Closed.Load()) * 60 }),
		metrics.GaugeFunc(sub, "event_time_delay_seconds", "Wall clock at scrape minus the largest event ts seen, seconds; the watermark is -windows.lateness further back. NaN before the first event.", func() float64 {
			ts := s.MaxTS.Load()
			if ts == 0 {
				return math.NaN()
			}
			return float64(now().UnixMilli()-ts) / 1e3
		}),
	}
	for r := encode.Reason(1); r < encode.NumReasons; r++ {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: metrics.Namespace, Subsystem: sub, Name: "rejected_total",
			Help: "Rejected input lines, by reason.", ConstLabels: prometheus.Labels{"reason": r.String()},
		}, func() float64 { return float64(s.Rejected[r].Load()) }))
	}
	// The latencies that matter, as histograms, observed as each minute
	// is committed by the sink: from the end of the minute in event time
	// to its rows being durable (freshness: the lateness, ~30 s, plus the
	// close; a replay of old data lands in +Inf), and from the start of the
	// close to durable.
	fresh := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: metrics.Namespace, Subsystem: sub, Name: "freshness_seconds",
		Help:    "From the end of a minute (event time) to its rows being durable in the sink.",
		Buckets: []float64{5, 10, 20, 30, 40, 50, 60, 90, 120, 180, 300, 600, 1800, 3600},
	})
	closeDur := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: metrics.Namespace, Subsystem: sub, Name: "close_duration_seconds",
		Help:    "From the start of a minute's close to its rows being durable in the sink.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 16), // 1 ms .. ~33 s
	})
	ingest := prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: metrics.Namespace, Subsystem: sub, Name: "ingestion_seconds",
		Help:    "From reading the last input that counted into a minute to the minute's rows being durable in the sink.",
		Buckets: []float64{1, 5, 10, 20, 30, 40, 50, 60, 90, 120, 180, 300, 600},
	})
	cs = append(cs, fresh, closeDur, ingest)
	cs = append(cs, e.definitionMetrics()...)
	if err := metrics.Register(reg, cs...); err != nil {
		return err
	}
	e.observeClose = func(m int64, took time.Duration, received int64) {
		now := time.Now()
		if e.clock != nil {
			now = e.clock() // a sped-up generator runs ahead of the wall clock
		}
		fresh.Observe(now.Sub(time.UnixMilli((m + 1) * 60000)).Seconds())
		closeDur.Observe(took.Seconds())
		if received > 0 {
			ingest.Observe(time.Since(time.Unix(0, received)).Seconds())
		}
	}
	return nil
}

// definitionMetrics are each definition's close counters, labelled by its
// name, when the run computes several (Config.Extra): the pipeline_ series
// above are the first definition's. At most feature.MaxDefinitions names.
//
//	demandpipe_definition_rows_total{definition}                            rows handed to its sink
//	demandpipe_definition_minute_closes_total{definition}                   minutes closed
//	demandpipe_definition_last_closed_minute_timestamp_seconds{definition}  start of its last closed minute
//	demandpipe_definition_state_bytes{definition}                           its windows' memory after the last close
func (e *Engine) definitionMetrics() []prometheus.Collector {
	if len(e.cfg.Extra) == 0 {
		return nil
	}
	var cs []prometheus.Collector
	add := func(name string, st *aggregate.Stats) {
		l := prometheus.Labels{"definition": name}
		cs = append(cs,
			prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: metrics.Namespace, Subsystem: "definition", Name: "rows_total",
				Help: "Feature rows of a definition handed to its sink.", ConstLabels: l}, func() float64 { return float64(st.Rows.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: metrics.Namespace, Subsystem: "definition", Name: "minute_closes_total",
				Help: "Minutes a definition closed.", ConstLabels: l}, func() float64 { return float64(st.Minutes.Load()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: metrics.Namespace, Subsystem: "definition", Name: "last_closed_minute_timestamp_seconds",
				Help: "Start of a definition's last closed minute, unix seconds (0 before its first close).", ConstLabels: l}, func() float64 { return float64(st.Closed.Load()) * 60 }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: metrics.Namespace, Subsystem: "definition", Name: "state_bytes",
				Help: "Memory held by a definition's windows, sparse sources, cell index and disks after its last close.", ConstLabels: l}, func() float64 { return float64(st.StateBytes.Load()) }),
		)
	}
	add(e.cfg.Named().Name, &e.Stats.Stats)
	for k, d := range e.cfg.Extra {
		add(d.Name, &e.ExtraStats[k])
	}
	return cs
}
