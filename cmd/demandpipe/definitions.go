package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/definitions"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/pipeline"
	"github.com/demandpipe/demandpipe/serve"
	"github.com/demandpipe/demandpipe/sink"
	"github.com/demandpipe/demandpipe/sink/cassandra"
	"github.com/demandpipe/demandpipe/store"
)

// definitionsFlag is -definitions=FILE (issue 23): a YAML list of named
// definitions computed in one pass, the first the run's default. The file
// is read when the flag is parsed (a bad file stops the command before
// anything runs) and applied after parsing (apply), so that it cannot be
// half-overridden by the shorthand flags.
type definitionsFlag struct {
	path string
	defs []feature.Named
}

func (d *definitionsFlag) String() string {
	if d == nil {
		return ""
	}
	return d.path
}

func (d *definitionsFlag) Set(path string) error {
	if path == "" {
		d.path, d.defs = "", nil
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	defs, err := feature.ParseDefinitions(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	d.path, d.defs = path, defs
	return nil
}

// shorthand are the flags that describe the one default definition.
var shorthand = []string{"h3.resolution", "kring.rings", "windows.minutes"}

// apply puts the file's definitions into c once fs is parsed: the first
// becomes c.Def (named), the rest c.Extra. Giving the shorthand flags too
// is refused: which would win is a guess.
func (d *definitionsFlag) apply(fs *flag.FlagSet, c *pipeline.Config) error {
	if d.defs == nil {
		return nil
	}
	var both []string
	fs.Visit(func(f *flag.Flag) {
		for _, s := range shorthand {
			if f.Name == s {
				both = append(both, "-"+s)
			}
		}
	})
	if len(both) > 0 {
		return fmt.Errorf("-definitions=%s and %s: the file names every definition; drop %s or put it in the file", d.path, strings.Join(both, ", "), strings.Join(both, ", "))
	}
	c.Def, c.DefName, c.Extra = d.defs[0].Definition, d.defs[0].Name, d.defs[1:]
	return nil
}

// extraSinkSpec is the sink of a further definition named name, derived
// from the run's -sink: ndjson:rows.ndjson gives ndjson:rows.NAME.ndjson
// (the name before the first extension, so rows.ndjson.gz gives
// rows.NAME.ndjson.gz), store:DIR gives store:DIR.NAME (a store of its own
// beside the first: rows, checkpoints and retention apart), null: gives
// null:. Cassandra keeps one definition's rows for now, and stdout holds
// one stream.
func extraSinkSpec(spec, name string) (string, error) {
	kind, arg, _ := strings.Cut(spec, ":")
	switch {
	case kind == "null":
		return "null:", nil
	case kind == "store" && arg != "":
		return "store:" + filepath.Clean(arg) + "." + name, nil
	case kind == "cassandra":
		return cassandraDefinitionSpec(spec, name)
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

// openExtraSinks opens the sinks of rf.cfg.Extra beside the run's -sink,
// each store with its definition and its metrics labelled with its name.
func (rf *runFlags) openExtraSinks(reg prometheus.Registerer, sc store.Config) ([]sink.Writer, error) {
	var out []sink.Writer
	for _, d := range rf.cfg.Extra {
		s, err := extraSinkSpec(*rf.snk, d.Name)
		if err == nil {
			openers := sink.Builtin()
			scd := sc
			scd.Definition = d.Definition
			openers["store"] = store.Opener(scd, definitionRegisterer(reg, d.Name))
			ccd := rf.cc
			ccd.Definition = d.Definition // stored with its table, checked on reopen and by readers
			openers["cassandra"] = cassandra.NewOpener(ccd, cassandra.Options{Registerer: definitionRegisterer(reg, d.Name), Logf: logf})
			var w sink.Writer
			if w, err = openers.Open(s); err == nil {
				out = append(out, w)
				continue
			}
		}
		closeAll(out)
		return nil, fmt.Errorf("definition %s: %w", d.Name, err)
	}
	return out, nil
}

// extraOutputs are the files further definitions write, for checkOutputs.
func (rf *runFlags) extraOutputs() []namedPath {
	var out []namedPath
	for _, d := range rf.cfg.Extra {
		if spec, err := extraSinkSpec(*rf.snk, d.Name); err == nil {
			out = append(out, namedPath{"definition " + d.Name + "'s " + spec, filePath(spec, "ndjson")})
		}
	}
	return out
}

// definitionsText names the run's definitions for a log line.
func definitionsText(c pipeline.Config) string {
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

// definitionRegisterer labels the metrics registered through it with
// definition=name: several stores in one process register the same
// metrics, one set per definition.
func definitionRegisterer(reg prometheus.Registerer, name string) prometheus.Registerer {
	return prometheus.WrapRegistererWith(prometheus.Labels{"definition": name}, reg)
}

// registerDefinitions records a run's definitions where its readers find
// them (the store's definitions file, or a record of Cassandra's state
// table), the first active unless one was promoted, and makes j.active
// follow promotions.
func (j *runJob) registerDefinitions() error {
	if len(j.rf.cfg.Extra) == 0 {
		return nil
	}
	names := []string{j.rf.cfg.Named().Name}
	for _, d := range j.rf.cfg.Extra {
		names = append(names, d.Name)
	}
	switch out := j.out.(type) {
	case *store.Store:
		f, err := definitions.Register(out.Dir(), names)
		if err != nil {
			return err
		}
		w := definitions.NewWatcher(out.Dir(), f)
		w.Err = func(err error) { j.log.Warn("definitions file: keeping the last good one", "err", err.Error()) }
		j.active = func() string { return w.Current().Active }
	case *cassandra.Sink:
		reg := cassandraRegistry{sess: out.Session(), cfg: out.Config()}
		f, err := reg.register(context.Background(), names)
		if err != nil {
			return err
		}
		j.active, j.stopActive = reg.follow(f, j.log)
	}
	return nil
}

// cassandraRegistry is a Cassandra deployment's definitions record, kept
// under its first definition's table (sink/cassandra: ReadRegistry).
type cassandraRegistry struct {
	sess *gocql.Session
	cfg  cassandra.Config
}

func (r cassandraRegistry) load(ctx context.Context) (definitions.File, bool, error) {
	b, ok, err := cassandra.ReadRegistry(ctx, r.sess, r.cfg)
	if err != nil || !ok {
		return definitions.File{}, ok, err
	}
	f, err := definitions.Parse(b)
	return f, true, err
}

func (r cassandraRegistry) save(ctx context.Context, f definitions.File) error {
	b, err := f.Marshal()
	if err != nil {
		return err
	}
	return cassandra.WriteRegistry(ctx, r.sess, r.cfg, b)
}

// register is definitions.Register for Cassandra.
func (r cassandraRegistry) register(ctx context.Context, names []string) (definitions.File, error) {
	f, _, err := r.load(ctx)
	if err != nil {
		return f, err
	}
	f, changed, err := f.With(r.cfg.Keyspace+"."+r.cfg.Table, names)
	if err == nil && changed {
		err = r.save(ctx, f)
	}
	return f, err
}

// activeEvery is how often a server from Cassandra reads the definitions
// record: a promotion reaches it within this (a read per request would be
// a round trip to the cluster on every answer).
const activeEvery = time.Second

// follow returns the active definition, re-read every activeEvery (a
// failed read keeps the last good answer, logged once), and its stop.
func (r cassandraRegistry) follow(f definitions.File, log *slog.Logger) (active func() string, stop func()) {
	var cur atomic.Value
	cur.Store(f.Active)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(activeEvery)
		defer t.Stop()
		warned := false
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			g, ok, err := r.load(ctx)
			cancel()
			switch {
			case err == nil && ok:
				cur.Store(g.Active)
				warned = false
			case !warned:
				log.Warn("the definitions record: keeping the last good one", "err", fmt.Sprint(err), "found", ok)
				warned = true
			}
		}
	}()
	return func() string { return cur.Load().(string) }, func() { close(done) }
}

// servedStores is what run -serve answers from a store sink: its one
// definition, or every definition the run writes (their stores are the
// run's sinks) with the active one from the definitions file.
func (j *runJob) servedStores(st *store.Store) *served {
	if j.active == nil {
		return one(st)
	}
	sv := &served{names: []string{j.rf.cfg.Named().Name}, readers: []serve.Reader{st}, active: j.active}
	for k, d := range j.rf.cfg.Extra {
		sv.names = append(sv.names, d.Name)
		sv.readers = append(sv.readers, j.e.ExtraSinks[k].(*store.Store))
	}
	return sv
}

// servedCassandra is what run -serve answers from a Cassandra sink: each
// definition's table, read on its sink's session.
func (j *runJob) servedCassandra(ctx context.Context, cs *cassandra.Sink) (*served, error) {
	sinks := []*cassandra.Sink{cs}
	names := []string{j.rf.cfg.Named().Name}
	for k, d := range j.rf.cfg.Extra {
		sinks, names = append(sinks, j.e.ExtraSinks[k].(*cassandra.Sink)), append(names, d.Name)
	}
	sv := &served{names: names, active: j.active}
	for _, s := range sinks {
		cst, err := cassandra.NewStore(ctx, s.Session(), s.Config(), cassandra.StoreOptions{})
		if err != nil {
			return nil, err
		}
		sv.readers = append(sv.readers, cst)
	}
	return sv, nil
}

const definitionsSynopsis = `demandpipe definitions list -store=DIR
demandpipe definitions promote -store=DIR NAME
demandpipe definitions diff -store=DIR [-minutes=10] A B

The feature definitions a store holds (run -definitions=FILE writes them: the
first in DIR, each other in DIR.NAME, listed in DIR.definitions.json) and
which one the API answers when a request names none. promote makes NAME the
active definition atomically: every server reading the store switches at its
next request, and no answer mixes definitions (docs/DEFINITIONS.md). diff
compares two definitions over the last minutes both hold: the same spec (a
new build run dark) must match row for row (exit 1 if not); different specs
get mean, p50 and p99 of |A - B| per shared feature. Run it on a store no run
is writing (a store has one owner process).`

// definitionsCommand implements `demandpipe definitions`.
func definitionsCommand(args []string) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "promote" && args[0] != "diff") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			out := io.Writer(os.Stderr)
			if helpOut != nil {
				out = helpOut
			}
			fmt.Fprintln(out, definitionsSynopsis)
			return nil
		}
		fmt.Fprintln(os.Stderr, "demandpipe definitions: want list, promote or diff (demandpipe help definitions)")
		return errUsage
	}
	verb := args[0]
	fs := flag.NewFlagSet("definitions "+verb, flag.ContinueOnError)
	dir := fs.String("store", store.DefaultDir, "the store directory (the first definition's; the others are beside it)")
	minutes := fs.Int("minutes", 10, "diff: the last this many minutes both definitions hold (0: all)")
	if helpOut != nil {
		fs.SetOutput(helpOut)
	}
	fs.Usage = func() { fmt.Fprintf(fs.Output(), "%s\n\n  -store=DIR (%s)\n", definitionsSynopsis, store.DefaultDir) }
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	switch verb {
	case "diff":
		return diffDefinitions(*dir, *minutes, fs.Args())
	case "list", "promote":
		if strings.HasPrefix(*dir, "cassandra://") {
			return cassandraDefinitionsCommand(verb, *dir, fs.Args())
		}
	}
	switch verb {
	case "list":
		f, err := definitions.Load(*dir)
		if errors.Is(err, os.ErrNotExist) {
			fmt.Printf("%s holds one definition (default, active); no definitions file\n", *dir)
			return nil
		}
		if err != nil {
			return err
		}
		for _, n := range f.Definitions {
			mark := ""
			if n == f.Active {
				mark = "  (active since " + f.Promoted + ")"
			}
			fmt.Printf("%-12s %s%s\n", n, f.StoreDir(*dir, n), mark)
		}
		return nil
	default: // promote NAME
		rest := fs.Args()
		if len(rest) != 1 {
			fmt.Fprintln(os.Stderr, "demandpipe definitions promote: want one definition NAME after the flags")
			return errUsage
		}
		if _, err := os.Stat(*dir); err != nil {
			return err
		}
		f, err := definitions.Promote(*dir, rest[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "demandpipe: %s is the active definition of %s; servers switch at their next request\n", f.Active, *dir)
		return nil
	}
}

