package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/demandpipe/demandpipe/pipeline"
	"github.com/demandpipe/demandpipe/sink"
	"github.com/demandpipe/demandpipe/source"
)

const runMore = `Sources:
  file:PATH   NDJSON events; gzip and zstd are read transparently; file:- is stdin
  gen:[k=v,...]  the built-in live generator (endless unless -duration)
` + source.GenSpecHelp + `

Sinks:
  ndjson:PATH  one row per line: {"h3":…,"product_type":…,"minute":…,"features":[…]}; ndjson:- is stdout
  null:        discard (benchmarks)

Each input line is one JSON object with ts (unix ms, integer), rider_id (string),
lat, lng (numbers) and product_type (UUID). Every other field is ignored. Bad
lines are counted by reason (and kept with -rejects). Features are in k-major
order: index = kIndex*len(W) + wIndex.

Stopping: SIGINT/SIGTERM ends the input and closes every minute seen so far,
flushing the sink; a second signal stops at once.`

func runCommand(args []string) error {
	cfg := pipeline.DefaultConfig()
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	src := fs.String("source", "gen:", "where events come from: file:PATH, file:- or gen:[k=v,...]")
	snk := fs.String("sink", "ndjson:-", "where rows go: ndjson:PATH, ndjson:- or null:")
	rejects := fs.String("rejects", "", "if set, write every rejected line here as {\"line\":N,\"reason\":…,\"text\":…}")
	duration := fs.Duration("duration", 0, "stop the input after this long (0: until it ends; a live generator never ends)")
	progress := fs.String("progress", "auto", "progress line on stderr: auto (when stderr is a terminal), always or never")
	engineFlags(fs, &cfg)
	if err := parse(fs, args, "demandpipe run [flags]: run the pipeline from a source to a sink.", runMore); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	// -parallelism is the number of cores used, not only of workers.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(cfg.Parallelism))
	switch *progress {
	case "auto", "always", "never":
	default:
		return fmt.Errorf("-progress=%q: want auto, always or never", *progress)
	}

	in, err := source.Open(*src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := sink.Open(*snk)
	if err != nil {
		return err
	}
	e, err := pipeline.New(cfg)
	if err != nil {
		out.Close()
		return err
	}
	if *rejects != "" {
		f, err := os.Create(*rejects)
		if err != nil {
			out.Close()
			return fmt.Errorf("-rejects: %w", err)
		}
		defer f.Close()
		e.Rejects = f
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// First signal: end the input, close all minutes, flush. Second: stop now.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		n := 0
		for {
			select {
			case <-sigs:
				n++
				if n == 1 {
					fmt.Fprintln(os.Stderr, "demandpipe: stopping: closing the minutes seen so far (signal again to stop at once)")
					in.Stop()
				} else {
					cancel()
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	if *duration > 0 {
		t := time.AfterFunc(*duration, in.Stop)
		defer t.Stop()
	}

	fmt.Fprintf(os.Stderr, "demandpipe: %s -> %s, definition %s, lateness %s, parallelism %d, input %s\n",
		*src, *snk, cfg.Def, cfg.Lateness, cfg.Parallelism, durationOr(*duration))
	term := isTerminal(os.Stderr)
	pctx, pstop := context.WithCancel(ctx)
	if *progress == "always" || (*progress == "auto" && term) {
		go e.Progress(pctx, os.Stderr, in.Position, time.Second, term)
	}
	start := time.Now()
	runErr := e.Run(ctx, in, out)
	pstop()
	closeErr := out.Close()
	e.Stats.Snapshot().Write(os.Stderr, time.Since(start).Seconds())
	if runErr != nil {
		return runErr
	}
	return closeErr
}
