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
// pulsar_dead_lettered_total, pulsar_unacked_messages and
// pulsar_consumer_lag_seconds.
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

// Open builds a source from a spec: "file:PATH" ("file:-" is stdin),
// "gen:" with optional comma-separated settings, e.g.
// "gen:rate=200000,riders=500000,seed=7,speed=10" (see GenSpecHelp), or
// "pulsar://HOST:PORT/TOPIC?subscription=NAME" (see PulsarSpecHelp).
func Open(spec string) (Source, error) {
	kind, arg, ok := strings.Cut(spec, ":")
	if !ok {
		return nil, fmt.Errorf("source %q: want file:PATH, file:-, gen:[k=v,...] or pulsar://HOST:PORT/TOPIC?subscription=NAME", spec)
	}
	switch kind {
	case "file":
		return OpenFile(arg)
	case "gen":
		return OpenGen(arg)
	case "pulsar", "pulsar+ssl":
		return OpenPulsar(spec)
	}
	return nil, fmt.Errorf("source %q: unknown kind %q (known: file, gen, pulsar, pulsar+ssl)", RedactURL(spec), kind)
}
