package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/demandpipe/demandpipe/tuning"
)

const tuneMore = `Grids: a comma-separated list of N, A..B (step 1), A..B+S (step S) or A..BxF
(times F), e.g. -parallelism=1,2 -sink.batch-rows=1,50,200 -sink.writers=4..64x2.
Every combination is a point; each replays the same in-memory events through a
fresh engine into a fresh sink until rows/s is steady (-tune.steady-windows
windows within -tune.tolerance), the events end, or -tune.max-point-time passes.

Recommendation: of the points whose p99 write latency is at most -tune.max-p99,
those within -tune.within of the best rows/s are candidates; the one with the
fewest cores, then the fewest rows in flight (writers x batch rows) wins.

The other -sink.* queue flags (-sink.queue-capacity, ...) and the engine's flags
are those of ` + "`demandpipe run`" + ` and apply to every point. tuning/README.md has a
measured example.`

func tuneCommand(args []string) error {
	cfg := tuning.DefaultConfig()
	fs := flag.NewFlagSet("tune", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	csvPath := fs.String("tune.csv", "tune.csv", "write the results here as CSV (empty: do not)")
	svgPath := fs.String("tune.svg", "tune.svg", "write the chart here as SVG (empty: do not)")
	verbose := fs.Bool("tune.verbose", false, "log the sink's open and drop lines")
	// The engine's and the queue's other flags, as for run; the swept
	// ones (-parallelism, -sink.writers, -sink.batch-rows) are grids here.
	scratch := flag.NewFlagSet("", flag.ContinueOnError)
	engineFlags(scratch, &cfg.Engine)
	cfg.Cassandra.Queue.RegisterFlags(scratch)
	scratch.VisitAll(func(f *flag.Flag) {
		if fs.Lookup(f.Name) == nil {
			fs.Var(f.Value, f.Name, f.Usage)
		}
	})
	if err := parse(fs, args, "demandpipe tune [flags]: sweep -parallelism, -sink.writers and -sink.batch-rows against a sink; print, chart and recommend.", tuneMore); err != nil {
		return err
	}
	if *verbose {
		cfg.Logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, "demandpipe: "+format+"\n", args...) }
	}
	cfg.Progress = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := tuning.Run(ctx, cfg)
	if rep == nil {
		return err
	}
	if werr := rep.WriteTable(os.Stdout); werr != nil {
		return werr
	}
	for _, out := range []struct {
		path  string
		write func(*os.File) error
	}{
		{*csvPath, func(f *os.File) error { return rep.WriteCSV(f) }},
		{*svgPath, func(f *os.File) error { return rep.WriteSVG(f) }},
	} {
		if out.path == "" {
			continue
		}
		f, ferr := os.Create(out.path)
		if ferr != nil {
			return ferr
		}
		if werr := out.write(f); werr != nil {
			f.Close()
			return werr
		}
		if cerr := f.Close(); cerr != nil {
			return cerr
		}
		fmt.Fprintf(os.Stderr, "demandpipe tune: wrote %s\n", out.path)
	}
	if err != nil {
		return err
	}
	return rep.RecommendErr
}
