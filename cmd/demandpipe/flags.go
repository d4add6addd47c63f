package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/pipeline"
	"github.com/demandpipe/demandpipe/productfile"
)

var errUsage = errors.New("usage")

// intList is a flag holding "a,b,c".
type intList struct{ v *[]int }

func (l intList) String() string {
	if l.v == nil {
		return ""
	}
	return feature.JoinInts(*l.v)
}

func (l intList) Set(s string) error {
	v, err := feature.ParseInts(s)
	if err != nil {
		return err
	}
	*l.v = v
	return nil
}

// productsFlag is -products=FILE: the products file loaded when the flag is
// parsed, so a bad file stops the command before anything runs. Its names
// name the products on the page and in /v1/products too, unless
// -serve.product-names is given (before or after it, or in -config).
type productsFlag struct {
	c    *pipeline.Config
	fs   *flag.FlagSet
	path string
}

func (p *productsFlag) String() string {
	if p == nil {
		return ""
	}
	return p.path
}

func (p *productsFlag) Set(path string) error {
	var names productfile.Names
	if path != "" {
		var err error
		if names, err = productfile.Load(path); err != nil {
			return err
		}
	}
	p.c.Products, p.path = names, path
	// The serve flag's value, not fs.Set: it stays "not given", so a
	// -serve.product-names after this one still replaces it.
	if f := p.fs.Lookup("serve.product-names"); f != nil && !isSet(p.fs, f.Name) {
		return f.Value.Set(path)
	}
	return nil
}

// isSet says whether the flag name was set on fs (so far, while parsing).
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// engineFlags registers the pipeline's knobs on fs, dotted by package. The
// returned -definitions flag applies once fs is parsed (definitionsFlag.apply).
func engineFlags(fs *flag.FlagSet, c *pipeline.Config) *definitionsFlag {
	defs := &definitionsFlag{}
	fs.Var(defs, "definitions", "a YAML file of named definitions ({name, resolution, rings, windows, aggregate} each) computed in one pass (docs/DEFINITIONS.md): the first is the run's default and writes to -sink; each further one writes beside it under its name (store:DIR.NAME, ndjson:FILE with .NAME before the extension, null:); replaces -h3.resolution, -kring.rings, -windows.minutes and -windows.aggregate")
	fs.Var(&productsFlag{c: c, fs: fs}, "products", "the products file (uuid,name per line, or JSON; the file -serve.product-names takes): only its product types count, any other is rejected as unknown_product, so junk product UUIDs cannot take the 256 product codes from real ones; its names name the products on the page unless -serve.product-names is given (default: every product type)")
	fs.IntVar(&c.Def.Resolution, "h3.resolution", c.Def.Resolution, "H3 resolution of the hexagons, 0..15 (8: ~0.74 km² cells)")
	fs.Var(intList{&c.Def.Rings}, "kring.rings", "k-ring radii K in output order, each 0..30, at most 16")
	fs.Var(intList{&c.Def.Windows}, "windows.minutes", "sliding-window lengths W in minutes in output order, each 1..60, at most 16")
	fs.StringVar(&c.Def.Aggregate, "windows.aggregate", feature.DefaultAggregate, aggregateHelp())
	fs.DurationVar(&c.Lateness, "windows.lateness", c.Lateness, "how far behind event time an event may be and still count; minute m closes when event time - lateness >= end of m")
	fs.DurationVar(&c.IdleTimeout, "windows.idle-timeout", c.IdleTimeout, "with no input for this long, event time advances with the clock so minutes still close")
	fs.DurationVar(&c.Future.MaxSkew, "windows.max-future-skew", c.Future.MaxSkew, "an event with ts more than this ahead of the machine's clock is rejected as future, on every source (0: off, and event time is then the largest ts of all)")
	fs.IntVar(&c.Future.ConfirmRiders, "windows.future-confirm-riders", c.Future.ConfirmRiders, "K: event time is the K-th largest of distinct riders' latest ts, so fewer than K riders cannot close a minute or make another rider's event late (1..1024)")
	fs.IntVar(&c.Future.ProductReserve, "windows.product-reserve", c.Future.ProductReserve, "product codes (256, one byte) kept for confirmed products: once fewer are free, a new product type counts only after K riders (-windows.future-confirm-riders) used it, its events waiting until their minute closes, then rejected as unconfirmed_product; so junk product UUIDs cannot take every code (0: none; 256: every new product waits)")
	fs.IntVar(&c.Parallelism, "parallelism", c.Parallelism, "cores to use (GOMAXPROCS) and parse and H3 workers (default: number of CPUs); dedup and ordering stay sequential")
	fs.IntVar(&c.ChunkBytes, "source.chunk-bytes", c.ChunkBytes, "input bytes per unit of parallel work")
	fs.IntVar(&c.MaxLineBytes, "source.max-line-bytes", c.MaxLineBytes, "longest accepted input line; longer lines are rejected (line_too_long)")
	fs.IntVar(&c.BatchRows, "sink.write-rows", c.BatchRows, "rows the engine hands to the sink per call (the Cassandra sink batches further: -sink.batch-rows)")
	fs.IntVar(&c.Dedup.InitialKeys, "dedup.initial-keys", c.Dedup.InitialKeys, "initial size of a minute's dedup table (grows as needed)")
	fs.IntVar(&c.Kring.MaxCachedDisks, "kring.max-cached-disks", c.Kring.MaxCachedDisks, "bound on cached k-ring disks (~5 KB each at k=20)")
	fs.Int64Var(&c.MaxMemory, "max-memory", c.MaxMemory, "bound in bytes on the engine's close state (windows, cell index, disks: the state_bytes metric); past it, events in places not held yet are shed at their minute's close and counted as over budget. 0: no bound. Default: a third of this machine's memory")
	fs.IntVar(&c.Kring.SparseBelow, "kring.sparse-below", c.Kring.SparseBelow, "a source whose region (an H3 parent about a disk wide) and its six neighbours hold fewer sources of its product in the window is kept per source, not per target (memory of isolated riders and small towns); 0: never. Rows are the same")
	return defs
}

