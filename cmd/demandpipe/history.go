package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/demandpipe/demandpipe/history"
	"github.com/demandpipe/demandpipe/job"
	"github.com/demandpipe/demandpipe/pipeline"
	"github.com/demandpipe/demandpipe/source"
)

const historySynopsis = `demandpipe history -source=file:EVENTS -at=QUERIES.csv [-o OUT] [-format=ndjson|csv] [flags]

Point-in-time features (issue 23): for each query ts,lat,lng,product of
QUERIES (CSV; ts in unix ms or RFC 3339), the features a server would have
answered at ts on a live run: those of the last minute closed at ts (a minute
closes once event time is -windows.lateness past its end; a minute that
closed with no rows reads as the one before it). One replay of EVENTS, in
event order; memory holds the queries and one minute's rows, not the events.
Answers come in ts order. The definition: -definitions=FILE with
-definition=NAME (default the file's first), or the shorthand flags.`

// historyCommand implements `demandpipe history`.
func historyCommand(args []string) error {
	fs := flag.NewFlagSet("history", flag.ContinueOnError)
	src := fs.String("source", "", "the events: file:PATH (NDJSON, .gz or .zst) or file:-")
	at := fs.String("at", "", "the queries: a CSV file of ts,lat,lng,product")
	out := fs.String("o", "-", "where answers go (- for stdout)")
	format := fs.String("format", "ndjson", "ndjson or csv")
	name := fs.String("definition", "", "with -definitions: the definition to answer (default: the file's first)")
	cfg := pipeline.DefaultConfig()
	defs := engineFlags(fs, &cfg)
	if err := parse(fs, args, historySynopsis, ""); err != nil {
		return err
	}
	if *src == "" || *at == "" {
		return fmt.Errorf("history: -source and -at are required (demandpipe help history)")
	}
	if *format != "ndjson" && *format != "csv" {
		return fmt.Errorf("history: -format=%q: want ndjson or csv", *format)
	}
	if err := defs.apply(fs, &cfg); err != nil {
		return err
	}
	if err := pickDefinition(&cfg, *name); err != nil {
		return err
	}
	if err := job.CheckOutputs([]job.Path{{Flag: "-source=" + *src, Path: job.FilePath(*src, "file")}, {Flag: "-at=" + *at, Path: *at}}, []job.Path{{Flag: "-o=" + *out, Path: outPath(*out)}}); err != nil {
		return err
	}
	qf, err := os.Open(*at)
	if err != nil {
		return err
	}
	queries, err := history.ReadQueries(qf)
	qf.Close()
	if err != nil {
		return err
	}
	in, err := source.Open(*src)
	if err != nil {
		return err
	}
	defer in.Close()
	var w io.Writer = os.Stdout
	if *out != "-" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	return replayHistory(cfg, in, queries, history.NewWriter(w, *format, cfg.Def))
}

// pickDefinition makes the definition named name (of -definitions) the
// one to answer.
func pickDefinition(cfg *pipeline.Config, name string) error {
	all := append([]string{cfg.Named().Name}, namesOf(cfg)...)
	if name == "" || name == cfg.Named().Name {
		cfg.Extra = nil
		return nil
	}
	for _, d := range cfg.Extra {
		if d.Name == name {
			cfg.Def, cfg.DefName, cfg.Extra = d.Definition, d.Name, nil
			return nil
		}
	}
	return fmt.Errorf("history: -definition=%s: the definitions are %v", name, all)
}

func namesOf(cfg *pipeline.Config) []string {
	var out []string
	for _, d := range cfg.Extra {
		out = append(out, d.Name)
	}
	return out
}

// outPath is the file of -o, "" for stdout.
func outPath(o string) string {
	if o == "-" {
		return ""
	}
	return o
}

// replayHistory runs the engine over in, up to its counted events, into a
// history.Gatherer (the features of the queried cells only), and writes
// the answers with out.
func replayHistory(cfg pipeline.Config, in source.Source, queries []history.Query, out *history.Writer) error {
	e, err := pipeline.New(cfg)
	if err != nil {
		return err
	}
	g, err := history.NewGatherer(cfg.Def, cfg.Lateness, slices.Clip(queries), out.Write)
	if err != nil {
		return err
	}
	e.Emit = g
	start := time.Now()
	runErr := e.Run(context.Background(), in, nil)
	closeErr := g.Close()
	if err := out.Flush(); err != nil && runErr == nil {
		runErr = err
	}
	if runErr != nil {
		return runErr
	}
	if closeErr != nil {
		return closeErr
	}
	s := e.Stats.Snapshot()
	fmt.Fprintf(os.Stderr, "demandpipe history: %d queries answered from %d events (%d minutes closed, definition %s) in %.1fs\n",
		g.Answered(), s.Lines, g.Closed(), cfg.Def, time.Since(start).Seconds())
	return nil
}
