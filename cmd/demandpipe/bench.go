package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/demandpipe/demandpipe/bench"
	"github.com/demandpipe/demandpipe/bench/report"
	"github.com/demandpipe/demandpipe/gen"
	"github.com/demandpipe/demandpipe/job"
	"github.com/demandpipe/demandpipe/pipeline"
)

func benchCommand(args []string) error {
	cfg := pipeline.DefaultConfig()
	gc := gen.DefaultConfig()
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	events := fs.Int("events", 2_000_000, "raw events to generate in memory and replay")
	rounds := fs.Int("rounds", 3, "replays per parallelism value, interleaved; medians are compared")
	var pars []int
	fs.Var(intList{&pars}, "compare", "parallelism values to compare side by side, e.g. 1,2 (default: just -parallelism)")
	fs.IntVar(&gc.EventsPerMinute, "rate", gc.EventsPerMinute, "generated raw events per minute of event time")
	fs.IntVar(&gc.Riders, "riders", gc.Riders, "generated rider population")
	reportPath := fs.String("report", "", "instead, measure each optimization alone against bench/naive (-rounds rounds a side) and write the markdown report to this path, e.g. bench/REPORT.md")
	defs := engineFlags(fs, &cfg)
	if err := parse(fs, args, "demandpipe bench [flags]: generate events in memory and replay them through the pipeline into null:.", ""); err != nil {
		return err
	}
	if err := defs.apply(fs, &cfg); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if *reportPath != "" {
		rc := report.DefaultConfig()
		rc.Rounds, rc.Log = *rounds, os.Stderr
		return report.WriteFile(*reportPath, rc)
	}
	if len(pars) == 0 {
		pars = []int{cfg.Parallelism}
	}
	start := time.Now()
	data, err := gen.Generate(gc, *events)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "demandpipe bench: generated %d events (%.0f MB, %d riders, %d events/min) in %.1fs; definition %s\n",
		*events, float64(len(data))/1e6, gc.Riders, gc.EventsPerMinute, time.Since(start).Seconds(), job.DefinitionsText(cfg))
	return bench.Compare(os.Stdout, data, cfg, pars, *rounds)
}
