package main

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/pipeline"
	"github.com/demandpipe/demandpipe/sink"
	"github.com/demandpipe/demandpipe/source"
)

// errPulsarStopped cancels a Pulsar run on SIGINT/SIGTERM or -duration:
// the open minutes stay open (source/RECOVERY.md, graceful shutdown).
var errPulsarStopped = errors.New("pulsar run stopped")

// wirePulsar connects a Pulsar source to the engine: its metrics, its
// acknowledgement (a checkpoint's position, once durable) and its
// dead-letter topic (the engine's rejects, teed to -rejects if given).
func wirePulsar(p *source.Pulsar, e *pipeline.Engine, out sink.Writer, reg prometheus.Registerer, log *slog.Logger) error {
	if err := p.RegisterMetrics(reg); err != nil {
		return err
	}
	p.SetLogger(log) // the unacknowledged-messages warning follows -log.format
	if _, ok := out.(sink.Checkpointer); ok {
		e.Durable = p.Ack
	} else {
		p.NoAcks()
		log.Warn("this sink keeps no checkpoint: no message is ever acknowledged, so the subscription's backlog stays for a run into store: or cassandra://")
	}
	if w := p.RejectsWriter(e.Rejects); w != nil {
		e.Rejects = w
	}
	return nil
}

// pulsarAcked says how far a stopped Pulsar run acknowledged.
func pulsarAcked(p *source.Pulsar) string {
	acked, unacked := p.AckStats()
	return fmt.Sprintf("%d messages acknowledged, %d handed and not acknowledged: they come again", acked, unacked)
}
