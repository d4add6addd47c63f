package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/pipeline"
	"github.com/demandpipe/demandpipe/pulsar/conn"
	"github.com/demandpipe/demandpipe/scaleout"
	"github.com/demandpipe/demandpipe/sink"
	"github.com/demandpipe/demandpipe/sink/cassandra"
	"github.com/demandpipe/demandpipe/source"
	"github.com/demandpipe/demandpipe/store"
)

// roleFlags choose a run's part in a scale-out over Pulsar
// (pipeline/SCALEOUT.md): the whole pipeline (all), its dedup half, or its
// aggregate half.
type roleFlags struct {
	role    *string
	so      scaleout.Config
	url     *string
	dedupID *int
	dedups  *int
	ranges  *string
	sub     *string
	joins   *string
	from    *int
}

func newRoleFlags(fs *flag.FlagSet) *roleFlags {
	r := &roleFlags{so: scaleout.DefaultConfig()}
	r.role = fs.String("role", "all", "all: the whole pipeline in this process; dedup: read -source, dedup and publish counted events to -scaleout.topic (no sink), with a checkpoint on the topic named -scaleout.topic plus -state before each watermark, from which the same command resumes; aggregate: consume -scaleout.topic and write the rows of the regions this process owns to -sink; with a store or cassandra sink it commits each slot's state with the rows and a process started on the same ranges (after a crash, or in place of a lost one) resumes them (pipeline/SCALEOUT.md)")
	r.so.RegisterFlags(fs)
	r.url = fs.String("scaleout.url", "pulsar://127.0.0.1:6650", "Pulsar service URL of the internal topic and the state topic, pulsar://HOST:PORT or pulsar+ssl://HOST:PORT, with the connection's settings as a query: token-file=PATH (or env DEMANDPIPE_PULSAR_TOKEN), tls-ca-file=PATH, tls-allow-insecure=true (tests only), connect-timeout=D, operation-timeout=D")
	r.dedupID = fs.Int("scaleout.dedup-id", 0, "dedup role: this process's number, 0..scaleout.dedups-1")
	r.dedups = fs.Int("scaleout.dedups", 1, "aggregate role: how many dedup processes publish from the start (ids 0..N-1; a minute closes when all of them have passed it); processes that join later are announced on the topic (-scaleout.joins)")
	r.ranges = fs.String("scaleout.ranges", "0-65535", "aggregate role: the Key_Shared sticky hash ranges this process owns, a-b[,c-d] within 0..65535; the processes' ranges must not overlap and together cover it")
	r.sub = fs.String("scaleout.subscription", "demandpipe-aggregate", "aggregate role: the subscription on the internal topic (the same for every aggregate process)")
	r.joins = fs.String("scaleout.joins", "", "dedup role, a join: the ids of the dedup processes that take some of this process's riders from its checkpoint on (it resumes with narrower -source key-ranges=; they with -scaleout.resume-from=this id); aggregators wait for them from then on")
	r.from = fs.Int("scaleout.resume-from", -1, "dedup role, a join: with no checkpoint of its own yet, resume from this dedup process's checkpoint (its riders in this process's -source key-ranges=)")
	return r
}

// runRole runs the dedup or aggregate role; ok is false for -role=all.
// With -serve given explicitly it serves /metrics and /healthz.
func runRole(rf *runFlags, log *slog.Logger, serveSet bool) (ok bool, err error) {
	r := rf.role
	switch *r.role {
	case "all":
		return false, nil
	case "dedup", "aggregate":
	default:
		return true, fmt.Errorf("-role=%q: want all, dedup or aggregate", *r.role)
	}
	if len(rf.cfg.Extra) > 0 {
		return true, fmt.Errorf("-role=%s with -definitions: the scale-out roles compute one definition so far (issue 23)", *r.role)
	}
	if err := r.so.Validate(); err != nil {
		return true, err
	}
	pc, err := conn.ParseService(*r.url)
	if err != nil {
		return true, fmt.Errorf("-scaleout.url: %w", err)
	}
	pc.Topic = r.so.Topic
	client, err := conn.Dial(pc)
	if err != nil {
		return true, fmt.Errorf("-scaleout.url: %w", err)
	}
	defer client.Close()
	j := &roleJob{rf: rf, r: r, log: log, client: client, reg: newRegistry(), start: time.Now()}
	if serveSet && *rf.serveAddr != "" {
		srv, err := startServer(*rf.serveAddr, rf.vc, nil, j.reg, j.reg)
		if err != nil {
			return true, err
		}
		defer srv.Shutdown(5 * time.Second)
		log.Info("serving /metrics and /healthz", "url", srv.URL+"metrics")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		select {
		case <-sigs:
			j.stopped.Store(true)
			log.Info("stopping: the open minutes stay for a process started on the same ranges")
			cancel()
		case <-ctx.Done():
		}
	}()
	if *r.role == "dedup" {
		return true, j.dedup(ctx)
	}
	return true, j.aggregate(ctx)
}