// errDiffer is diff's answer when two definitions of one spec differ.
var errDiffer = errors.New("the rows differ")

// diffDefinitions implements `definitions diff`.
func diffDefinitions(dir string, minutes int, names []string) error {
	if len(names) != 2 {
		fmt.Fprintln(os.Stderr, "demandpipe definitions diff: want two definition names after the flags")
		return errUsage
	}
	stores, f, err := openDefinitionStores(dir, store.DefaultConfig(), nil)
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range stores {
			s.Close()
		}
	}()
	var pick [2]*store.Store
	for i, n := range names {
		k := slices.Index(f.Definitions, n)
		if k < 0 {
			return fmt.Errorf("%s holds no definition %q (it holds %v)", dir, n, f.Definitions)
		}
		pick[i] = stores[k]
	}
	rep, err := definitions.Diff(pick[0], pick[1], minutes)
	if err != nil {
		return err
	}
	rep.Write(os.Stdout, names[0], names[1])
	if rep.SameSpec && !rep.Identical {
		return errDiffer
	}
	return nil
}

// cassandraDefinitionSpec is a further definition's Cassandra sink: the
// same keyspace, its own feature table TABLE_NAME (and so its own rows of
// the state and minutes tables, which are keyed by the table's name). One
// table per definition rather than a definition column: definitions have
// different numbers of features (a row is one blob of them), a reader of
// one definition reads only its partitions, each table has its own TTL
// and compaction, and a retired definition is one DROP TABLE.
func cassandraDefinitionSpec(spec, name string) (string, error) {
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

// openCassandraDefinitions reads the deployment at a cassandra:// URL:
// with a definitions record, every definition's table (TABLE, TABLE_NAME…)
// on one session, the active one followed; without, the one table.
func openCassandraDefinitions(ctx context.Context, spec string, log *slog.Logger) (sv *served, closeAll func(), err error) {
	cc, err := cassandra.ParseURL(spec)
	if err != nil {
		return nil, nil, err
	}
	sess, err := cassandra.Connect(ctx, cc)
	if err != nil {
		return nil, nil, err
	}
	reg := cassandraRegistry{sess: sess, cfg: cc}
	f, ok, err := reg.load(ctx)
	if err != nil {
		sess.Close()
		return nil, nil, err
	}
	if !ok {
		f = definitions.File{Definitions: []string{feature.DefaultName}, Active: feature.DefaultName}
	}
	sv = &served{names: f.Definitions}
	stop := func() {}
	if ok && len(f.Definitions) > 1 {
		sv.active, stop = reg.follow(f, log)
	}
	for i, n := range f.Definitions {
		c := cc
		if i > 0 {
			ds, err := cassandraDefinitionSpec(spec, n)
			if err == nil {
				c, err = cassandra.ParseURL(ds)
			}
			if err != nil {
				stop()
				sess.Close()
				return nil, nil, err
			}
		}
		st, err := cassandra.NewStore(ctx, sess, c, cassandra.StoreOptions{})
		if err != nil {
			stop()
			sess.Close()
			return nil, nil, fmt.Errorf("definition %s: %w", n, err)
		}
		sv.readers = append(sv.readers, st)
	}
	return sv, func() {
		stop()
		for _, r := range sv.readers {
			r.(*cassandra.Store).Close()
		}
		sess.Close()
	}, nil
}

// cassandraDefinitionsCommand is definitions list|promote on a keyspace.
func cassandraDefinitionsCommand(verb, spec string, args []string) error {
	cc, err := cassandra.ParseURL(spec)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sess, err := cassandra.Connect(ctx, cc)
	if err != nil {
		return err
	}
	defer sess.Close()
	reg := cassandraRegistry{sess: sess, cfg: cc}
	f, ok, err := reg.load(ctx)
	if err != nil {
		return err
	}
	where := cc.Keyspace + "." + cc.Table
	if verb == "list" {
		if !ok {
			fmt.Printf("%s holds one definition (default, active); no definitions record\n", where)
			return nil
		}
		for i, n := range f.Definitions {
			table := cc.Table
			if i > 0 {
				table += "_" + n
			}
			mark := ""
			if n == f.Active {
				mark = "  (active since " + f.Promoted + ")"
			}
			fmt.Printf("%-12s %s.%s%s\n", n, cc.Keyspace, table, mark)
		}
		return nil
	}
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "demandpipe definitions promote: want one definition NAME after the flags")
		return errUsage
	}
	if !ok {
		return fmt.Errorf("%s has no definitions record: it holds one definition (run -definitions=FILE writes one)", where)
	}
	if f, err = f.Promote(where, args[0]); err != nil {
		return err
	}
	if err := reg.save(ctx, f); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "demandpipe: %s is the active definition of %s; servers switch within %s\n", f.Active, where, activeEvery)
	return nil
}
