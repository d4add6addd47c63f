package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/demandpipe/demandpipe/definitions"
	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/job"
	"github.com/demandpipe/demandpipe/pipeline"
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
var shorthand = []string{"h3.resolution", "kring.rings", "windows.minutes", "windows.aggregate"}

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
	stores, f, err := job.OpenDefinitionStores(dir, store.DefaultConfig(), nil)
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
	reg := cassandra.Registry{Session: sess, Config: cc}
	f, ok, err := reg.Load(ctx)
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
	if err := reg.Save(ctx, f); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "demandpipe: %s is the active definition of %s; servers switch within %s\n", f.Active, where, cassandra.ActiveEvery)
	return nil
}
