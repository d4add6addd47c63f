package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/pipeline"
	"github.com/demandpipe/demandpipe/pulsar"
	"github.com/demandpipe/demandpipe/serve"
	"github.com/demandpipe/demandpipe/sink"
	"github.com/demandpipe/demandpipe/sink/cassandra"
	"github.com/demandpipe/demandpipe/source"
	"github.com/demandpipe/demandpipe/store"
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

// runFlags are the knobs of `demandpipe run`: every package's Config bound
// to one flag set (also listed by `demandpipe config`).
type runFlags struct {
	fs              *flag.FlagSet
	cfg             pipeline.Config
	sc              store.Config
	cc              cassandra.Config
	vc              serve.Config
	src, snk        *string
	serveAddr       *string
	rejects         *string
	duration        *time.Duration
	resume          *bool
	shutdownTimeout *time.Duration
	progress        *string
	logFormat       *string
	logLevel        *string
	role            *roleFlags
	defs            *definitionsFlag
}

func newRunFlags() *runFlags {
	r := &runFlags{cfg: pipeline.DefaultConfig(), sc: store.DefaultConfig(), cc: cassandra.DefaultConfig(), vc: serve.DefaultConfig()}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	r.fs = fs
	r.src = fs.String("source", "gen:", "where events come from: file:PATH, file:-, gen:[k=v,...] or pulsar://HOST:6650/TOPIC?subscription=NAME")
	r.snk = fs.String("sink", "store:"+store.DefaultDir, "where rows go: store:DIR, cassandra://HOSTS/KEYSPACE?…, ndjson:PATH, ndjson:- or null:")
	fs.String("config", "", "a YAML file of settings, one key per flag without its dash (sink.writers: 16); flags on the command line override it; `demandpipe config -format=yaml` prints one with every default")
	r.serveAddr = fs.String("serve", "127.0.0.1:8080", "with a store sink, serve the API, the page and /metrics on HOST:PORT while running; with another sink, given explicitly, only /metrics and /healthz (empty: no server)")
	r.sc.RegisterFlags(fs)
	r.cc.Queue.RegisterFlags(fs)
	fs.BoolVar(&r.cc.CreateSchema, "sink.create-schema", false, "with a cassandra:// sink, apply the schema (keyspace and tables, IF NOT EXISTS) at start; the same as ?create=true (`demandpipe schema cassandra` prints it)")
	r.vc.RegisterFlags(fs)
	r.rejects = fs.String("rejects", "", "if set, write every rejected line here as {\"line\":N,\"reason\":…,\"text\":…}")
	r.duration = fs.Duration("duration", 0, "stop the input after this long (0: until it ends; a live generator never ends; a pulsar:// run stops without closing its open minutes, as on SIGINT)")
	r.resume = fs.Bool("resume", true, "with a sink that keeps checkpoints (store:), continue from the last one when the same input file is run again; false starts over")
	r.shutdownTimeout = fs.Duration("shutdown-timeout", time.Minute, "after SIGINT/SIGTERM, exit (status 1) if the graceful stop has not finished within this long")
	r.progress = fs.String("progress", "auto", "progress line on stderr: auto (when stderr is a terminal), always or never")
	r.logFormat = fs.String("log.format", "text", "log lines on stderr as text or json (log/slog); the summary at the end stays text")
	r.logLevel = fs.String("log.level", "info", "debug, info (one line per minute closed), warn or error")
	r.defs = engineFlags(fs, &r.cfg)
	r.role = newRoleFlags(fs)
	return r
}

// afterClose, if set, runs after each minute's close is logged: the kill
// tests' child processes kill themselves there, at a point the input
// guarantees, however fast the machine reads.
var afterClose func()

func runCommand(args []string) error {
	rf := newRunFlags()
	if err := applyConfigFile(rf.fs, args); err != nil {
		return err
	}
	if err := parse(rf.fs, args, "demandpipe run [flags]: run the pipeline from a source to a sink.", runMore); err != nil {
		return err
	}
	log, serveSet, err := rf.check()
	if err != nil {
		return err
	}
	// -parallelism is the number of cores used, not only of workers.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(rf.cfg.Parallelism))
	if ok, err := runRole(rf, log, serveSet); ok {
		return err
	}
	j := &runJob{rf: rf, log: log, serveSet: serveSet}
	err = j.open()
	defer j.close()
	if err != nil {
		return err
	}
	ctx, cancelCause := context.WithCancelCause(context.Background())
	defer cancelCause(nil)
	defer j.control(ctx, cancelCause)()
	return j.execute(ctx)
}

