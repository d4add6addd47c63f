package pipeline

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/encode"
)

// RegisterMetrics exports the engine's counters to Prometheus, namespace
// demandpipe, subsystem pipeline. The values are read from Stats at scrape
// time (CounterFunc/GaugeFunc): the hot path pays nothing for metrics. A nil
// registerer registers nothing.
//
// Metrics:
//
//	demandpipe_pipeline_lines_total                 non-blank input lines
//	demandpipe_pipeline_input_bytes_total           input bytes (decompressed)
//	demandpipe_pipeline_rejected_total{reason}      rejected lines, by reason (a fixed set)
//	demandpipe_pipeline_late_total                  events whose minute had closed
//	demandpipe_pipeline_duplicates_total            events dropped by dedup
//	demandpipe_pipeline_counted_total               events that count
//	demandpipe_pipeline_rows_total                  rows handed to the sink
//	demandpipe_pipeline_minutes_closed_total        minutes closed
//	demandpipe_pipeline_close_seconds_total         time spent closing minutes
//	demandpipe_pipeline_max_event_time_seconds      largest ts seen
//	demandpipe_pipeline_last_closed_minute_seconds  start of the last closed minute
//	demandpipe_pipeline_targets                     (cell, product) pairs with data
func (e *Engine) RegisterMetrics(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	s := &e.Stats
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "demandpipe", Subsystem: "pipeline", Name: name, Help: help}, f)
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "demandpipe", Subsystem: "pipeline", Name: name, Help: help}, f)
	}
	cs := []prometheus.Collector{
		counter("lines_total", "Non-blank input lines read.", func() float64 { return float64(s.Lines.Load()) }),
		counter("input_bytes_total", "Input bytes read, after decompression.", func() float64 { return float64(s.Bytes.Load()) }),
		counter("late_total", "Valid events dropped because their minute had closed.", func() float64 { return float64(s.Late.Load()) }),
		counter("duplicates_total", "Valid on-time events dropped by dedup (not first for rider, product, minute).", func() float64 { return float64(s.Duplicates.Load()) }),
		counter("counted_total", "Events that count.", func() float64 { return float64(s.Counted.Load()) }),
		counter("rows_total", "Feature rows handed to the sink.", func() float64 { return float64(s.Rows.Load()) }),
		counter("minutes_closed_total", "Minutes closed.", func() float64 { return float64(s.Minutes.Load()) }),
		counter("close_seconds_total", "Wall time spent closing minutes.", func() float64 { return float64(s.CloseNanos.Load()) / 1e9 }),
		gauge("max_event_time_seconds", "Largest event ts seen, unix seconds.", func() float64 { return float64(s.MaxTS.Load()) / 1e3 }),
		gauge("last_closed_minute_seconds", "Start of the last closed minute, unix seconds.", func() float64 { return float64(s.Closed.Load()) * 60 }),
		gauge("targets", "(cell, product) pairs with data in some window after the last close.", func() float64 { return float64(s.Targets.Load()) }),
	}
	for r := encode.Reason(1); r < encode.NumReasons; r++ {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "demandpipe", Subsystem: "pipeline", Name: "rejected_total",
			Help: "Rejected input lines, by reason.", ConstLabels: prometheus.Labels{"reason": r.String()},
		}, func() float64 { return float64(s.Rejected[r].Load()) }))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
