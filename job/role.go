package job

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/pipeline"
	"github.com/demandpipe/demandpipe/pulsar/conn"
	"github.com/demandpipe/demandpipe/scaleout"
	"github.com/demandpipe/demandpipe/source"
)

// roleRun is one scale-out role's part: the process's Pulsar client, its
// registry and its start.
type roleRun struct {
	client *conn.Client
	reg    *prometheus.Registry
	start  time.Time
}

// runRole runs the dedup or aggregate role (run) on a connection to
// Role.URL; with Serve explicit it serves /metrics and /healthz.
func (j *Job) runRole(ctx context.Context, run func(context.Context, *roleRun) error) error {
	c := j.cfg
	pc, err := conn.ParseService(c.Role.URL)
	if err != nil {
		return fmt.Errorf("-scaleout.url: %w", err)
	}
	pc.Topic = c.Role.Scaleout.Topic
	client, err := conn.Dial(pc)
	if err != nil {
		return fmt.Errorf("-scaleout.url: %w", err)
	}
	defer client.Close()
	rr := &roleRun{client: client, reg: NewRegistry(), start: time.Now()}
	if c.ServeExplicit && c.Serve != "" {
		srv, err := StartServer(c.Serve, c.Server, nil, rr.reg, rr.reg)
		if err != nil {
			return err
		}
		defer srv.Shutdown(5 * time.Second)
		j.mu.Lock()
		j.srv = srv
		j.mu.Unlock()
		j.log.Info("serving /metrics and /healthz", "url", srv.URL+"metrics")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	j.onStop(func() {
		j.log.Info("stopping: the open minutes stay for a process started on the same ranges")
		cancel()
	})
	return run(ctx, rr)
}

// dedup runs the dedup role: the engine up to the counted events, sent to
// the internal topic by a Publisher.
func (j *Job) dedup(ctx context.Context, rr *roleRun) error {
	c, r, log := j.cfg, j.cfg.Role, j.log
	in, err := OpenSource(c.Source)
	if err != nil {
		return err
	}
	defer in.Close()
	e, err := pipeline.New(c.Pipeline)
	if err != nil {
		return err
	}
	if err := e.RegisterMetrics(rr.reg); err != nil {
		return err
	}
	var pub *scaleout.Publisher
	if err := rr.client.Do(func() (err error) {
		// Not the signal's context: on SIGTERM the engine stops, and
		// what it sent before must still reach the broker (Stop), or
		// the stop fails with "context canceled" sends.
		pub, err = scaleout.NewPublisher(context.Background(), rr.client, r.Scaleout, uint32(r.DedupID), c.Pipeline.Def)
		return err
	}); err != nil {
		return err
	}
	if err := j.prepareDedup(ctx, rr, in, e, pub); err != nil {
		pub.Stop()
		return err
	}
	log.Info("run: dedup role", "source", source.RedactURL(c.Source), "topic", r.Scaleout.Topic, "dedup_id", r.DedupID)
	stopReport := j.report(ctx, rr.start, reportEvery, func() []any {
		s := e.Stats.Snapshot()
		return []any{"lines", s.Lines, "counted", s.Counted, "late", s.Late, "rejected", s.RejectedTotal, "watermark", minuteText(s.Closed, s.Minutes)}
	})
	runErr := e.Run(ctx, in, nil)
	stopReport()
	var closeErr error
	if j.stopped() {
		// Not the end of the input: no EndOfStream, the aggregators wait.
		closeErr = pub.Stop()
		log.Warn("stopped without ending the stream: the aggregate processes wait for this dedup process; start it again with the same flags to resume from its checkpoint")
		if errors.Is(runErr, context.Canceled) {
			runErr = nil
		}
	} else {
		closeErr = pub.Close()
	}
	e.Stats.Snapshot().Write(c.summary(), time.Since(rr.start).Seconds())
	return errors.Join(runErr, closeErr)
}

// prepareDedup registers the publisher's metrics and resumes the engine
// from the dedup process's last checkpoint on the state topic (or, joining,
// from the process it takes riders from): the sequencer restored, the
// input read from the checkpoint's position on, and the aggregators told
// to take back what it sent after it (SCALEOUT.md).
func (j *Job) prepareDedup(ctx context.Context, rr *roleRun, in source.Source, e *pipeline.Engine, pub *scaleout.Publisher) error {
	r := j.cfg.Role
	if err := pub.RegisterMetrics(rr.reg); err != nil {
		return err
	}
	if f, ok := in.(interface{ Identity() string }); ok {
		e.Identity = f.Identity()
	}
	raw, err := j.dedupCheckpoint(ctx, rr)
	if err != nil {
		return err
	}
	if r.Joins != "" {
		if err := j.join(pub, raw != nil); err != nil {
			return err
		}
	}
	if raw != nil {
		if e.Identity == "" {
			return fmt.Errorf("dedup process %d has a checkpoint on %s, but this input (%s) cannot be resumed (no identity: stdin or a pipe); use a file or a pulsar:// source", r.DedupID, r.Scaleout.StateTopic(), source.RedactURL(j.cfg.Source))
		}
		resumed, err := e.ResumeEmit(raw, e.Identity)
		if err != nil {
			return fmt.Errorf("dedup process %d: %w (its checkpoint is on %s)", r.DedupID, err, r.Scaleout.StateTopic())
		}
		pub.Resumed(resumed.Minute)
		j.log.Info("resuming from the checkpoint", "after_minute", encode.MinuteStart(resumed.Minute).Format(time.RFC3339), "input_byte", resumed.Pos)
	}
	e.Emit = pub
	if s, ok := in.(source.Instrumented); ok {
		if err := s.RegisterMetrics(rr.reg); err != nil {
			return err
		}
	}
	if a, ok := in.(source.Acknowledger); ok {
		// Raw messages are acknowledged once a checkpoint past them is
		// on the state topic (Engine.Durable).
		e.Durable = a.Ack
	}
	return nil
}

// dedupCheckpoint is the dedup process's last checkpoint (nil: none), or,
// joining with no checkpoint of its own yet, the one of the process it
// takes riders from: its own checkpoints go under its own id.
func (j *Job) dedupCheckpoint(ctx context.Context, rr *roleRun) ([]byte, error) {
	r := j.cfg.Role
	raw, err := scaleout.LoadCheckpoint(ctx, rr.client, r.Scaleout, uint32(r.DedupID))
	if err == nil && raw == nil && r.ResumeFrom >= 0 {
		if raw, err = scaleout.LoadCheckpoint(ctx, rr.client, r.Scaleout, uint32(r.ResumeFrom)); err == nil && raw == nil {
			err = fmt.Errorf("-scaleout.resume-from=%d: that dedup process has no checkpoint on %s", r.ResumeFrom, r.Scaleout.StateTopic())
		}
	}
	return raw, err
}

// join announces the dedup processes that take riders from this one from
// its checkpoint on (-scaleout.joins).
func (j *Job) join(pub *scaleout.Publisher, hasCheckpoint bool) error {
	r := j.cfg.Role
	var ids []uint32
	for f := range strings.SplitSeq(r.Joins, ",") {
		id, err := strconv.ParseUint(strings.TrimSpace(f), 10, 31)
		if err != nil || id == uint64(r.DedupID) {
			return fmt.Errorf("-scaleout.joins=%q: want other dedup process ids, e.g. 1,2", r.Joins)
		}
		ids = append(ids, uint32(id))
	}
	if !hasCheckpoint {
		return fmt.Errorf("-scaleout.joins: dedup process %d has no checkpoint to hand riders on from (stop it once it has run, then start it again with narrower key-ranges= and -scaleout.joins)", r.DedupID)
	}
	pub.Joined(ids)
	return nil
}

// aggregate runs the aggregate role: the counted events of its ranges'
// slots, closed into rows of its regions' cells.
func (j *Job) aggregate(ctx context.Context, rr *roleRun) error {
	c, r, log := j.cfg, j.cfg.Role, j.log
	ranges, err := scaleout.ParseRanges(r.Ranges)
	if err != nil {
		return err
	}
	sc := c.Store
	sc.Definition = c.Pipeline.Def
	// The aggregate processes of a deployment write one table, each its
	// own slots (Key_Shared gives a slot one owner; overlapping or missing
	// ranges are reported from the members topic): the Cassandra writer
	// lease, one writer per state name, is for single-process runs.
	c.Cassandra.Lease = false
	out, err := c.openSink(c.Sink, rr.reg, sc, c.Pipeline)
	if err != nil {
		return err
	}
	var agg *scaleout.Aggregate
	if err := rr.client.Do(func() (err error) {
		agg, err = scaleout.NewAggregate(rr.client, r.Scaleout, r.Subscription, ranges, r.Dedups, c.Pipeline, out)
		return err
	}); err != nil {
		out.Close()
		return err
	}
	if err := agg.RegisterMetrics(rr.reg); err != nil {
		out.Close()
		return err
	}
	if !agg.Durable() {
		log.Warn("the aggregate role keeps no state with this sink: a lost process means running the deployment again (use -sink=store:DIR or cassandra:…)", "sink", c.Sink)
	}
	log.Info("run: aggregate role", "topic", r.Scaleout.Topic, "ranges", r.Ranges, "dedups", r.Dedups, "sink", c.Sink, "durable", agg.Durable())
	stopReport := j.report(ctx, rr.start, reportEvery, func() []any {
		tr, s := agg.Transport(), agg.Stats().Snapshot()
		return []any{"messages", tr.Messages, "acked", tr.Acked, "rows", s.Rows, "closed", minuteText(s.Closed, s.Minutes)}
	})
	runErr := agg.Run(ctx)
	stopReport()
	if j.stopped() && errors.Is(runErr, context.Canceled) {
		runErr = nil // a requested stop: nothing uncommitted was acknowledged
	}
	closeErr := out.Close()
	w := c.summary()
	agg.Stats().Snapshot().Write(w, time.Since(rr.start).Seconds())
	tr := agg.Transport()
	fmt.Fprintf(w, "scaleout: %d messages, %d acknowledged, %d duplicate messages dropped, %d events dropped as committed already (restored from the sink)\n",
		tr.Messages, tr.Acked, tr.Duplicates, tr.Replayed)
	return errors.Join(runErr, closeErr)
}

// reportEvery is how often a role logs its progress: the roles have no
// progress line, and a process that said nothing for the first minutes
// looked stuck (issue 24 asks for a line every 10 s).
const reportEvery = 10 * time.Second

// report logs fields() as a progress line every interval until ctx is done
// or the returned stop is called.
func (j *Job) report(ctx context.Context, start time.Time, interval time.Duration, fields func() []any) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				j.log.Info("progress", append([]any{"elapsed", time.Since(start).Round(time.Second).String()}, fields()...)...)
			}
		}
	}()
	return func() { cancel(); <-done }
}

// minuteText is a closed minute (unix minutes) as RFC 3339, "none" before
// the first.
func minuteText(m, minutes int64) string {
	if minutes == 0 && m == 0 {
		return "none"
	}
	return encode.MinuteStart(m).Format(time.RFC3339)
}
