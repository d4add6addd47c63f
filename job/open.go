package job

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/pipeline"
	"github.com/demandpipe/demandpipe/pulsar"
	"github.com/demandpipe/demandpipe/sink"
	"github.com/demandpipe/demandpipe/sink/cassandra"
	"github.com/demandpipe/demandpipe/source"
	"github.com/demandpipe/demandpipe/store"
)

// OpenSource opens a -source spec: the kinds of package source (file, gen)
// and Pulsar's (pulsar, pulsar+ssl). The one place the wiring names a
// source package other than source: the rest asks for capabilities
// (wireSource).
func OpenSource(spec string) (source.Source, error) {
	openers := source.Builtin()
	maps.Copy(openers, pulsar.Openers())
	return openers.Open(spec)
}

// ErrStoppedOpen ends the run of an acknowledging source on Stop or
// Duration: the open minutes stay open (source.Acknowledger;
// pulsar/RECOVERY.md, graceful shutdown).
var ErrStoppedOpen = errors.New("run stopped without closing the open minutes")

// wireSource connects a source's capabilities to the engine: its metrics
// and logger (source.Instrumented), its acknowledgement of a checkpoint's
// position once durable (source.Acknowledger; out must keep checkpoints,
// else it is told none will come), and its dead letters (the engine's
// rejects, teed to Rejects if given; source.DeadLetterer).
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

// openSink opens spec with the run's store settings (sc) and Cassandra's,
// for definition def of the run.
func (c Config) openSink(spec string, reg prometheus.Registerer, sc store.Config, def pipeline.Config) (sink.Writer, error) {
	openers := sink.Builtin()
	openers["store"] = store.Opener(sc, reg)
	cc := c.Cassandra
	cc.Definition = def.Def // stored with the table, checked on reopen and by readers
	openers["cassandra"] = cassandra.NewOpener(cc, cassandra.Options{Registerer: reg, Logf: c.logf})
	return openers.Open(spec)
}

// logf prints a sink's log lines through the run's logger.
func (c Config) logf(format string, args ...any) {
	c.logger().Warn(fmt.Sprintf(format, args...))
}

func (c Config) logger() *slog.Logger {
	if c.Log == nil {
		return slog.Default()
	}
	return c.Log
}

// openExtraSinks opens the sinks of the further definitions beside the
// run's Sink, each store with its definition and its metrics labelled with
// its name.
func (c Config) openExtraSinks(reg prometheus.Registerer, sc store.Config) ([]sink.Writer, error) {
	var out []sink.Writer
	for _, d := range c.Pipeline.Extra {
		s, err := ExtraSinkSpec(c.Sink, d.Name)
		if err == nil {
			scd, dc := sc, c.Pipeline
			scd.Definition, dc.Def = d.Definition, d.Definition
			var w sink.Writer
			if w, err = c.openSink(s, DefinitionRegisterer(reg, d.Name), scd, dc); err == nil {
				out = append(out, w)
				continue
			}
		}
		closeAll(out)
		return nil, fmt.Errorf("definition %s: %w", d.Name, err)
	}
	return out, nil
}

// ExtraSinkSpec is the sink of a further definition named name, derived
// from the run's -sink: ndjson:rows.ndjson gives ndjson:rows.NAME.ndjson
// (the name before the first extension, so rows.ndjson.gz gives
// rows.NAME.ndjson.gz), store:DIR gives store:DIR.NAME (a store of its own
// beside the first: rows, checkpoints and retention apart), cassandra://
// a table of its own (CassandraDefinitionSpec), null: gives null:. Stdout
// holds one stream.
func ExtraSinkSpec(spec, name string) (string, error) {
	kind, arg, _ := strings.Cut(spec, ":")
	switch {
	case kind == "null":
		return "null:", nil
	case kind == "store" && arg != "":
		return "store:" + filepath.Clean(arg) + "." + name, nil
	case kind == "cassandra":
		return CassandraDefinitionSpec(spec, name)
	case kind == "ndjson" && arg != "" && arg != "-":
		dir, base := filepath.Split(arg)
		stem, ext, _ := strings.Cut(base, ".")
		if ext != "" {
			ext = "." + ext
		}
		return "ndjson:" + dir + stem + "." + name + ext, nil
	case kind == "ndjson":
		return "", errors.New("-definitions with -sink=ndjson:- : stdout holds one definition's rows; give -sink=ndjson:FILE (further definitions go to FILE with their name before the extension)")
	default:
		return "", fmt.Errorf("-definitions with -sink=%s: only store:DIR, cassandra://…, ndjson:FILE and null: take several definitions", kind)
	}
}

// CassandraDefinitionSpec is a further definition's Cassandra sink: the
// same keyspace, its own feature table TABLE_NAME (and so its own rows of
// the state and minutes tables, which are keyed by the table's name). One
// table per definition rather than a definition column: definitions have
// different numbers of features (a row is one blob of them), a reader of
// one definition reads only its partitions, each table has its own TTL
// and compaction, and a retired definition is one DROP TABLE.
func CassandraDefinitionSpec(spec, name string) (string, error) {
	cc, err := cassandra.ParseURL(spec)
	if err != nil {
		return "", err
	}
	u, err := url.Parse(spec)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("table", cc.Table+"_"+name)
	if cc.State != "" && cc.State != cc.Table {
		q.Set("state", cc.State+"_"+name)
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// DefinitionsText names a run's definitions for a log line.
func DefinitionsText(c pipeline.Config) string {
	if len(c.Extra) == 0 {
		return c.Def.String()
	}
	s := c.Named().String()
	for _, d := range c.Extra {
		s += "; " + d.String()
	}
	return s
}

// closeAll closes sinks, joining their errors.
func closeAll(sinks []sink.Writer) error {
	var errs []error
	for _, w := range sinks {
		errs = append(errs, w.Close())
	}
	return errors.Join(errs...)
}

// DefinitionRegisterer labels the metrics registered through it with
// definition=name: several stores in one process register the same
// metrics, one set per definition.
func DefinitionRegisterer(reg prometheus.Registerer, name string) prometheus.Registerer {
	return prometheus.WrapRegistererWith(prometheus.Labels{"definition": name}, reg)
}
