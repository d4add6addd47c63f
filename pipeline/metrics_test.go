package pipeline

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/demandpipe/demandpipe/encode"
)

func TestMetricsReadStats(t *testing.T) {
	t.Parallel()
	lines := []string{ev("10:00:05", "a", 40.7580, -73.9855), ev("10:00:06", "a", 40.7580, -73.9855), "junk"}
	_, _, e := runEngine(t, lines, DefaultConfig().Def, 30_000, 1, 4096)
	reg := prometheus.NewRegistry()
	if err := e.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP demandpipe_pipeline_counted_total Events that count.
# TYPE demandpipe_pipeline_counted_total counter
demandpipe_pipeline_counted_total 1
# HELP demandpipe_pipeline_duplicates_total Valid on-time events dropped by dedup (not first for rider, product, minute).
# TYPE demandpipe_pipeline_duplicates_total counter
demandpipe_pipeline_duplicates_total 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "demandpipe_pipeline_counted_total", "demandpipe_pipeline_duplicates_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(prometheus.Collector(mustFind(t, reg, "invalid_json"))); n != 1 {
		t.Fatalf("rejected{invalid_json} = %v", n)
	}
	if err := e.RegisterMetrics(nil); err != nil {
		t.Fatal(err)
	}
}

// mustFind gathers and returns a collector exposing only the rejected
// counter with the given reason.
func mustFind(t *testing.T, reg *prometheus.Registry, reason string) prometheus.Collector {
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "demandpipe_pipeline_rejected_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == reason {
					v := m.GetCounter().GetValue()
					return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x", Help: "x"}, func() float64 { return v })
				}
			}
		}
	}
	t.Fatalf("no rejected_total{reason=%q}", reason)
	return nil
}

// TestMetricsTimes pins the time gauges (base units, unix seconds) and the
// delay computed at scrape time against an injected clock.
func TestMetricsTimes(t *testing.T) {
	t.Parallel()
	e, err := New(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2024, 6, 1, 10, 7, 30, 250e6, time.UTC)
	now := ts.Add(95 * time.Second)
	reg := prometheus.NewRegistry()
	if err := e.registerMetrics(reg, func() time.Time { return now }); err != nil {
		t.Fatal(err)
	}
	names := []string{"demandpipe_pipeline_event_time_delay_seconds", "demandpipe_pipeline_event_time_lead_seconds",
		"demandpipe_pipeline_last_closed_minute_timestamp_seconds", "demandpipe_pipeline_max_event_timestamp_seconds"}
	// Before the first event the delay is NaN (not 56 years), the rest 0.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == names[0] {
			if v := mf.GetMetric()[0].GetGauge().GetValue(); !math.IsNaN(v) {
				t.Fatalf("delay before any event = %v, want NaN", v)
			}
		}
	}
	e.Stats.MaxTS.Store(ts.UnixMilli())
	e.Stats.Closed.Store(ts.Unix()/60 - 1)         // 10:06
	e.Stats.EventTime.Store(ts.UnixMilli() - 2500) // the 16th rider 2.5 s behind the largest ts
	want := `
# HELP demandpipe_pipeline_event_time_delay_seconds Wall clock at scrape minus the largest event ts seen, seconds; the watermark is -windows.lateness further back. NaN before the first event.
# TYPE demandpipe_pipeline_event_time_delay_seconds gauge
demandpipe_pipeline_event_time_delay_seconds 95
# HELP demandpipe_pipeline_event_time_lead_seconds How far the largest accepted ts is ahead of event time (the -windows.future-confirm-riders-th largest of riders' latest ts), seconds: milliseconds on a dense stream; minutes on a thin one; hours on a dense one means a few riders' clocks are fast (their events count in the minutes they claim and move nothing else). NaN before K riders.
# TYPE demandpipe_pipeline_event_time_lead_seconds gauge
demandpipe_pipeline_event_time_lead_seconds 2.5
# HELP demandpipe_pipeline_last_closed_minute_timestamp_seconds Start of the last closed minute, unix seconds (0 before the first close).
# TYPE demandpipe_pipeline_last_closed_minute_timestamp_seconds gauge
demandpipe_pipeline_last_closed_minute_timestamp_seconds 1.71723636e+09
# HELP demandpipe_pipeline_max_event_timestamp_seconds Largest event ts seen, unix seconds (0 before the first event).
# TYPE demandpipe_pipeline_max_event_timestamp_seconds gauge
demandpipe_pipeline_max_event_timestamp_seconds 1.71723645025e+09
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	// Every reason is exported from the start (a rate over a series that
	// appears late misses its first increase), "future" among them.
	if n, err := testutil.GatherAndCount(reg, "demandpipe_pipeline_rejected_total"); err != nil || n != int(encode.NumReasons)-1 {
		t.Fatalf("rejected_total: %d series (%v), want %d", n, err, encode.NumReasons-1)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Fatalf("promlint: %v %v", problems, err)
	}
	// A second registration fails whole and leaves nothing half-registered.
	if err := e.RegisterMetrics(reg); err == nil {
		t.Fatal("registered twice")
	}
	if n, _ := testutil.GatherAndCount(reg); n != int(encode.NumReasons)-1+26 {
		t.Fatalf("%d series after a failed second registration", n)
	}
}
