// Package source is where raw events enter: NDJSON files (plain, gzip or
// zstd, detected from the first bytes), stdin, and the built-in live
// generator. A Source is an io.Reader of NDJSON bytes; the engine cuts it
// into chunks of whole lines.
package source

import (
	"fmt"
	"io"
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

// Open builds a source from a spec: "file:PATH" ("file:-" is stdin) or
// "gen:" with optional comma-separated settings, e.g.
// "gen:rate=200000,riders=500000,seed=7,speed=10" (see GenSpecHelp).
func Open(spec string) (Source, error) {
	kind, arg, ok := strings.Cut(spec, ":")
	if !ok {
		return nil, fmt.Errorf("source %q: want file:PATH, file:- or gen:[k=v,...]", spec)
	}
	switch kind {
	case "file":
		return OpenFile(arg)
	case "gen":
		return OpenGen(arg)
	}
	return nil, fmt.Errorf("source %q: unknown kind %q (known: file, gen)", spec, kind)
}
