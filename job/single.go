package job

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/pipeline"
	"github.com/demandpipe/demandpipe/serve"
	"github.com/demandpipe/demandpipe/sink"
	"github.com/demandpipe/demandpipe/source"
)

// open opens the source, the sink, the engine and the server, and resumes
// from the sink's checkpoint. On an error nothing stays open but the
// source, which close closes.
func (j *Job) open() (err error) {
	c := j.cfg
	if j.in, err = OpenSource(c.Source); err != nil {
		return err
	}
	j.reg = NewRegistry()
	sc, vc := c.Store, c.Server
	sc.Definition = c.Pipeline.Def
	if clk, ok := j.in.(interface{ EventClock() time.Time }); ok {
		// A source with a clock of its own (the generator, sped up): the
		// store's bound on minutes ahead and the API's ages follow it,
		// not the machine's clock.
		sc.Now, vc.Now = clk.EventClock, clk.EventClock
	}
	sinkReg := prometheus.Registerer(j.reg)
	if len(c.Pipeline.Extra) > 0 {
		// Several stores register the same metrics: one set per definition.
		sinkReg = DefinitionRegisterer(j.reg, c.Pipeline.Named().Name)
	}
	if j.out, err = c.openSink(c.Sink, sinkReg, sc, c.Pipeline); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			j.out.Close()
		}
	}()
	if j.e, err = pipeline.New(c.Pipeline); err != nil {
		return err
	}
	if j.e.ExtraSinks, err = c.openExtraSinks(j.reg, sc); err != nil {
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
	// The source's lag: how much of the input is still to read.
	if err = source.RegisterPositionMetrics(j.reg, j.in); err != nil {
		return err
	}
	// Before the first close the page says when it is due: the server
	// is in the engine's process, so it knows event time and lateness.
	vc.Progress = &serve.Progress{EventTime: j.e.Stats.EventTime.Load, FirstMinute: j.e.Stats.FirstMinute.Load,
		Lateness: c.Pipeline.Lateness, Riders: c.Pipeline.Future.ConfirmRiders}
	if err = j.serve(vc); err != nil {
		return err
	}
	if err = j.resume(); err != nil {
		return err
	}
	if c.Rejects != "" {
		if j.rejects, err = os.Create(c.Rejects); err != nil {
			return fmt.Errorf("-rejects: %w", err)
		}
		j.e.Rejects = j.rejects
	}
	j.ackSource, _ = j.in.(source.Acknowledger)
	return wireSource(j.in, j.e, j.out, j.reg, j.log)
}

