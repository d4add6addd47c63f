package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/demandpipe/demandpipe/job"
	"github.com/demandpipe/demandpipe/pulsar"
	"github.com/demandpipe/demandpipe/source"
)

const runMore = `Sources:
  file:PATH   NDJSON events; gzip and zstd are read transparently; file:- is stdin
  gen:[k=v,...]  the built-in live generator (endless unless -duration)
  pulsar://HOST:6650/TOPIC?subscription=NAME  Apache Pulsar, one event a message (settings
               below; ` + "`demandpipe publish`" + ` puts a file of events on a topic; docs/PULSAR.md)
` + source.GenSpecHelp + `
` + pulsar.SpecHelp + `

Sinks:
  store:DIR    the embedded feature store (pebble), served by -serve and by demandpipe serve
  cassandra://HOST[,HOST...][:PORT]/KEYSPACE?table=features&consistency=LOCAL_QUORUM&dc=DC&compression=snappy|lz4|none&create=true
               Apache Cassandra: batched, compressed, idempotent writes through a bounded
               queue (-sink.writers, -sink.batch-rows, ...); credentials from
               DEMANDPIPE_CASSANDRA_USERNAME/_PASSWORD or password_file=; TLS with ca=, cert=, key=;
               ` + "`demandpipe schema cassandra`" + ` prints the CQL (sink/CASSANDRA.md)
  ndjson:PATH  one row per line: {"h3":…,"product_type":…,"minute":…,"features":[…]}; ndjson:- is stdout
  null:        discard (benchmarks)

With a store sink, -serve=ADDR serves the HTTP API, the heat map page at / and
/metrics while the engine writes (` + "`demandpipe help serve`" + ` lists the API).

Each input line is one JSON object with ts (unix ms, integer), rider_id (string),
lat, lng (numbers) and product_type (UUID). Every other field is ignored. Bad
lines are counted by reason (and kept with -rejects). Features are in k-major
order: index = kIndex*len(W) + wIndex.

Stopping: SIGINT/SIGTERM ends the input and closes every minute seen so far,
flushing the sink; a second signal stops at once. A pulsar:// run instead stops
without closing the open minutes (they would be stored with part of their events,
and their messages acknowledged): it exits 0, and the next run resumes from the last
checkpoint; -duration stops it the same way. With until=end the end of the topic
closes every minute, as a file's end does.`

// runFlags are the knobs of `demandpipe run`: the job's Config (every
// package's) bound to one flag set (also listed by `demandpipe config`),
// and the process's own: how it logs, shows progress and stops.
type runFlags struct {
	fs              *flag.FlagSet
	cfg             job.Config
	shutdownTimeout *time.Duration
	progress        *string
	logFormat       *string
	logLevel        *string
	defs            *definitionsFlag
}

func newRunFlags() *runFlags {
	r := &runFlags{cfg: job.DefaultConfig()}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	r.fs = fs
	fs.String("config", "", "a YAML file of settings, one key per flag without its dash (sink.writers: 16); flags on the command line override it; `demandpipe config -format=yaml` prints one with every default")
	r.cfg.RegisterFlags(fs)
	r.shutdownTimeout = fs.Duration("shutdown-timeout", time.Minute, "after SIGINT/SIGTERM, exit (status 1) if the graceful stop has not finished within this long")
	r.progress = fs.String("progress", "auto", "progress line on stderr: auto (when stderr is a terminal), always or never")
	r.logFormat = fs.String("log.format", "text", "log lines on stderr as text or json (log/slog); the summary at the end stays text")
	r.logLevel = fs.String("log.level", "info", "debug, info (one line per minute closed), warn or error")
	r.defs = engineFlags(fs, &r.cfg.Pipeline)
	return r
}

// afterClose, if set, runs after each minute's close is logged: the kill
// tests' child processes kill themselves there (job.Config.AfterClose).
var afterClose func()

func runCommand(args []string) error {
	rf := newRunFlags()
	if err := applyConfigFile(rf.fs, args); err != nil {
		return err
	}
	if err := parse(rf.fs, args, "demandpipe run [flags]: run the pipeline from a source to a sink.", runMore); err != nil {
		return err
	}
	if err := rf.check(); err != nil {
		return err
	}
	j, err := job.New(rf.cfg)
	if err != nil {
		return err
	}
	// -parallelism is the number of cores used, not only of workers.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(rf.cfg.Pipeline.Parallelism))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer stopOnSignals(j, cancel, rf.cfg.Log, *rf.shutdownTimeout)()
	return j.Run(ctx)
}

// check completes the job's Config from the process's flags: the logger,
// whether -serve was given, the definitions file, the progress line.
func (rf *runFlags) check() (err error) {
	c := &rf.cfg
	if c.Log, err = newLogger(*rf.logFormat, *rf.logLevel); err != nil {
		return err
	}
	c.Server.Log = c.Log // the server's guard logs its reloads and refusals the run's way
	c.Summary = os.Stderr
	term := isTerminal(os.Stderr)
	switch p := *rf.progress; p {
	case "auto", "always", "never":
		if p == "always" || (p == "auto" && term) {
			c.Progress = os.Stderr
		}
		if term {
			c.ProgressWidth = func() int { return terminalWidth(os.Stderr) }
		}
	default:
		return fmt.Errorf("-progress=%q: want auto, always or never", p)
	}
	c.ServeExplicit = isSet(rf.fs, "serve")
	c.AfterClose = afterClose
	return rf.defs.apply(rf.fs, &c.Pipeline)
}

// stopOnSignals stops j on SIGINT/SIGTERM (job.Job.Stop: a file or the
// generator ends and every minute seen so far closes; a Pulsar run is
// cancelled, committing nothing further), and at once on a second signal
// (cancel). A stop must end the process even when a dependency never
// answers (a disk that cannot flush, a server gone): after timeout (5 s
// for the second) it exits with status 1. It returns the cleanup.
func stopOnSignals(j *job.Job, cancel func(), log *slog.Logger, timeout time.Duration) func() {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		for n := 1; ; n++ {
			select {
			case <-sigs:
			case <-done:
				return
			}
			if n > 1 {
				cancel()
				hardStop(5*time.Second, "the stop")
				return
			}
			log.Info("signal again to stop at once", "forced_after", timeout.String())
			j.Stop()
			hardStop(timeout, "the graceful stop")
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(done)
	}
}

// hardStop exits the process with status 1 if it is still running after d.
func hardStop(d time.Duration, what string) {
	time.AfterFunc(d, func() {
		fmt.Fprintf(os.Stderr, "demandpipe: %s did not finish within %s: exiting now (status 1)\n", what, d)
		os.Exit(1)
	})
}

// newLogger is the run's logger on stderr: -log.format text or json,
// -log.level debug, info, warn or error.
func newLogger(format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log.level=%q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("-log.format=%q: want text or json", format)
}

// terminalWidth is f's terminal's columns (0 when unknown).
func terminalWidth(f *os.File) int {
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 80
	}
	return int(ws.Col)
}
