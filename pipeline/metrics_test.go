package pipeline

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetricsReadStats(t *testing.T) {
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
