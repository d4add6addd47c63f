package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/pipeline"
	"github.com/demandpipe/demandpipe/sink"
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
		return "", fmt.Errorf("-definitions with -sink=%s: only store:DIR, ndjson:FILE and null: take several definitions so far (a keyspace keeping each definition apart is issue 23, not built yet)", kind)
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