// check validates run's flags and makes its logger; serveSet says whether
// -serve was given explicitly.
func (rf *runFlags) check() (log *slog.Logger, serveSet bool, err error) {
	if log, err = newLogger(*rf.logFormat, *rf.logLevel); err != nil {
		return nil, false, err
	}
	rf.vc.Log = log // the server's guard logs its reloads and refusals the run's way
	switch *rf.progress {
	case "auto", "always", "never":
	default:
		return nil, false, fmt.Errorf("-progress=%q: want auto, always or never", *rf.progress)
	}
	rf.fs.Visit(func(f *flag.Flag) { serveSet = serveSet || f.Name == "serve" })
	if err := rf.defs.apply(rf.fs, &rf.cfg); err != nil {
		return nil, false, err
	}
	for _, d := range rf.cfg.Extra {
		if _, err := extraSinkSpec(*rf.snk, d.Name); err != nil {
			return nil, false, err
		}
	}
	for _, v := range []interface{ Validate() error }{rf.cfg, rf.sc, rf.vc} {
		if err := v.Validate(); err != nil {
			return nil, false, err
		}
	}
	err = checkOutputs(
		[]namedPath{{"-source=" + *rf.src, filePath(*rf.src, "file")}},
		append([]namedPath{{"-sink=" + *rf.snk, filePath(*rf.snk, "ndjson")}, {"-rejects=" + *rf.rejects, *rf.rejects}}, rf.extraOutputs()...),
	)
	return log, serveSet, err
}

// runJob is one `run` of the single process: its source, sink, engine,
// server and what it resumed from.
type runJob struct {
	rf        *runFlags
	log       *slog.Logger
	serveSet  bool
	in        source.Source
	out       sink.Writer
	e         *pipeline.Engine
	reg       *prometheus.Registry
	srv       *runningServer
	resumed   *pipeline.Resumed
	ackSource source.Acknowledger // the source, if it acknowledges: stopped by cancelling
	rejects   *os.File
	// active names the active definition of a run of several (nil: one),
	// stopActive ends its watch
	active     func() string
	stopActive func()
}

// open opens the source, the sink, the engine and the server, and resumes
// from the sink's checkpoint. On an error nothing stays open but the
// source, which the caller closes.
func (j *runJob) open() (err error) {
	rf := j.rf
	if j.in, err = openSource(*rf.src); err != nil {
		return err
	}
	j.reg = newRegistry()
	rf.sc.Definition = rf.cfg.Def
	if c, ok := j.in.(interface{ EventClock() time.Time }); ok {
		// A source with a clock of its own (the generator, sped up): the
		// store's bound on minutes ahead and the API's ages follow it,
		// not the machine's clock.
		rf.sc.Now, rf.vc.Now = c.EventClock, c.EventClock
	}
	sinkReg := prometheus.Registerer(j.reg)
	if len(rf.cfg.Extra) > 0 {
		// Several stores register the same metrics: one set per definition.
		sinkReg = definitionRegisterer(j.reg, rf.cfg.Named().Name)
	}
	if j.out, err = rf.openSink(sinkReg, rf.sc); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			j.out.Close()
		}
	}()
	if j.e, err = pipeline.New(rf.cfg); err != nil {
		return err
	}
	if j.e.ExtraSinks, err = rf.openExtraSinks(j.reg, rf.sc); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			closeAll(j.e.ExtraSinks)
		}
	}()
	if err = j.registerDefinitions(); err != nil {
		return err
	}
	if err = j.e.RegisterMetrics(j.reg); err != nil {
		return err
	}
	in := j.in
	// The source's lag: how much of the input is still to read (a file's
	// size is known; pipes and the generator report -1).
	j.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "demandpipe", Subsystem: "source", Name: "read_bytes",
			Help: "Input bytes read from the source, as stored (compressed files: compressed bytes)."},
			func() float64 { r, _ := in.Position(); return float64(r) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "demandpipe", Subsystem: "source", Name: "size_bytes",
			Help: "The source's size in bytes as stored, -1 when unknown (pipes, the generator): lag = size - read."},
			func() float64 { _, n := in.Position(); return float64(n) }),
	)
	if err = j.serve(); err != nil {
		return err
	}
	if err = j.resume(); err != nil {
		return err
	}
	if *rf.rejects != "" {
		if j.rejects, err = os.Create(*rf.rejects); err != nil {
			return fmt.Errorf("-rejects: %w", err)
		}
		j.e.Rejects = j.rejects
	}
	j.ackSource, _ = j.in.(source.Acknowledger)
	return wireSource(j.in, j.e, j.out, j.reg, j.log)
}