// roleJob is one process of a scale-out deployment (pipeline/SCALEOUT.md).
type roleJob struct {
	rf      *runFlags
	r       *roleFlags
	log     *slog.Logger
	client  *conn.Client
	reg     *prometheus.Registry
	start   time.Time
	stopped atomic.Bool // a signal asked it to stop
}

// dedup runs the dedup role: the engine up to the counted events, sent to
// the internal topic by a Publisher.
func (j *roleJob) dedup(ctx context.Context) error {
	rf, r, log := j.rf, j.r, j.log
	if *r.dedupID < 0 {
		return fmt.Errorf("-scaleout.dedup-id=%d: must be >= 0", *r.dedupID)
	}
	in, err := openSource(*rf.src)
	if err != nil {
		return err
	}
	defer in.Close()
	e, err := pipeline.New(rf.cfg)
	if err != nil {
		return err
	}
	if err := e.RegisterMetrics(j.reg); err != nil {
		return err
	}
	var pub *scaleout.Publisher
	if err := j.client.Do(func() (err error) {
		// Not the signal's context: on SIGTERM the engine stops, and
		// what it sent before must still reach the broker (Stop), or
		// the stop fails with "context canceled" sends.
		pub, err = scaleout.NewPublisher(context.Background(), j.client, r.so, uint32(*r.dedupID), rf.cfg.Def)
		return err
	}); err != nil {
		return err
	}
	if err := j.prepareDedup(ctx, in, e, pub); err != nil {
		pub.Stop()
		return err
	}
	log.Info("run: dedup role", "source", source.RedactURL(*rf.src), "topic", r.so.Topic, "dedup_id", *r.dedupID)
	stopReport := j.report(ctx, reportEvery, func() []any {
		s := e.Stats.Snapshot()
		return []any{"lines", s.Lines, "counted", s.Counted, "late", s.Late, "rejected", s.RejectedTotal, "watermark", minuteText(s.Closed, s.Minutes)}
	})
	runErr := e.Run(ctx, in, nil)
	stopReport()
	var closeErr error
	if j.stopped.Load() {
		// Not the end of the input: no EndOfStream, the aggregators wait.
		closeErr = pub.Stop()
		log.Warn("stopped without ending the stream: the aggregate processes wait for this dedup process; start it again with the same flags to resume from its checkpoint")
		if errors.Is(runErr, context.Canceled) {
			runErr = nil
		}
	} else {
		closeErr = pub.Close()
	}
	e.Stats.Snapshot().Write(os.Stderr, time.Since(j.start).Seconds())
	return errors.Join(runErr, closeErr)
}

