// Package bench measures demandpipe end to end: a generated city-scale file
// replayed from memory through the whole pipeline into the null sink.
// `demandpipe bench` and BenchmarkEndToEnd both use it.
package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/demandpipe/demandpipe/internal/procmem"
	"github.com/demandpipe/demandpipe/pipeline"
	"github.com/demandpipe/demandpipe/sink"
)

// Result is one replay's measurements.
type Result struct {
	Parallelism   int
	Events        int64 // raw lines
	Counted, Rows int64
	Minutes       int64
	Seconds       float64
	CloseSeconds  float64
	Mallocs       uint64 // heap allocations during the replay
	AllocBytes    uint64
	PeakRSSBytes  int64 // process high-water mark (VmHWM) after the replay
	Bytes         int64
}

// EventsPerSecond is raw events per second.
func (r Result) EventsPerSecond() float64 { return float64(r.Events) / r.Seconds }

func (r Result) String() string {
	return fmt.Sprintf("parallelism=%d events=%d in %.2fs: %.0f raw events/s (%.0f MB/s), %.0f counted/s, %.0f rows/s, %d minutes (%.2fs closing), %.1f allocs/1k events, %.0f MB allocated, peak RSS %.0f MB",
		r.Parallelism, r.Events, r.Seconds, r.EventsPerSecond(), float64(r.Bytes)/r.Seconds/1e6,
		float64(r.Counted)/r.Seconds, float64(r.Rows)/r.Seconds, r.Minutes, r.CloseSeconds,
		1000*float64(r.Mallocs)/float64(max(r.Events, 1)), float64(r.AllocBytes)/1e6, float64(r.PeakRSSBytes)/1e6)
}

// Replay runs data through a fresh engine into the null sink, with
// GOMAXPROCS set to the parallelism, so that parallelism=1 measures one core.
func Replay(data []byte, cfg pipeline.Config) (Result, error) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(cfg.Parallelism))
	e, err := pipeline.New(cfg)
	if err != nil {
		return Result{}, err
	}
	for range cfg.Extra {
		e.ExtraSinks = append(e.ExtraSinks, &sink.Null{})
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	if err := e.Run(context.Background(), bytes.NewReader(data), &sink.Null{}); err != nil {
		return Result{}, err
	}
	secs := time.Since(start).Seconds()
	runtime.ReadMemStats(&after)
	s := e.Stats.Snapshot()
	return Result{
		Parallelism: cfg.Parallelism, Events: s.Lines, Counted: s.Counted, Rows: s.Rows,
		Minutes: s.Minutes, Seconds: secs, CloseSeconds: s.CloseSeconds,
		Mallocs: after.Mallocs - before.Mallocs, AllocBytes: after.TotalAlloc - before.TotalAlloc,
		PeakRSSBytes: procmem.PeakRSS(), Bytes: int64(len(data)),
	}, nil
}

// Compare replays data once per parallelism value, interleaved rounds times,
// and prints each result and the median ratio to the first: side by side in
// one run, since these machines are shared and noisy.
func Compare(w io.Writer, data []byte, cfg pipeline.Config, pars []int, rounds int) error {
	secs := make([][]float64, len(pars))
	for r := range rounds {
		for i, p := range pars {
			c := cfg
			c.Parallelism = p
			res, err := Replay(data, c)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "round %d: %s\n", r+1, res)
			secs[i] = append(secs[i], res.Seconds)
		}
	}
	base := median(secs[0])
	for i, p := range pars {
		fmt.Fprintf(w, "parallelism=%d: median %.2fs, %.2fx the speed of parallelism=%d\n", p, median(secs[i]), base/median(secs[i]), pars[0])
	}
	return nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s[len(s)/2]
}
