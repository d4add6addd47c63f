package job

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/demandpipe/demandpipe/pipeline"
	"github.com/demandpipe/demandpipe/scaleout"
	"github.com/demandpipe/demandpipe/serve"
	"github.com/demandpipe/demandpipe/sink/cassandra"
	"github.com/demandpipe/demandpipe/store"
)

// Config is one run: where events come from, where rows go, the engine's
// settings and the process's part in a scale-out. `demandpipe run` binds
// it to flags (RegisterFlags; the engine's own knobs are bound by cmd,
// which bench shares); tests fill it directly.
type Config struct {
	// Source is where events come from: file:PATH (file:- is stdin),
	// gen:[k=v,...] or pulsar://HOST:6650/TOPIC?subscription=NAME.
	// Default gen: (the live synthetic city).
	Source string
	// Sink is where rows go: store:DIR, cassandra://HOSTS/KEYSPACE?…,
	// ndjson:PATH, ndjson:- or null:. Default store:./demandpipe-data.
	Sink string
	// Serve is the HOST:PORT of the API, the page and /metrics beside a
	// store sink ("" none). Default 127.0.0.1:8080.
	Serve string
	// ServeExplicit says Serve was asked for: then a Cassandra sink is
	// served too, and a sink the API cannot read still serves /metrics
	// and /healthz (the default address serves only a store).
	ServeExplicit bool
	// Rejects, if set, is a file that receives every rejected line.
	Rejects string
	// Duration stops the input after this long (0: until it ends).
	Duration time.Duration
	// Resume continues from the sink's checkpoint of the same input.
	// Default true.
	Resume bool

	Pipeline  pipeline.Config
	Store     store.Config
	Cassandra cassandra.Config
	Server    serve.Config
	Role      Role

	// Log receives the run's log lines (nil: slog.Default()).
	Log *slog.Logger
	// Summary receives the summary at the end (nil: io.Discard).
	Summary io.Writer
	// Progress, if set, receives a progress line every second;
	// ProgressWidth is its terminal's width (nil: plain lines).
	Progress      io.Writer
	ProgressWidth func() int
	// AfterClose, if set, runs after each minute's close is logged: the
	// kill tests' children kill themselves there, at a point the input
	// guarantees however fast the machine reads.
	AfterClose func()
}

// Role is a run's part in a scale-out over Pulsar (pipeline/SCALEOUT.md).
type Role struct {
	// Name is all (the whole pipeline in this process), dedup or
	// aggregate. Default all.
	Name     string
	Scaleout scaleout.Config
	// URL is the Pulsar service of the internal and state topics, with
	// the connection's settings as a query. Default pulsar://127.0.0.1:6650.
	URL string
	// DedupID is a dedup process's number, 0..dedups-1. Default 0.
	DedupID int
	// Dedups is how many dedup processes publish from the start (aggregate
	// role). Default 1.
	Dedups int
	// Ranges are the Key_Shared hash ranges an aggregate process owns.
	// Default 0-65535.
	Ranges string
	// Subscription is the aggregate processes' subscription on the
	// internal topic. Default demandpipe-aggregate.
	Subscription string
	// Joins are the ids of dedup processes that take riders from this
	// one from its checkpoint on ("" none).
	Joins string
	// ResumeFrom, with no checkpoint of this dedup process's own, resumes
	// from that process's (-1: none).
	ResumeFrom int
}

// DefaultConfig is the README's first command: the live city into the
// embedded store, served on 127.0.0.1:8080.
func DefaultConfig() Config {
	return Config{
		Source:    "gen:",
		Sink:      "store:" + store.DefaultDir,
		Serve:     "127.0.0.1:8080",
		Resume:    true,
		Pipeline:  pipeline.DefaultConfig(),
		Store:     store.DefaultConfig(),
		Cassandra: cassandra.DefaultConfig(),
		Server:    serve.DefaultConfig(),
		Role: Role{
			Name:         "all",
			Scaleout:     scaleout.DefaultConfig(),
			URL:          "pulsar://127.0.0.1:6650",
			Dedups:       1,
			Ranges:       "0-65535",
			Subscription: "demandpipe-aggregate",
			ResumeFrom:   -1,
		},
	}
}

// RegisterFlags binds the run's settings, but the engine's (cmd binds
// those), to fs: -source, -sink, -serve, the store's, the Cassandra
// queue's and the server's knobs, and the scale-out roles'.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Source, "source", c.Source, "where events come from: file:PATH, file:-, gen:[k=v,...] or pulsar://HOST:6650/TOPIC?subscription=NAME")
	fs.StringVar(&c.Sink, "sink", c.Sink, "where rows go: store:DIR, cassandra://HOSTS/KEYSPACE?…, ndjson:PATH, ndjson:- or null:")
	fs.StringVar(&c.Serve, "serve", c.Serve, "with a store sink, serve the API, the page and /metrics on HOST:PORT while running; with another sink, given explicitly, only /metrics and /healthz (empty: no server)")
	c.Store.RegisterFlags(fs)
	c.Cassandra.Queue.RegisterFlags(fs)
	fs.BoolVar(&c.Cassandra.CreateSchema, "sink.create-schema", c.Cassandra.CreateSchema, "with a cassandra:// sink, apply the schema (keyspace and tables, IF NOT EXISTS) at start; the same as ?create=true (`demandpipe schema cassandra` prints it)")
	c.Server.RegisterFlags(fs)
	fs.StringVar(&c.Rejects, "rejects", c.Rejects, "if set, write every rejected line here as {\"line\":N,\"reason\":…,\"text\":…}")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "stop the input after this long (0: until it ends; a live generator never ends; a pulsar:// run stops without closing its open minutes, as on SIGINT)")
	fs.BoolVar(&c.Resume, "resume", c.Resume, "with a sink that keeps checkpoints (store:), continue from the last one when the same input file is run again; false starts over")
	c.Role.registerFlags(fs)
}

