package main

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/pipeline"
	"github.com/demandpipe/demandpipe/pulsar"
	"github.com/demandpipe/demandpipe/sink"
	"github.com/demandpipe/demandpipe/source"
)

// openSource opens a -source spec: the kinds of package source (file, gen)
// and Pulsar's (pulsar, pulsar+ssl). Besides run's help text
// (pulsar.SpecHelp), the one place cmd names a source package other than
// source: the rest of the wiring asks for capabilities (wireSource).
func openSource(spec string) (source.Source, error) {
	openers := source.Builtin()
	maps.Copy(openers, pulsar.Openers())
	return openers.Open(spec)
}

// errStoppedOpen cancels the run of an acknowledging source on
// SIGINT/SIGTERM or -duration: the open minutes stay open
// (source.Acknowledger; pulsar/RECOVERY.md, graceful shutdown).
var errStoppedOpen = errors.New("run stopped without closing the open minutes")

// wireSource connects a source's capabilities to the engine: its metrics
// and logger (source.Instrumented), its acknowledgement of a checkpoint's
// position once durable (source.Acknowledger; out must keep checkpoints,
// else it is told none will come), and its dead letters (the engine's
// rejects, teed to -rejects if given; source.DeadLetterer).
func wireSource(in source.Source, e *pipeline.Engine, out sink.Writer, reg prometheus.Registerer, log *slog.Logger) error {
	if s, ok := in.(source.Instrumented); ok {
		if err := s.RegisterMetrics(reg); err != nil {
			return err
		}
		s.SetLogger(log) // e.g. the unacknowledged-messages warning follows -log.format
	}
	if a, ok := in.(source.Acknowledger); ok {
		if _, ok := out.(sink.Checkpointer); ok {
			e.Durable = a.Ack
		} else {
			a.NoAcks()
			log.Warn("this sink keeps no checkpoint: no message is ever acknowledged, so the subscription's backlog stays for a run into store: or cassandra://")
		}
	}
	if d, ok := in.(source.DeadLetterer); ok {
		if w := d.RejectsWriter(e.Rejects); w != nil {
			e.Rejects = w
		}
	}
	return nil
}

// ackedText says how far a stopped acknowledging source acknowledged.
func ackedText(a source.Acknowledger) string {
	acked, unacked := a.AckStats()
	return fmt.Sprintf("%d messages acknowledged, %d handed and not acknowledged: they come again", acked, unacked)
}