// close releases the source and the rejects file (the sink is closed by
// execute, or by open when it fails).
func (j *Job) close() {
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

// serve starts the API and the page beside a sink the run can read
// (sink.Readable): by default beside the embedded store, beside a remote
// one (Cassandra) when Serve is explicit; on another sink, when Serve is
// explicit, only /metrics and /healthz.
func (j *Job) serve(vc serve.Config) (err error) {
	addr, reg, log := j.cfg.Serve, j.reg, j.log
	r, readable := j.out.(sink.Readable)
	if addr == "" || !j.cfg.ServeExplicit && !(readable && r.Embedded()) {
		return nil
	}
	var sv *Served
	what := "serving /metrics and /healthz (the API needs a sink it can read: store: or cassandra://)"
	if readable {
		if sv, err = j.served(context.Background(), r); err != nil {
			return err
		}
		what = "serving features, the heat map and /metrics"
	}
	srv, err := StartServer(addr, vc, sv, reg, reg)
	if err != nil {
		return err
	}
	j.mu.Lock()
	j.srv = srv
	j.mu.Unlock()
	log.Info(what, "url", srv.URL)
	return nil
}

// resume takes up the sink's checkpoint of this input, if it has one.
func (j *Job) resume() (err error) {
	if f, ok := j.in.(interface{ Identity() string }); ok {
		j.e.Identity = f.Identity() // empty for stdin and pipes: never resumed
	}
	cp, ok := j.out.(sink.Checkpointer)
	if !ok || !j.cfg.Resume || j.e.Identity == "" {
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

// watch arms the run's stops: Stop (and Duration) end the input, or cancel
// the run of an acknowledging source with ErrStoppedOpen; a failed store
// cancels it at once. It returns the cleanup.
func (j *Job) watch(ctx context.Context, cancel context.CancelCauseFunc) func() {
	stopInput := j.in.Stop
	if j.ackSource != nil {
		stopInput = func() { cancel(ErrStoppedOpen) }
	}
	j.onStop(func() {
		if j.ackSource != nil {
			j.log.Info("stopping without closing the open minutes: the next run resumes from the last checkpoint")
		} else {
			j.log.Info("stopping: closing the minutes seen so far")
		}
		stopInput()
	})
	stopTimer := func() bool { return false }
	if d := j.cfg.Duration; d > 0 {
		stopTimer = time.AfterFunc(d, stopInput).Stop
	}
	if f, ok := j.out.(interface {
		Done() <-chan struct{}
		Err() error
	}); ok {
		// The sink failed (a corrupt store table met by a read of the
		// API, a full disk, Cassandra's writer lease lost): nothing more
		// can commit, so stop now with its error instead of at the next
		// close, a minute away on a live input.
		go func() {
			select {
			case <-f.Done():
				cancel(fmt.Errorf("the sink failed: %w", f.Err()))
			case <-ctx.Done():
			}
		}()
	}
	return func() { stopTimer() }
}

// execute runs the engine to its end, stops the server, closes the sink
// and writes the summary.
func (j *Job) execute(ctx context.Context) error {
	c, e, log := j.cfg, j.e, j.log
	log.Info("run", "source", source.RedactURL(c.Source), "sink", source.RedactURL(c.Sink), "definition", DefinitionsText(c.Pipeline), "lateness", c.Pipeline.Lateness.String(), "parallelism", c.Pipeline.Parallelism, "input", durationOr(c.Duration))
	e.OnBackfill = func(b pipeline.Backfill) {
		log.Info("definition added: its history written from another definition's count records", "definition", b.Name, "from", b.From,
			"minutes", encode.MinuteStart(b.First).Format(time.RFC3339)+" .. "+encode.MinuteStart(b.Closed).Format(time.RFC3339), "took", b.Took.Round(time.Millisecond).String())
	}
	e.OnClose = func(m, rows int64, took time.Duration) {
		log.Info("minute closed", "minute", encode.MinuteStart(m).Format(time.RFC3339), "rows", rows, "took", took.Round(time.Millisecond).String())
		if c.AfterClose != nil {
			c.AfterClose()
		}
	}
	pctx, pstop := context.WithCancel(ctx)
	if c.Progress != nil {
		width := c.ProgressWidth
		if width == nil {
			width = func() int { return 0 }
		}
		go e.Progress(pctx, c.Progress, j.in.Position, time.Second, width)
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
	j.summary(c.summary(), time.Since(start), runErr)
	if errors.Is(runErr, ErrStoppedOpen) {
		return closeErr
	}
	if runErr != nil {
		return runErr
	}
	if closeErr != nil {
		return closeErr
	}
	return noValidEvents(e.Stats.Snapshot())
}

// summary writes the run's summary: the engine's, what it resumed from,
// each further definition's rows, the source's own.
func (j *Job) summary(w io.Writer, took time.Duration, runErr error) {
	e := j.e
	sum := e.Stats.Snapshot()
	sum.Write(w, took.Seconds())
	if r := j.resumed; r != nil {
		fmt.Fprintf(w, "  resumed after        %s  (input from byte %d, line %d; windows restored in %.2fs)\n",
			encode.MinuteStart(r.Minute).Format(time.RFC3339), r.Pos, r.Line, float64(e.Stats.RestoreNanos.Load())/1e9)
		if sum.Lines == 0 && sum.Blank == 0 && runErr == nil && j.ackSource == nil {
			// Re-running a finished replay: say so rather than look like
			// a run that did nothing.
			fmt.Fprintf(w, "  nothing new          an earlier run read this input to its end and committed every minute; -resume=false starts over\n")
		}
	}
	for k, d := range j.cfg.Pipeline.Extra {
		fmt.Fprintf(w, "  definition %-9s %d rows written\n", d.Name, e.ExtraStats[k].Rows.Load())
	}
	if s, ok := j.in.(source.Instrumented); ok {
		fmt.Fprintf(w, "  source               %s\n", s.Summary())
	}
	if errors.Is(runErr, ErrStoppedOpen) {
		fmt.Fprintf(w, "  stopped              without closing the open minutes (%s); the next run resumes from the last checkpoint\n", ackedText(j.ackSource))
	}
}

// summary is where the summary goes.
func (c Config) summary() io.Writer {
	if c.Summary == nil {
		return io.Discard
	}
	return c.Summary
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

// durationOr is d as text, or "until it ends" for 0.
func durationOr(d time.Duration) string {
	if d == 0 {
		return "until it ends"
	}
	return d.String()
}