// prepareDedup registers the publisher's metrics and resumes the engine
// from the dedup process's last checkpoint on the state topic (or, joining,
// from the process it takes riders from): the sequencer restored, the
// input read from the checkpoint's position on, and the aggregators told
// to take back what it sent after it (SCALEOUT.md).
func (j *roleJob) prepareDedup(ctx context.Context, in source.Source, e *pipeline.Engine, pub *scaleout.Publisher) error {
	rf, r := j.rf, j.r
	if err := pub.Register(j.reg); err != nil {
		return err
	}
	if f, ok := in.(interface{ Identity() string }); ok {
		e.Identity = f.Identity()
	}
	raw, err := scaleout.LoadCheckpoint(ctx, j.client, r.so, uint32(*r.dedupID))
	if err == nil && raw == nil && *r.from >= 0 {
		// A join: start where the process this one takes riders from
		// stopped; its own checkpoints go under its own id.
		if raw, err = scaleout.LoadCheckpoint(ctx, j.client, r.so, uint32(*r.from)); err == nil && raw == nil {
			err = fmt.Errorf("-scaleout.resume-from=%d: that dedup process has no checkpoint on %s", *r.from, r.so.StateTopic())
		}
	}
	if err != nil {
		return err
	}
	if *r.joins != "" {
		var ids []uint32
		for f := range strings.SplitSeq(*r.joins, ",") {
			id, err := strconv.ParseUint(strings.TrimSpace(f), 10, 31)
			if err != nil || id == uint64(*r.dedupID) {
				return fmt.Errorf("-scaleout.joins=%q: want other dedup process ids, e.g. 1,2", *r.joins)
			}
			ids = append(ids, uint32(id))
		}
		if raw == nil {
			return fmt.Errorf("-scaleout.joins: dedup process %d has no checkpoint to hand riders on from (stop it once it has run, then start it again with narrower key-ranges= and -scaleout.joins)", *r.dedupID)
		}
		pub.Joined(ids)
	}
	if raw != nil {
		if e.Identity == "" {
			return fmt.Errorf("dedup process %d has a checkpoint on %s, but this input (%s) cannot be resumed (no identity: stdin or a pipe); use a file or a pulsar:// source", *r.dedupID, r.so.StateTopic(), source.RedactURL(*rf.src))
		}
		resumed, err := e.ResumeEmit(raw, e.Identity)
		if err != nil {
			return fmt.Errorf("dedup process %d: %w (its checkpoint is on %s)", *r.dedupID, err, r.so.StateTopic())
		}
		pub.Resumed(resumed.Minute)
		j.log.Info("resuming from the checkpoint", "after_minute", encode.MinuteStart(resumed.Minute).Format(time.RFC3339), "input_byte", resumed.Pos)
	}
	e.Emit = pub
	if s, ok := in.(source.Instrumented); ok {
		if err := s.RegisterMetrics(j.reg); err != nil {
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

// aggregate runs the aggregate role: the counted events of its ranges'
// slots, closed into rows of its regions' cells.
func (j *roleJob) aggregate(ctx context.Context) error {
	rf, r, log := j.rf, j.r, j.log
	ranges, err := scaleout.ParseRanges(*r.ranges)
	if err != nil {
		return err
	}
	if *r.dedups < 1 {
		return fmt.Errorf("-scaleout.dedups=%d: must be >= 1", *r.dedups)
	}
	sc := rf.sc
	sc.Definition = rf.cfg.Def
	out, err := rf.openSink(j.reg, sc)
	if err != nil {
		return err
	}
	var agg *scaleout.Aggregate
	if err := j.client.Do(func() (err error) {
		agg, err = scaleout.NewAggregate(j.client, r.so, *r.sub, ranges, *r.dedups, rf.cfg, out)
		return err
	}); err != nil {
		out.Close()
		return err
	}
	if err := agg.Register(j.reg); err != nil {
		out.Close()
		return err
	}
	if !agg.Durable() {
		log.Warn("the aggregate role keeps no state with this sink: a lost process means running the deployment again (use -sink=store:DIR or cassandra:…)", "sink", *rf.snk)
	}
	log.Info("run: aggregate role", "topic", r.so.Topic, "ranges", *r.ranges, "dedups", *r.dedups, "sink", *rf.snk, "durable", agg.Durable())
	stopReport := j.report(ctx, reportEvery, func() []any {
		tr, s := agg.Transport(), agg.Stats().Snapshot()
		return []any{"messages", tr.Messages, "acked", tr.Acked, "rows", s.Rows, "closed", minuteText(s.Closed, s.Minutes)}
	})
	runErr := agg.Run(ctx)
	stopReport()
	if j.stopped.Load() && errors.Is(runErr, context.Canceled) {
		runErr = nil // a requested stop: nothing uncommitted was acknowledged
	}
	closeErr := out.Close()
	agg.Stats().Snapshot().Write(os.Stderr, time.Since(j.start).Seconds())
	tr := agg.Transport()
	fmt.Fprintf(os.Stderr, "scaleout: %d messages, %d acknowledged, %d duplicate messages dropped, %d events dropped as committed already (restored from the sink)\n",
		tr.Messages, tr.Acked, tr.Duplicates, tr.Replayed)
	return errors.Join(runErr, closeErr)
}

// openSink opens -sink with the run's store (sc) and Cassandra settings.
func (rf *runFlags) openSink(reg prometheus.Registerer, sc store.Config) (sink.Writer, error) {
	openers := sink.Builtin()
	openers["store"] = store.Opener(sc, reg)
	cc := rf.cc
	cc.Definition = rf.cfg.Def // stored with the table, checked on reopen and by readers
	openers["cassandra"] = cassandra.NewOpener(cc, cassandra.Options{Registerer: reg, Logf: logf})
	return openers.Open(*rf.snk)
}

// reportEvery is how often a role logs its progress: the roles have no
// progress line, and a process that said nothing for the first minutes
// looked stuck (issue 24 asks for a line every 10 s).
const reportEvery = 10 * time.Second

// report logs fields() as a progress line every interval until ctx is done
// or the returned stop is called.
func (j *roleJob) report(ctx context.Context, interval time.Duration, fields func() []any) (stop func()) {
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
				j.log.Info("progress", append([]any{"elapsed", time.Since(j.start).Round(time.Second).String()}, fields()...)...)
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