// close releases the source and the rejects file (the sink is closed by
// execute, or by open when it fails).
func (j *runJob) close() {
	if j.stopActive != nil {
		j.stopActive()
	}
	if j.rejects != nil {
		j.rejects.Close()
	}
	if j.in != nil {
		j.in.Close()
	}
}

// serve starts the API and the page on a store (or on Cassandra, when
// -serve is given), or only /metrics and /healthz on another sink.
func (j *runJob) serve() (err error) {
	addr, vc, reg, log := *j.rf.serveAddr, j.rf.vc, j.reg, j.log
	if st, ok := j.out.(*store.Store); ok && addr != "" {
		if j.srv, err = startServer(addr, vc, j.servedStores(st), reg, reg); err != nil {
			return err
		}
		log.Info("serving features, the heat map and /metrics", "url", j.srv.URL)
	} else if cs, ok := j.out.(*cassandra.Sink); ok && addr != "" && j.serveSet {
		// Serve from Cassandra on the sink's own connection.
		sv, err := j.servedCassandra(context.Background(), cs)
		if err == nil {
			j.srv, err = startServer(addr, vc, sv, reg, reg)
		}
		if err != nil {
			return err
		}
		log.Info("serving features from Cassandra, the heat map and /metrics", "url", j.srv.URL)
	} else if j.serveSet && addr != "" {
		// Not a store: serve what can be served, the metrics.
		if j.srv, err = startServer(addr, vc, nil, reg, reg); err != nil {
			return err
		}
		log.Info("serving /metrics and /healthz (the API needs a store sink)", "url", j.srv.URL)
	}
	return nil
}

// resume takes up the sink's checkpoint of this input, if it has one.
func (j *runJob) resume() (err error) {
	if f, ok := j.in.(interface{ Identity() string }); ok {
		j.e.Identity = f.Identity() // empty for stdin and pipes: never resumed
	}
	cp, ok := j.out.(sink.Checkpointer)
	if !ok || !*j.rf.resume || j.e.Identity == "" {
		return nil
	}
	j.resumed, err = j.e.Resume(cp, j.e.Identity)
	if errors.Is(err, pipeline.ErrNotResumable) { // Resume changed nothing
		j.log.Warn("starting from the beginning of the input", "why", err.Error())
		return nil
	}
	if err != nil || j.resumed == nil { // nil: no checkpoint yet
		return err
	}
	r := j.resumed
	j.log.Info("resuming from the checkpoint (-resume=false starts over)", "committed_through", encode.MinuteStart(r.Minute).Format(time.RFC3339), "input_byte", r.Pos, "input_line", r.Line)
	return nil
}

// control stops the run: the first signal ends the input gracefully (a
// file or the generator ends and every minute seen so far closes; a run
// of an acknowledging source (Pulsar) is cancelled instead, committing
// nothing further: pulsar/RECOVERY.md), a second stops at once; -duration
// ends the input; a failed store stops at once. It returns the cleanup.
func (j *runJob) control(ctx context.Context, cancelCause context.CancelCauseFunc) func() {
	log, shutdownTimeout := j.log, *j.rf.shutdownTimeout
	stopInput := j.in.Stop
	if j.ackSource != nil {
		stopInput = func() { cancelCause(errStoppedOpen) }
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		for n := 1; ; n++ {
			select {
			case <-sigs:
			case <-ctx.Done():
				return
			}
			if n > 1 {
				cancelCause(nil)
				// A stop must end the process even when a dependency
				// never answers (a disk that cannot flush, a server gone).
				hardStop(5*time.Second, "the stop")
				return
			}
			if j.ackSource != nil {
				log.Info("stopping without closing the open minutes: the next run resumes from the last checkpoint (signal again to stop at once)", "forced_after", shutdownTimeout.String())
			} else {
				log.Info("stopping: closing the minutes seen so far (signal again to stop at once)", "forced_after", shutdownTimeout.String())
			}
			stopInput()
			hardStop(shutdownTimeout, "the graceful stop")
		}
	}()
	stopTimer := func() bool { return false }
	if d := *j.rf.duration; d > 0 {
		stopTimer = time.AfterFunc(d, stopInput).Stop
	}
	if f, ok := j.out.(interface {
		Done() <-chan struct{}
		Err() error
	}); ok {
		// The store failed (a corrupt table met by a read of the API, a
		// full disk): nothing more can commit, so stop now with its error
		// instead of at the next close, a minute away on a live input.
		go func() {
			select {
			case <-f.Done():
				cancelCause(fmt.Errorf("the store failed: %w", f.Err()))
			case <-ctx.Done():
			}
		}()
	}
	return func() {
		stopTimer()
		signal.Stop(sigs)
	}
}

