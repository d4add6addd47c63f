// Package sink is where closed minutes leave the engine.
//
// The engine hands every closed minute to a Writer as one or more Batches
// followed by CloseMinute. Write may block (back-pressure reaches the engine,
// which stops reading input) and may fail (the run stops with the error).
// Variants: ndjson.go (the contract's line format, to a file or stdout) and
// null.go (discard, for benchmarks).
package sink

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/read"
)

// Writer receives the rows of closed minutes, in minute order.
type Writer interface {
	// Write takes some rows of the minute being closed. The batch is only
	// valid during the call.
	Write(ctx context.Context, b *encode.Batch) error
	// CloseMinute says every row of minute m has been written (a minute
	// with no rows is closed too). Durable sinks commit here.
	CloseMinute(ctx context.Context, m int64) error
	// Close flushes and releases the sink.
	Close() error
}

// State is what the engine asks a durable sink to keep with a minute's rows
// so that a restart resumes exactly (pipeline/RECOVERY.md).
type State struct {
	// Counts is the minute's per-source counts c(h,p,m), encoded by the
	// engine (opaque here); later minutes' windows are rebuilt from them.
	Counts []byte
	// Checkpoint is the engine's resume state after the minute (opaque),
	// or nil to keep the previous one.
	Checkpoint []byte
	// KeepFrom: count records of minutes before it are no longer needed.
	KeepFrom int64
	// Clock is the newest minute closed by event time, the watermark of K
	// riders (pipeline docs/CONTRACT.md "Semantics" 1a). The end of a finite input
	// also closes minutes only the last riders vouch for; they do not move
	// Clock, so a retention clock that follows it (the store) cannot be
	// moved by fewer riders than the engine's confirmation.
	Clock int64
}

// Checkpointer is a Writer that keeps the engine's State with the rows:
// StageState(m, …) is committed by the next CloseMinute(m), atomically with
// minute m's rows (the store: one pebble batch) or strictly after them (in
// an order where a checkpoint never points at state not written yet:
// Cassandra), or not at all. Sinks without it (ndjson, null) cannot
// resume a run.
type Checkpointer interface {
	Writer
	StageState(m int64, st State)
	// LoadState returns the last committed checkpoint (nil if none) and a
	// way to read a minute's count record.
	LoadState() (checkpoint []byte, counts func(m int64) ([]byte, bool, error), err error)
}

// PartCheckpointer keeps State per named part as well: the scale-out
// aggregate role keeps one per key slot of its internal topic, so that a
// slot can move to another process, which restores it (pipeline/SCALEOUT.md).
// StagePartState(part, m, …) is committed by the next CloseMinute(m) like
// StageState (several parts may be staged for one minute). A part's
// checkpoints are keyed by their minute and LoadPartState returns the
// newest: a process that lost a part and still commits an older minute of
// it never hides what the part's new owner committed.
type PartCheckpointer interface {
	Writer
	StagePartState(part string, m int64, st State)
	// LoadPartState returns part's newest checkpoint (nil if none) and a
	// way to read its count records.
	LoadPartState(part string) (checkpoint []byte, counts func(m int64) ([]byte, bool, error), err error)
}

// Readable is a sink whose committed rows can be read while it writes, so
// that a run serves its own API beside it (job): the embedded store reads
// itself; Cassandra reads on the sink's own session.
type Readable interface {
	// Reader reads what the sink committed.
	Reader(ctx context.Context) (read.Reader, error)
	// Embedded says the rows are read in this process (the store: the API
	// is served by default beside it); a remote store's (Cassandra) are
	// served only when asked for (-serve given).
	Embedded() bool
}

// DefinitionsKeeper is a sink that records a run's feature definitions
// where its readers find them (the store's definitions file, Cassandra's
// definitions record; package definitions) and follows which is active.
type DefinitionsKeeper interface {
	// KeepDefinitions records names (the first the run's default; a name
	// kept before keeps its status) and returns the active definition,
	// followed as promotions change it until stop; warn hears a failed
	// re-read (the last good answer is kept).
	KeepDefinitions(ctx context.Context, names []string, warn func(error)) (active func() string, stop func(), err error)
}

// Stats are a sink's plain counters.
type Stats struct {
	Rows    int64
	Minutes int64
	Bytes   int64
}

// Opener builds a Writer from the part of a -sink spec after "kind:".
type Opener func(arg string) (Writer, error)

// Openers maps sink kinds to their constructors. There is no global
// registry: the command builds the set from each package's Config
// (Builtin, store.Opener, cassandra.NewOpener), so what a run can open, and
// with which settings, is explicit and a test opens only what it built.
type Openers map[string]Opener

// Builtin returns the kinds this package provides: ndjson and null.
func Builtin() Openers {
	return Openers{
		"ndjson": func(arg string) (Writer, error) { return OpenNDJSON(arg) },
		"null":   func(string) (Writer, error) { return &Null{}, nil },
	}
}

// Open builds a sink from a spec "kind:arg", e.g. "ndjson:-" or "null:".
func (o Openers) Open(spec string) (Writer, error) {
	kind, arg, ok := strings.Cut(spec, ":")
	if !ok {
		return nil, fmt.Errorf("sink %q: want KIND:ARG, e.g. ndjson:rows.ndjson, ndjson:- or null:", spec)
	}
	open, found := o[kind]
	if !found {
		return nil, fmt.Errorf("sink %q: unknown kind %q (known: %s)", spec, kind, strings.Join(o.Kinds(), ", "))
	}
	return open(arg)
}

// Kinds lists the kinds, sorted.
func (o Openers) Kinds() []string { return slices.Sorted(maps.Keys(o)) }