// helpOut, when set, receives -h output (demandpipe help CMD: stdout).
var helpOut io.Writer

// parse parses args, printing help that teaches on -h.
func parse(fs *flag.FlagSet, args []string, synopsis, more string) error {
	if helpOut != nil {
		fs.SetOutput(helpOut)
	}
	asked := false // -h, -help or --help: the whole list of flags
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" || a == "--h" {
			asked = true
		}
	}
	fs.Usage = func() {
		out := fs.Output()
		if !asked {
			// A mistake: the error (printed by the flag package), a
			// suggestion and where the list is, not 200 lines of help.
			return
		}
		fmt.Fprintf(out, "%s\n\nFlags (default in parentheses), by stage in the order data meets them:\n", synopsis)
		for _, g := range flagGroups(fs) {
			if g.title != "" {
				fmt.Fprintf(out, "\n %s\n", g.title)
			}
			for _, f := range g.flags {
				def := f.DefValue
				if def == "" {
					def = `""`
				}
				fmt.Fprintf(out, "  -%s (%s)\n      %s\n", f.Name, def, strings.ReplaceAll(f.Usage, "\n", "\n      "))
			}
		}
		if more != "" {
			fmt.Fprintf(out, "\n%s\n", more)
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		if name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -"); ok {
			if near := nearestFlags(fs, name); len(near) > 0 {
				fmt.Fprintf(fs.Output(), "did you mean -%s?\n", strings.Join(near, " or -"))
			}
		}
		fmt.Fprintf(fs.Output(), "demandpipe help %s lists every flag with its default\n", fs.Name())
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %q (flags go as -name=value)\n", fs.Args())
		return errUsage
	}
	return nil
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// stages orders flag groups as the data meets them: a flag "x" or "x.y"
// belongs to group x.
var stages = []struct{ key, title string }{
	{"source", "source: where events come from"},
	{"sink", "sink: where rows go"},
	{"h3", "h3: locating events"},
	{"dedup", "dedup: one event per rider, product and minute"},
	{"kring", "kring: smoothing over rings"},
	{"windows", "windows: sliding windows, event time by riders and lateness"},
	{"store", "store: the embedded feature store (-sink=store:DIR)"},
	{"serve", "serve: the HTTP API and the page"},
	{"scaleout", "scaleout: the dedup and aggregate roles over Pulsar (-role; pipeline/SCALEOUT.md)"},
}

type flagGroup struct {
	title string
	flags []*flag.Flag
}

// flagGroups splits fs's flags into the stages, then the rest.
func flagGroups(fs *flag.FlagSet) []flagGroup {
	groups := make([]flagGroup, len(stages)+1)
	for i, st := range stages {
		groups[i].title = st.title
	}
	groups[len(stages)].title = "run"
	fs.VisitAll(func(f *flag.Flag) {
		key, _, _ := strings.Cut(f.Name, ".")
		for i, st := range stages {
			if st.key == key {
				groups[i].flags = append(groups[i].flags, f)
				return
			}
		}
		groups[len(stages)].flags = append(groups[len(stages)].flags, f)
	})
	out := groups[:0]
	for _, g := range groups {
		if len(g.flags) > 0 {
			out = append(out, g)
		}
	}
	if len(out) == 1 { // one group: no headings
		out[0].title = ""
	}
	return out
}

// nearestFlags returns the flags of fs closest to the misspelled name: at
// most 2 edits away, or, failing that, those that contain it or that it
// contains ("writers" for "sink.writers").
func nearestFlags(fs *flag.FlagSet, name string) []string {
	name = strings.TrimPrefix(strings.SplitN(name, "=", 2)[0], "-")
	best, bestD := []string(nil), 3
	var contains []string
	fs.VisitAll(func(f *flag.Flag) {
		d := editDistance(name, f.Name)
		switch {
		case d < bestD:
			best, bestD = []string{f.Name}, d
		case d == bestD:
			best = append(best, f.Name)
		}
		if len(name) >= 4 && (strings.Contains(f.Name, name) || strings.Contains(name, f.Name)) {
			contains = append(contains, f.Name)
		}
	})
	if len(best) == 0 && len(contains) <= 3 {
		return contains
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// aggregateHelp lists the aggregates with what a feature means under each.
func aggregateHelp() string {
	var b strings.Builder
	b.WriteString("how a window folds its minutes (docs/CONTRACT.md rule 4a):")
	for i, a := range feature.Aggregates() {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(" " + a.Name + ", " + a.Doc)
	}
	return b.String()
}
