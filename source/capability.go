package source

import (
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// Capabilities: what a source can do beyond Source, each a small interface
// that the wiring (cmd/demandpipe) finds by type assertion, never by
// naming a source's type. The engine asks for its own the same way:
// pipeline.Cursored (positions in the source's terms, for checkpoints) and
// the methods Identity (what a checkpoint resumes) and EventClock (a clock
// of the source's own).

// Acknowledger is a source whose upstream keeps the input until the source
// acknowledges it (a broker's durable subscription), and which
// acknowledges only what a durable checkpoint holds: what a run had not
// acknowledged comes again to the next run. A run therefore stops it by
// cancelling, not by Stop: the open minutes stay open and the next run
// resumes them from the sink's checkpoint, where Stop would close them with
// part of their events (pulsar/RECOVERY.md).
type Acknowledger interface {
	// Ack acknowledges the input through stream position pos (a line
	// boundary) once a checkpoint past it is durable: it is the engine's
	// Durable.
	Ack(pos int64)
	// NoAcks says no acknowledgement will come (the sink keeps no
	// checkpoint): the source keeps nothing for one, and the upstream
	// keeps the input for a run that checkpoints.
	NoAcks()
	// AckStats reports the input acknowledged so far and that handed to
	// the engine and not yet acknowledged (messages, for a broker).
	AckStats() (acked, unacked int64)
}

// Instrumented is a source that reports on itself: metrics, warnings on
// the run's logger, and a line for the run's summary.
type Instrumented interface {
	// RegisterMetrics exports the source's metrics on reg (nil: none).
	RegisterMetrics(reg prometheus.Registerer) error
	// SetLogger sets where the source's warnings go.
	SetLogger(log *slog.Logger)
	// Summary is one line for the end of a run.
	Summary() string
}

// DeadLetterer is a source that keeps the lines the engine rejects
// upstream (a dead-letter topic), and acknowledges none of them before
// its copy is stored.
type DeadLetterer interface {
	// RejectsWriter returns the writer for the engine's rejects, which
	// also passes them to tee if tee is not nil; nil when the source keeps
	// no rejects (then the engine's writer stays).
	RejectsWriter(tee io.Writer) io.Writer
}
