package source

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/internal/metrics"
)

// RegisterPositionMetrics exports how much of src is still to read, from
// its Position at scrape time, on reg (nil: none), all or none
// (metrics.Register):
//
//	demandpipe_source_read_bytes  input bytes read, as stored (compressed files: compressed bytes)
//	demandpipe_source_size_bytes  the input's size as stored, -1 when unknown (pipes, the generator): lag = size - read
//
// Any Source has a Position, so these are a function of the interface, not
// a method each source repeats; a source's metrics of its own come from
// its RegisterMetrics (Instrumented).
func RegisterPositionMetrics(reg prometheus.Registerer, src Source) error {
	return metrics.Register(reg,
		metrics.GaugeFunc("source", "read_bytes", "Input bytes read from the source, as stored (compressed files: compressed bytes).",
			func() float64 { r, _ := src.Position(); return float64(r) }),
		metrics.GaugeFunc("source", "size_bytes", "The source's size in bytes as stored, -1 when unknown (pipes, the generator): lag = size - read.",
			func() float64 { _, n := src.Position(); return float64(n) }),
	)
}