// execute runs the engine to its end, stops the server, closes the sink
// and writes the summary.
func (j *runJob) execute(ctx context.Context) error {
	rf, e, log := j.rf, j.e, j.log
	log.Info("run", "source", source.RedactURL(*rf.src), "sink", source.RedactURL(*rf.snk), "definition", definitionsText(rf.cfg), "lateness", rf.cfg.Lateness.String(), "parallelism", rf.cfg.Parallelism, "input", durationOr(*rf.duration))
	e.OnBackfill = func(b pipeline.Backfill) {
		log.Info("definition added: its history written from another definition's count records", "definition", b.Name, "from", b.From,
			"minutes", encode.MinuteStart(b.First).Format(time.RFC3339)+" .. "+encode.MinuteStart(b.Closed).Format(time.RFC3339), "took", b.Took.Round(time.Millisecond).String())
	}
	e.OnClose = func(m, rows int64, took time.Duration) {
		log.Info("minute closed", "minute", encode.MinuteStart(m).Format(time.RFC3339), "rows", rows, "took", took.Round(time.Millisecond).String())
		if afterClose != nil {
			afterClose()
		}
	}
	term := isTerminal(os.Stderr)
	pctx, pstop := context.WithCancel(ctx)
	if p := *rf.progress; p == "always" || (p == "auto" && term) {
		width := func() int { return 0 }
		if term {
			width = func() int { return terminalWidth(os.Stderr) }
		}
		go e.Progress(pctx, os.Stderr, j.in.Position, time.Second, width)
	}
	start := time.Now()
	runErr := e.Run(ctx, j.in, j.out)
	pstop()
	if j.srv != nil {
		// Stop serving before the store closes under the readers.
		if err := j.srv.Shutdown(5 * time.Second); err != nil {
			log.Warn("server shutdown", "err", err.Error())
		}
	}
	closeErr := errors.Join(j.out.Close(), closeAll(e.ExtraSinks))
	sum := e.Stats.Snapshot()
	sum.Write(os.Stderr, time.Since(start).Seconds())
	if r := j.resumed; r != nil {
		fmt.Fprintf(os.Stderr, "  resumed after        %s  (input from byte %d, line %d; windows restored in %.2fs)\n",
			encode.MinuteStart(r.Minute).Format(time.RFC3339), r.Pos, r.Line, float64(e.Stats.RestoreNanos.Load())/1e9)
		if sum.Lines == 0 && sum.Blank == 0 && runErr == nil && j.ackSource == nil {
			// Re-running a finished replay: say so rather than look like
			// a run that did nothing.
			fmt.Fprintf(os.Stderr, "  nothing new          an earlier run read this input to its end and committed every minute; -resume=false starts over\n")
		}
	}
	for k, d := range rf.cfg.Extra {
		fmt.Fprintf(os.Stderr, "  definition %-9s %d rows written\n", d.Name, e.ExtraStats[k].Rows.Load())
	}
	if s, ok := j.in.(source.Instrumented); ok {
		fmt.Fprintf(os.Stderr, "  source               %s\n", s.Summary())
	}
	if errors.Is(runErr, errStoppedOpen) {
		fmt.Fprintf(os.Stderr, "  stopped              without closing the open minutes (%s); the next run resumes from the last checkpoint\n", ackedText(j.ackSource))
		return closeErr
	}
	if runErr != nil {
		return runErr
	}
	if closeErr != nil {
		return closeErr
	}
	return noValidEvents(sum)
}

// noValidEvents fails a run whose every line was rejected (CR-only line
// endings, a binary file, the wrong file): exit 0 would say all is well.
func noValidEvents(s pipeline.Summary) error {
	if s.Lines == 0 || s.Accepted()+s.Late > 0 {
		return nil
	}
	return fmt.Errorf("no valid event in %d lines, all rejected (%s): the input should be NDJSON, one object per line with ts, rider_id, lat, lng and product_type; -rejects=FILE keeps every rejected line with its reason",
		s.Lines, s.RejectedList())
}

// hardStop exits the process with status 1 if it is still running after d.
func hardStop(d time.Duration, what string) {
	time.AfterFunc(d, func() {
		fmt.Fprintf(os.Stderr, "demandpipe: %s did not finish within %s: exiting now (status 1)\n", what, d)
		os.Exit(1)
	})
}

// logf prints a sink's log lines on stderr, where the run's own lines go.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "demandpipe: "+format+"\n", args...)
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
