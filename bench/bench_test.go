package bench

import (
	"flag"
	"fmt"
	"testing"

	"github.com/demandpipe/demandpipe/gen"
	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/pipeline"
)

var events = flag.Int("events", 300_000, "raw events for BenchmarkEndToEnd (use >= 1000000 for city scale)")

// BenchmarkEndToEnd replays a generated file from memory through the whole
// pipeline into the null sink, at parallelism 1 and 2.
func BenchmarkEndToEnd(b *testing.B) {
	data, err := gen.Generate(gen.DefaultConfig(), *events)
	if err != nil {
		b.Fatal(err)
	}
	for _, par := range []int{1, 2} {
		b.Run(fmt.Sprintf("events=%d/parallelism=%d", *events, par), func(b *testing.B) {
			cfg := pipeline.DefaultConfig()
			cfg.Parallelism = par
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			var res Result
			for b.Loop() {
				if res, err = Replay(data, cfg); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(res.EventsPerSecond(), "events/s")
			b.ReportMetric(float64(res.Counted)/res.Seconds, "counted/s")
			b.ReportMetric(float64(res.Rows)/res.Seconds, "rows/s")
			b.ReportMetric(float64(res.PeakRSSBytes)/1e6, "peakRSS-MB")
		})
	}
}

func TestReplaySmall(t *testing.T) {
	if norace.Run(t) {
		return
	}
	c := gen.DefaultConfig()
	c.EventsPerMinute = 5000
	data, err := gen.Generate(c, 20_000)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Replay(data, pipeline.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 20_000 || res.Counted == 0 || res.Rows == 0 || res.Counted >= res.Events {
		t.Fatalf("implausible replay: %s", res)
	}
}