func (r *Role) registerFlags(fs *flag.FlagSet) {
	fs.StringVar(&r.Name, "role", r.Name, "all: the whole pipeline in this process; dedup: read -source, dedup and publish counted events to -scaleout.topic (no sink), with a checkpoint on the topic named -scaleout.topic plus -state before each watermark, from which the same command resumes; aggregate: consume -scaleout.topic and write the rows of the regions this process owns to -sink; with a store or cassandra sink it commits each slot's state with the rows and a process started on the same ranges (after a crash, or in place of a lost one) resumes them (pipeline/SCALEOUT.md)")
	r.Scaleout.RegisterFlags(fs)
	fs.StringVar(&r.URL, "scaleout.url", r.URL, "Pulsar service URL of the internal topic and the state topic, pulsar://HOST:PORT or pulsar+ssl://HOST:PORT, with the connection's settings as a query: token-file=PATH (or env DEMANDPIPE_PULSAR_TOKEN), tls-ca-file=PATH, tls-allow-insecure=true (tests only), connect-timeout=D, operation-timeout=D")
	fs.IntVar(&r.DedupID, "scaleout.dedup-id", r.DedupID, "dedup role: this process's number, 0..scaleout.dedups-1")
	fs.IntVar(&r.Dedups, "scaleout.dedups", r.Dedups, "aggregate role: how many dedup processes publish from the start (ids 0..N-1; a minute closes when all of them have passed it); processes that join later are announced on the topic (-scaleout.joins)")
	fs.StringVar(&r.Ranges, "scaleout.ranges", r.Ranges, "aggregate role: the Key_Shared sticky hash ranges this process owns, a-b[,c-d] within 0..65535; the processes' ranges must not overlap and together cover it")
	fs.StringVar(&r.Subscription, "scaleout.subscription", r.Subscription, "aggregate role: the subscription on the internal topic (the same for every aggregate process)")
	fs.StringVar(&r.Joins, "scaleout.joins", r.Joins, "dedup role, a join: the ids of the dedup processes that take some of this process's riders from its checkpoint on (it resumes with narrower -source key-ranges=; they with -scaleout.resume-from=this id); aggregators wait for them from then on")
	fs.IntVar(&r.ResumeFrom, "scaleout.resume-from", r.ResumeFrom, "dedup role, a join: with no checkpoint of its own yet, resume from this dedup process's checkpoint (its riders in this process's -source key-ranges=)")
}

// Validate checks every part's settings and that no output is an input or
// another output (os.Create would truncate what is read).
func (c Config) Validate() error {
	switch c.Role.Name {
	case "all":
	case "dedup", "aggregate":
		if len(c.Pipeline.Extra) > 0 {
			return fmt.Errorf("-role=%s with -definitions: the scale-out roles compute one definition so far (issue 23)", c.Role.Name)
		}
		if err := c.Role.Scaleout.Validate(); err != nil {
			return err
		}
		if c.Role.DedupID < 0 {
			return fmt.Errorf("-scaleout.dedup-id=%d: must be >= 0", c.Role.DedupID)
		}
		if c.Role.Dedups < 1 {
			return fmt.Errorf("-scaleout.dedups=%d: must be >= 1", c.Role.Dedups)
		}
	default:
		return fmt.Errorf("-role=%q: want all, dedup or aggregate", c.Role.Name)
	}
	for _, d := range c.Pipeline.Extra {
		if _, err := ExtraSinkSpec(c.Sink, d.Name); err != nil {
			return err
		}
	}
	for _, v := range []interface{ Validate() error }{c.Pipeline, c.Store, c.Server} {
		if err := v.Validate(); err != nil {
			return err
		}
	}
	outputs := []Path{{"-sink=" + c.Sink, FilePath(c.Sink, "ndjson")}, {"-rejects=" + c.Rejects, c.Rejects}}
	for _, d := range c.Pipeline.Extra {
		if spec, err := ExtraSinkSpec(c.Sink, d.Name); err == nil {
			outputs = append(outputs, Path{"definition " + d.Name + "'s " + spec, FilePath(spec, "ndjson")})
		}
	}
	return CheckOutputs([]Path{{"-source=" + c.Source, FilePath(c.Source, "file")}}, outputs)
}
