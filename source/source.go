// Package source is where raw events enter: NDJSON files (plain, gzip or
// zstd, detected from the first bytes), stdin, the built-in live
// generator, and Apache Pulsar topics (one message per line; Pulsar). A
// Source is an io.Reader of NDJSON bytes; the engine cuts it into chunks of
// whole lines.
//
// The Pulsar source acknowledges messages only once a checkpoint past them
// is durable and resumes after a restart from the checkpoint's message ids
// (RECOVERY.md). Its metrics (Pulsar.RegisterMetrics), namespace
// demandpipe, subsystem source: pulsar_messages_total,
// pulsar_received_bytes_total, pulsar_redeliveries_total,
// pulsar_acked_messages_total, pulsar_ack_errors_total, pulsar_reconnects_total,
// pulsar_dead_lettered_total, pulsar_unacked_messages,
// pulsar_partition_unacked_messages, pulsar_max_unacked_messages and
// pulsar_consumer_lag_seconds. On a shared or key_shared subscription it
// fails the run, saying so, before the broker's limit on unacknowledged
// messages would stall it (PulsarConfig.MaxUnacked).
package source

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// Source is an input of NDJSON events.
type Source interface {
	io.Reader
	// Live reports whether the input arrives over time (the engine then
	// hands over data as soon as it is read, instead of filling chunks).
	Live() bool
	// Position reports how much of the input has been consumed and its
	// total size, both in stored (possibly compressed) bytes; total is -1
	// when unknown. For progress.
	Position() (read, total int64)
	// Stop ends the input early: Read soon returns io.EOF, so the engine
	// closes every minute it has data for. Used for graceful shutdown.
	Stop()
	Close() error
}

// Opener builds a Source from the part of a -source spec after "kind:".
type Opener func(arg string) (Source, error)

// Openers maps source kinds to their constructors, as sink.Openers does
// for sinks: a command (or a test) opens only the kinds it holds.
type Openers map[string]Opener

// Builtin returns the kinds this package provides: file, gen, pulsar and
// pulsar+ssl.
func Builtin() Openers {
	return Openers{
		"file":       opener(OpenFile),
		"gen":        opener(OpenGen),
		"pulsar":     opener(func(arg string) (*Pulsar, error) { return OpenPulsar("pulsar:" + arg) }),
		"pulsar+ssl": opener(func(arg string) (*Pulsar, error) { return OpenPulsar("pulsar+ssl:" + arg) }),
	}
}

// opener adapts a constructor of a concrete source, so that a failed open
// returns a nil Source, not a Source holding a nil pointer.
func opener[S Source](open func(string) (S, error)) Opener {
	return func(arg string) (Source, error) {
		s, err := open(arg)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
}

// Open builds a source from a spec "kind:arg": "file:PATH" ("file:-" is
// stdin), "gen:" with optional comma-separated settings, e.g.
// "gen:rate=200000,riders=500000,seed=7,speed=10" (see GenSpecHelp), or
// "pulsar://HOST:PORT/TOPIC?subscription=NAME" (see PulsarSpecHelp).
func (o Openers) Open(spec string) (Source, error) {
	kind, arg, ok := strings.Cut(spec, ":")
	if !ok {
		return nil, fmt.Errorf("source %q: want file:PATH, file:-, gen:[k=v,...] or pulsar://HOST:PORT/TOPIC?subscription=NAME", RedactURL(spec))
	}
	open, found := o[kind]
	if !found {
		return nil, fmt.Errorf("source %q: unknown kind %q (known: %s)", RedactURL(spec), kind, strings.Join(o.Kinds(), ", "))
	}
	return open(arg)
}

// Kinds lists the kinds, sorted.
func (o Openers) Kinds() []string { return slices.Sorted(maps.Keys(o)) }

// Open opens spec with the Builtin kinds.
func Open(spec string) (Source, error) { return Builtin().Open(spec) }
