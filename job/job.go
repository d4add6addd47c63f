// Package job is one run of the pipeline as `demandpipe run` wires it: it
// opens the source and the sink a Config names, the engine (all of it, or
// one scale-out role's half), the server beside them, resumes from the
// sink's checkpoint, runs to the end of the input or a Stop, and writes
// the summary. cmd/demandpipe binds flags to a Config and signals to Stop;
// tests drive a Job directly.
//
// The wiring asks what the parts can do, not what they are: a source that
// acknowledges (source.Acknowledger) is stopped by cancelling and
// acknowledged only behind durable checkpoints; one that reports
// (source.Instrumented) gets the run's metrics and logger; a sink that
// keeps checkpoints (sink.Checkpointer) is resumed from; a sink that can
// fail on its own (Done, Err) stops the run at once.
package job

import (
	"context"
	"log/slog"
	"os"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/pipeline"
	"github.com/demandpipe/demandpipe/sink"
	"github.com/demandpipe/demandpipe/source"
)

// Job is one run. Run it once.
type Job struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	stopping bool
	stopFn   func() // the graceful stop of what runs now

	// The single process (Role.Name all).
	in        source.Source
	out       sink.Writer
	e         *pipeline.Engine
	reg       *prometheus.Registry
	srv       *Server
	resumed   *pipeline.Resumed
	ackSource source.Acknowledger // the source, if it acknowledges: stopped by cancelling
	rejects   *os.File
	// active names the active definition of a run of several (nil: one),
	// stopActive ends its watch
	active     func() string
	stopActive func()
}

// New checks cfg and returns its job, not started.
func New(cfg Config) (*Job, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Job{cfg: cfg, log: cfg.logger()}, nil
}

// Run runs the job until its input ends or Stop is called, and a hard stop
// when ctx is cancelled. It returns the run's error: a failed part, or a
// run whose every line was rejected.
func (j *Job) Run(ctx context.Context) error {
	switch j.cfg.Role.Name {
	case "dedup":
		return j.runRole(ctx, j.dedup)
	case "aggregate":
		return j.runRole(ctx, j.aggregate)
	}
	err := j.open()
	defer j.close()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer j.watch(ctx, cancel)()
	return j.execute(ctx)
}

// Stop ends the run gracefully: a file or the generator ends and every
// minute seen so far closes; a run of an acknowledging source (Pulsar)
// is cancelled instead, committing nothing further (pulsar/RECOVERY.md);
// a scale-out role stops leaving its open minutes to the process that
// takes its place. It returns at once; Run returns when the stop is done.
func (j *Job) Stop() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.stopping {
		return
	}
	j.stopping = true
	if j.stopFn != nil {
		j.stopFn()
	}
}

// onStop sets what Stop does from now on, running it at once if a stop
// was asked for already.
func (j *Job) onStop(f func()) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.stopFn = f
	if j.stopping {
		f()
	}
}

// stopped says whether Stop was called.
func (j *Job) stopped() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.stopping
}

// Addr is the address the job's server listens on ("" without one), once
// Run has started it.
func (j *Job) Addr() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.srv == nil {
		return ""
	}
	return j.srv.Addr
}
