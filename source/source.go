// Package source is where raw events enter: NDJSON files (plain, gzip or
// zstd, detected from the first bytes), stdin and the built-in live
// generator. A Source is an io.Reader of NDJSON bytes; the engine cuts it
// into chunks of whole lines.
//
// Sources open from Openers, a map of kinds as sink.Openers is for sinks:
// Builtin holds file and gen, and a package with a source of its own adds
// its kinds (package pulsar: pulsar.Openers). What a source can do beyond
// Source is a capability, a small interface found by type assertion where
// the run is wired (capability.go): Acknowledger, Instrumented,
// DeadLetterer; the engine's own are pipeline.Cursored and the Identity and
// EventClock methods.
//
// Metrics (namespace demandpipe, subsystem source; metrics.go,
// RegisterPositionMetrics, for any Source): demandpipe_source_read_bytes
// and demandpipe_source_size_bytes, the input's position and size as
// stored.
package source

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/demandpipe/demandpipe/internal/redact"
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

// Builtin returns the kinds this package provides: file and gen.
func Builtin() Openers {
	return Openers{
		"file": opener(OpenFile),
		"gen":  opener(OpenGen),
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
// another kind's, e.g. "pulsar://HOST:PORT/TOPIC?subscription=NAME" (see
// pulsar.SpecHelp).
func (o Openers) Open(spec string) (Source, error) {
	kind, arg, ok := strings.Cut(spec, ":")
	if !ok {
		return nil, fmt.Errorf("source %q: want KIND:ARG, KIND one of %s (e.g. file:PATH, file:-, gen:[k=v,...])", RedactURL(spec), strings.Join(o.Kinds(), ", "))
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

// RedactURL returns a source or sink spec fit to print: user info before
// the host ("user:password@") and the values of token= and password=
// replaced by REDACTED (internal/redact). Specs that are not URLs come back
// as they are.
func RedactURL(spec string) string { return redact.URL(spec) }
