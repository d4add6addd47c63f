// Package docs is the documentation's test (issue 24, point 6): every shell
// command in the repository's Markdown runs, as the docs show it, and its
// result is checked, or the table below says why it cannot run here and
// what is checked instead.
//
// The rule for fences: every fenced block carries a language tag. `sh`
// blocks hold commands, and this test runs them; `text` holds output; go,
// yaml, sql and the like are not shell. An untagged fence, or a shell block
// tagged other than sh, fails TestDocFencesTagged.
//
// A command is a line of an sh block, `\` continuations joined, its comment
// stripped (a # that starts a word outside quotes) and blanks outside quotes
// collapsed. Each must have an entry in docCommands keyed by its file and
// that text: one without fails TestDocCommandsListed, saying to add it, and
// an entry whose command the docs no longer hold fails it as stale.
//
// TestDocCommands runs each sh block's commands in order in one temporary
// directory, with `demandpipe` on PATH and as ./demandpipe: the binary built
// once by the test (go build -trimpath -ldflags=-w, without -race, with the
// test doubles' commands pulsartestd and cqltestd). An entry names every
// change it makes to a command: placeholders (UUID, DIR, …), fixed ports
// moved to free ones, servers named in the docs replaced by the project's
// test doubles, and in the short form (the default; DEMANDPIPE_TEST_LONG=1
// runs the sizes as written) smaller sizes. Commands that run until stopped
// are started, waited on for the state they promise, stopped with SIGINT
// and expected to exit 0. A command independent of its block's others (a
// tune sweep) may run beside them, in a directory of its own (apart). The
// blocks overlap; the short form takes ~15 s on 2 cores.
package docs

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/gen"
	"github.com/demandpipe/demandpipe/internal/cqltest"
	"github.com/demandpipe/demandpipe/internal/pulsartest"
	"github.com/demandpipe/demandpipe/internal/syncbuf"
	"github.com/demandpipe/demandpipe/internal/testcert"
	"github.com/demandpipe/demandpipe/internal/testsize"
)

// repoRoot is the repository, whose Markdown is read and whose commands
// are built.
const repoRoot = ".."

// TestDocFencesTagged: every fence has a language tag, and shell is tagged
// sh, so that "every command in an sh block runs" means every command.
func TestDocFencesTagged(t *testing.T) {
	t.Parallel()
	for _, f := range readDocs(t) {
		switch {
		case f.tag == "":
			t.Errorf("%s:%d: a fence without a language tag: tag commands sh (docs/commands_test.go runs them) and output text", f.file, f.line)
		case shellAliases[f.tag]:
			t.Errorf("%s:%d: a fence tagged %q: tag shell sh, so that docs/commands_test.go runs it", f.file, f.line, f.tag)
		}
	}
}

// shellAliases are the tags a shell block might carry instead of sh.
var shellAliases = map[string]bool{
	"bash": true, "shell": true, "console": true, "zsh": true,
	"shell-session": true, "sh-session": true, "bash-session": true, "shellsession": true,
}

// TestDocCommandsListed: every command of an sh block has an entry, and
// every entry a command.
func TestDocCommandsListed(t *testing.T) {
	t.Parallel()
	inDocs := map[string]bool{}
	for _, b := range shBlocks(readDocs(t)) {
		for _, c := range b.cmds {
			inDocs[key(c.file, c.text)] = true
			if _, ok := table()[key(c.file, c.text)]; !ok {
				t.Errorf("%s:%d: command not in docs/commands_test.go's table: add an entry saying how it runs:\n\t{file: %q, cmd: %q, ...},",
					c.file, c.line, c.file, c.text)
			}
		}
	}
	seen := map[string]bool{}
	for _, e := range docCommands {
		k := key(e.file, e.cmd)
		if seen[k] {
			t.Errorf("docs/commands_test.go: two entries for %s: %s", e.file, e.cmd)
		}
		seen[k] = true
		if !inDocs[k] {
			t.Errorf("docs/commands_test.go: stale entry: %s holds no sh command %q any more: remove or update the entry", e.file, e.cmd)
		}
		if strings.HasSuffix(e.cmd, " &") && e.mode != background {
			t.Errorf("%s: %s: a command ending in & runs in the background (mode background)", e.file, e.cmd)
		}
		if e.apart && (e.mode != once || e.sets != "" || len(e.needs) > 0) {
			t.Errorf("%s: %s: a command run apart runs to its end and shares nothing with the block's others", e.file, e.cmd)
		}
		if e.mode != once && e.ready == nil && e.skip == "" {
			t.Errorf("%s: %s: a command that runs until stopped needs ready: the state it promises, waited for", e.file, e.cmd)
		}
	}
}

// TestDocCommands runs every sh block, each in its own directory.
func TestDocCommands(t *testing.T) {
	t.Parallel()
	docs := readDocs(t)
	bin := binaries(t)
	start := time.Now()
	t.Cleanup(func() {
		t.Logf("the blocks took %v (long form: %v)", time.Since(start).Round(time.Millisecond), testsize.Long())
	})
	// In the short form the blocks overlap: most of a block's time is
	// waiting (for a server to answer, a minute to close, a sweep's
	// service time). t.Parallel would run two at a time on two cores
	// (-parallel is GOMAXPROCS), so they start together here, each a
	// subtest. The long form's blocks are CPU-bound (and a full-size tune
	// holds 2.5 GB): two at a time.
	blocks := shBlocks(docs)
	slots := make(chan struct{}, testsize.Pick(len(blocks), 2))
	var wg sync.WaitGroup
	for _, b := range blocks {
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			t.Run(fmt.Sprintf("%s:%d", b.file, b.line), func(t *testing.T) { runBlock(t, bin, docs, b) })
		})
	}
	wg.Wait()
}

// mode is how a command runs.
type mode int

const (
	// once runs to its end.
	once mode = iota
	// background keeps running while the block's next commands run (a
	// trailing &, or a server they need, typed in another terminal); it
	// is stopped with SIGINT at the block's end.
	background
	// bounded runs until stopped, in the foreground: started, waited on
	// for ready, stopped with SIGINT.
	bounded
)

// entry says how one documented command runs. Substitutions are pairs
// (old, new) replaced in the command, new expanded by the block: {port:N}
// is a free port standing for the documented port N (the same one for the
// whole block), {pulsar} and {cql} the address of an in-process Pulsar or
// CQL test double, {uuid} a product UUID of the generated city, {repo} the
// repository, {bin} the directory of the test's binaries, {work} the
// block's directory.
type entry struct {
	file, cmd string
	subst     []string // replaced in both forms
	short     []string // replaced in the short form only: sizes
	// add is appended in both forms: a default the docs leave implicit,
	// moved (the fixed port of -serve); shortAdd in the short form only:
	// sizes.
	add, shortAdd string
	needs         []string // fixtures the block provides before the command (fixtures)
	mode          mode
	// apart: independent of the block's other commands; in the short
	// form it runs beside them, in a directory of its own.
	apart  bool
	inRepo bool   // runs in the repository: its paths are relative to the root
	sets   string // a shell variable the command sets, read by the block's later commands
	// ready is the state a background or bounded command promises; it
	// is polled until nil.
	ready func(b *block, p *proc) error
	// check reads the command's result: stdout, stderr, exit status
	// (0 unless check says otherwise) and what it left in the block.
	check func(b *block, r result) error
	// skip: why the command cannot run here; weak is then what is checked
	// instead (may be nil). shortSkip: the same, for the short form only
	// (the long form runs it).
	skip, shortSkip string
	weak            func(b *block) error
	// variants: a synopsis with optional parts ([-format=csv]) runs once
	// per variant, each a list of pairs replaced after subst.
	variants [][]string
	// prepare runs before the command (removing what the command writes
	// itself).
	prepare func(b *block) error
}

var (
	tableOnce sync.Once
	tableMap  map[string]*entry
)

// table is docCommands by key.
func table() map[string]*entry {
	tableOnce.Do(func() {
		tableMap = map[string]*entry{}
		for i := range docCommands {
			tableMap[key(docCommands[i].file, docCommands[i].cmd)] = &docCommands[i]
		}
	})
	return tableMap
}

func key(file, cmd string) string { return file + "\x00" + cmd }

// Sizes of the short form.
const (
	shortEvents = "20000"           // gen -events 2000000: 12 s of event time, not 20 minutes
	shortBench  = "10000 -rounds 1" // bench: one round of 10,000 events, not 3 of 2,000,000
	// shortGen is the live generator, sped up, for commands that wait for
	// a closed minute: 60x makes the first close at most 1.5 s after the
	// start (90 s at 1x), at 2,000 events a minute of event time (2,000 a
	// second of wall time).
	shortGen = " -source=gen:speed=60,rate=2000"
	// shortTune bounds each point of a tune sweep (~0.3 s at 2 ms, ~0.6 s
	// at 20 ms, not ~5 s: two 50 ms windows are "steady" within 99%), its
	// events (2,000, not 2,000,000) and its rings (k to 1: the engine's
	// CPU is not under test); the grid stays the documented one. The
	// recommendation is not under test at this size
	// (TestServiceTimeChangesRecommendation is), so a loaded machine's
	// p99 cannot fail the sweep.
	shortTune = " -tune.events=2000 -tune.rate=2000 -tune.window=50ms -tune.warmup-windows=0 -tune.steady-windows=2" +
		" -tune.tolerance=0.99 -tune.max-point-time=1s -tune.max-p99=1m -kring.rings=0,1 -windows.minutes=1,2"
)

// shortExtra is bench/cassandra-sink.sh's EXTRA (more run flags) in the
// short form: rings to 1.
const shortExtra = "-kring.rings=0,1"

// smallDef is the definition of the fixtures' stores whose rows' width is
// not under test: 3 rings by 2 windows, 6 features.
const smallDef = "-kring.rings=0,1,2 -windows.minutes=1,2"

// serveFree is -serve's default (127.0.0.1:8080) made explicit on a free
// port: a run into a store serves while it runs.
const serveFree = " -serve=127.0.0.1:{port:8080}"

// whyGoBuild is why the docs' go build lines do not run in the short form.
const whyGoBuild = "satisfied by the test's own build (go build -trimpath of the same package, on PATH and as ./demandpipe); " +
	"without -trimpath it compiles every package again, a cold build in CI, where the rest is built with -race. " +
	"The long form runs it, into the block's directory"

// docCommands is every command of the docs' sh blocks and how it runs.
var docCommands = []entry{
	// README.md: the two commands. go run is the test's build of the
	// same package: go run compiles without -trimpath (cold in CI) and
	// runs in the checkout, where ./demandpipe-data would land.
	{file: "README.md", cmd: "go run ./cmd/demandpipe run",
		subst: []string{"go run ./cmd/demandpipe", "demandpipe"}, add: serveFree, mode: bounded,
		ready: func(b *block, p *proc) error {
			if testsize.Long() {
				// "The first minute appears about 90 s after the start."
				return minutesServed(b.url("8080"), 1)
			}
			// Short form: the page answers and events flow; Ctrl-C then
			// closes the minute seen (checked below).
			if err := httpOK(b.url("8080") + "/"); err != nil {
				return err
			}
			return metricAbove(b.url("8080"), "demandpipe_pipeline_lines_total", 0)
		},
		check: func(b *block, r result) error {
			if err := summaryAtLeast(r.stderr, "minutes closed", 1); err != nil {
				return fmt.Errorf("Ctrl-C closes every minute seen: %w", err)
			}
			return isDir(b.path("demandpipe-data"))
		}},
	{file: "README.md", cmd: "go test -race -timeout 8m ./...",
		skip: "here: the whole suite, this test among its packages (it would run itself), ~4.8 minutes: .ci/run runs it in CI",
		weak: func(b *block) error { return ciRuns("go test -race -timeout 8m ./...") }},

	// README.md: quick start.
	{file: "README.md", cmd: "go build -o demandpipe ./cmd/demandpipe",
		shortSkip: whyGoBuild, weak: binaryRuns, inRepo: true,
		subst:   []string{"-o demandpipe", "-o {work}/demandpipe"},
		prepare: func(b *block) error { return os.Remove(b.path("demandpipe")) },
		check:   func(b *block, r result) error { return binaryRuns(b) }},
	{file: "README.md", cmd: "./demandpipe gen -o events.ndjson.zst -events 2000000",
		short: []string{"-events 2000000", "-events " + shortEvents},
		check: genSpan}, // "a synthetic city, 20 minutes"
	{file: "README.md", cmd: "./demandpipe run -source=file:events.ndjson.zst -sink=store:./city -serve=",
		check: func(b *block, r result) error { return summaryAtLeast(r.stderr, "minutes closed", 1) }},
	{file: "README.md", cmd: "./demandpipe serve -store=./city -addr=127.0.0.1:8080 &",
		subst: []string{"127.0.0.1:8080", "127.0.0.1:{port:8080}"}, mode: background,
		ready: func(b *block, p *proc) error { return minutesServed(b.url("8080"), 1) }},
	{file: "README.md", cmd: "curl '127.0.0.1:8080/v1/features?lat=40.758&lng=-73.9855&product=16c2d89c-4a7e-495d-9c10-b4026c87e1da'",
		subst: []string{"127.0.0.1:8080", "127.0.0.1:{port:8080}"},
		check: func(b *block, r result) error {
			_, err := featureAnswer([]byte(r.stdout), "16c2d89c-4a7e-495d-9c10-b4026c87e1da", 54, true)
			return err
		}},
	{file: "README.md", cmd: "./demandpipe help",
		check: func(b *block, r result) error {
			return contains(r.stdout, "Usage:", "demandpipe run", "demandpipe serve", "demandpipe help  COMMAND")
		}},

	// README.md: a longer tour.
	{file: "README.md", cmd: "./demandpipe gen -o events.ndjson.zst -events 2000000 -malformed 0.001 -late 0.001",
		short: []string{"-events 2000000", "-events " + shortEvents},
		check: genSpan},
	{file: "README.md", cmd: "./demandpipe run -source=file:events.ndjson.zst -sink=ndjson:rows.ndjson -rejects=rejects.ndjson",
		check: func(b *block, r result) error {
			// The summary the README shows, with its rejected and late lines.
			for _, what := range []string{"lines read", "rejected", "late", "duplicates", "counted", "minutes closed", "rows written"} {
				if err := summaryAtLeast(r.stderr, what, 1); err != nil {
					return err
				}
			}
			return fileLines(b.path("rejects.ndjson"), 1, `"reason":`)
		}},
	{file: "README.md", cmd: "head -c 400 rows.ndjson",
		check: func(b *block, r result) error {
			if len(r.stdout) != 400 || !strings.HasPrefix(r.stdout, `{"h3":"`) || !strings.Contains(r.stdout, `"features":[`) {
				return fmt.Errorf("want the first 400 bytes of a row, got %q", r.stdout)
			}
			return nil
		}},
	{file: "README.md", cmd: "./demandpipe serve -store=./city -addr=127.0.0.1:8080",
		subst: []string{"127.0.0.1:8080", "127.0.0.1:{port:8080}"}, mode: bounded,
		ready: func(b *block, p *proc) error { return minutesServed(b.url("8080"), 1) }},
	{file: "README.md", cmd: "./demandpipe gen -from-csv ../shared/data/uber-nyc-pickups-2014-04-02-to-30.csv.gz -o nyc.ndjson",
		subst: []string{"../shared/data/", "{repo}/../shared/data/"},
		prepare: func(b *block) error {
			if _, err := os.Stat(filepath.Join(repoRoot, "../shared/data/uber-nyc-pickups-2014-04-02-to-30.csv.gz")); errors.Is(err, fs.ErrNotExist) {
				return errSkip{"the shared NYC data is not beside the repository"}
			}
			return nil
		},
		check: func(b *block, r result) error { return fileLines(b.path("nyc.ndjson"), 90000, `"rider_id":"nyc-`) }},
	{file: "README.md", cmd: "./demandpipe bench -events 2000000 -compare 1,2",
		short: []string{"-events 2000000", "-events " + shortBench},
		check: func(b *block, r result) error {
			return contains(r.stdout, "parallelism=1: median", "parallelism=2: median")
		}},
	{file: "README.md", cmd: "./demandpipe publish -to=pulsar://127.0.0.1:6650/rides events.ndjson.zst",
		subst: []string{"127.0.0.1:6650", "{pulsar}"}, // onto the in-process Pulsar double
		check: func(b *block, r result) error {
			n := testsize.Pick(20000, 2000000)
			if got := b.pulsar().Stats().MessagesIn["persistent://public/default/rides"]; got != int64(n) {
				return fmt.Errorf("the double holds %d messages on rides, want %d", got, n)
			}
			return contains(r.stderr, fmt.Sprintf("published %d messages", n))
		}},
	{file: "README.md", cmd: "./demandpipe help run",
		check: func(b *block, r result) error {
			return contains(r.stdout, "Flags (default in parentheses)", "-source (gen:)", "-sink.writers (", "-serve (127.0.0.1:8080)")
		}},

	// README.md: several feature definitions in one pass.
	{file: "README.md", cmd: "demandpipe run -definitions=defs.yaml -sink=store:features",
		needs: []string{"defs.yaml"}, add: serveFree, shortAdd: shortGen, mode: background,
		ready: definitionsServed,
		check: func(b *block, r result) error {
			// "default -> features/, fine -> features.fine/"
			return errors.Join(isDir(b.path("features")), isDir(b.path("features.fine")), contains(r.stderr, "definition fine"))
		}},
	{file: "README.md", cmd: "curl 'localhost:8080/v1/features?lat=40.75&lng=-73.98&product=UUID&definition=fine'",
		subst: []string{"localhost:8080", "localhost:{port:8080}", "UUID", "{uuid}"},
		check: fineAnswer},
	{file: "README.md", cmd: "demandpipe definitions promote -store=features fine",
		check: unnamedGetsFine},

	// docs/CASSANDRA.md
	{file: "docs/CASSANDRA.md", cmd: "demandpipe schema cassandra -url 'cassandra://10.0.0.1/demandpipe?ttl=2h&dc=dc1&rf=3'",
		check: func(b *block, r result) error {
			if err := contains(r.stdout, "CREATE KEYSPACE IF NOT EXISTS demandpipe WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 3}", "default_time_to_live = 7200", "CREATE TABLE IF NOT EXISTS demandpipe.features"); err != nil {
				return err
			}
			// "the CQL, to review and apply": applied to the CQL double
			// the next command writes to.
			return applyCQL(b.cql(), r.stdout)
		}},
	{file: "docs/CASSANDRA.md", cmd: "DEMANDPIPE_CASSANDRA_USERNAME=dp DEMANDPIPE_CASSANDRA_PASSWORD=… demandpipe run -sink='cassandra://10.0.0.1,10.0.0.2/demandpipe?dc=dc1&consistency=LOCAL_QUORUM' -sink.writers=16 -sink.batch-rows=50",
		// The cluster is the in-process CQL double (data centre dc1, three
		// live nodes: LOCAL_QUORUM at rf=3 needs two), holding the schema
		// the command before applied. It has no authentication: the
		// credentials are read and sent to no one.
		subst:    []string{"10.0.0.1,10.0.0.2", "{cql}", "…", "s3cret-from-the-vault"},
		shortAdd: shortGen, mode: bounded,
		ready: func(b *block, p *proc) error {
			n, err := b.cql().Rows("demandpipe", "minutes")
			if err == nil && n == 0 {
				err = errors.New("no closed minute in demandpipe.minutes yet")
			}
			return err
		},
		check: func(b *block, r result) error {
			n, err := b.cql().Rows("demandpipe", "features")
			if err == nil && n == 0 {
				err = errors.New("no rows in demandpipe.features")
			}
			return errors.Join(err, summaryAtLeast(r.stderr, "rows written", 1))
		}},

	// docs/DEFINITIONS.md: one pass.
	{file: "docs/DEFINITIONS.md", cmd: "demandpipe run -definitions=defs.yaml -source=file:events.ndjson -sink=store:features -serve=",
		needs: []string{"defs.yaml", "events.ndjson"},
		check: func(b *block, r result) error {
			// "default -> features/ fine -> features.fine/"
			return errors.Join(isDir(b.path("features")), isDir(b.path("features.fine")), summaryAtLeast(r.stderr, "definition fine", 1))
		}},
	{file: "docs/DEFINITIONS.md", cmd: "demandpipe run -definitions=defs.yaml -source=file:events.ndjson -sink=ndjson:rows.ndjson",
		check: func(b *block, r result) error {
			// "default -> rows.ndjson fine -> rows.fine.ndjson"
			return errors.Join(rowsOfWidth(b.path("rows.ndjson"), 54), rowsOfWidth(b.path("rows.fine.ndjson"), 9))
		}},
	{file: "docs/DEFINITIONS.md", cmd: "demandpipe bench -definitions=defs.yaml",
		shortAdd: " -events " + shortBench,
		check: func(b *block, r result) error {
			return errors.Join(contains(r.stderr, "default: res=8", "fine: res=9"), contains(r.stdout, "median"))
		}},

	// docs/DEFINITIONS.md: serving and promoting.
	{file: "docs/DEFINITIONS.md", cmd: "curl 'localhost:8080/v1/definitions'",
		needs: []string{"defs.yaml", "events.ndjson", "definitions store served"},
		subst: []string{"localhost:8080", "localhost:{port:8080}"},
		check: func(b *block, r result) error {
			var d definitionsList
			if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
				return fmt.Errorf("%v: %s", err, r.stdout)
			}
			if len(d.Definitions) != 2 || d.Definitions[0].Name != "default" || d.Definitions[1].Name != "fine" || d.Active != "default" ||
				d.Definitions[1].Status == "" || d.Definitions[1].FirstMinute == nil || d.Definitions[1].LastMinute == nil {
				return fmt.Errorf("want default (active) and fine with their status and minutes: %s", r.stdout)
			}
			return nil
		}},
	{file: "docs/DEFINITIONS.md", cmd: "curl 'localhost:8080/v1/features?lat=40.75&lng=-73.98&product=UUID&definition=fine'",
		subst: []string{"localhost:8080", "localhost:{port:8080}", "UUID", "{uuid}"},
		check: fineAnswer},
	{file: "docs/DEFINITIONS.md", cmd: `curl -d '{"product":"UUID","points":[{"lat":40.75,"lng":-73.98}],"definition":"fine"}' localhost:8080/v1/features:batch`,
		subst: []string{"localhost:8080", "localhost:{port:8080}", "UUID", "{uuid}"},
		check: func(b *block, r result) error {
			var a struct{ Rows []json.RawMessage }
			if err := json.Unmarshal([]byte(r.stdout), &a); err != nil || len(a.Rows) != 1 {
				return fmt.Errorf("want a batch answer of one row (%v): %s", err, r.stdout)
			}
			_, err := featureAnswer(a.Rows[0], b.uuid(), 9, false)
			return err
		}},
	{file: "docs/DEFINITIONS.md", cmd: "demandpipe definitions list -store=DIR",
		subst: []string{"-store=DIR", "-store=features"},
		check: func(b *block, r result) error {
			return contains(r.stdout, "default      features  (active since", "fine         features.fine")
		}},
	{file: "docs/DEFINITIONS.md", cmd: "demandpipe definitions promote -store=DIR fine",
		subst: []string{"-store=DIR", "-store=features"},
		check: unnamedGetsFine},

	// docs/DEFINITIONS.md: point-in-time history. The synopsis's optional
	// parts run as three commands: without them, with -format=csv, with
	// -definitions=defs.yaml -definition=fine.
	{file: "docs/DEFINITIONS.md", cmd: "demandpipe history -source=file:events.ndjson.zst -at=queries.csv -o answers.ndjson [-format=csv] [-definitions=defs.yaml -definition=fine]",
		needs: []string{"defs.yaml", "events.ndjson.zst", "queries.csv"},
		variants: [][]string{
			{" [-format=csv]", "", " [-definitions=defs.yaml -definition=fine]", ""},
			{"[-format=csv]", "-format=csv", " [-definitions=defs.yaml -definition=fine]", ""},
			{" [-format=csv]", "", "[-definitions=defs.yaml -definition=fine]", "-definitions=defs.yaml -definition=fine"},
		},
		check: historyAnswers},

	// docs/PULSAR.md: the double, a file onto a topic, a run from it.
	{file: "docs/PULSAR.md", cmd: "go run ./internal/pulsartest/cmd/pulsartestd -addr 127.0.0.1:6650 &",
		// The test's build of the same command (go run: without -trimpath,
		// cold in CI); the process, as documented.
		subst: []string{"go run ./internal/pulsartest/cmd/pulsartestd", "pulsartestd", "127.0.0.1:6650", "127.0.0.1:{port:6650}"},
		mode:  background,
		ready: func(b *block, p *proc) error {
			return contains(p.stderr.String(), "serving pulsar://127.0.0.1:"+b.port("6650"))
		}},
	{file: "docs/PULSAR.md", cmd: "demandpipe gen -o events.ndjson.zst -events 200000",
		short: []string{"-events 200000", "-events 100000"}, check: genSpan},
	{file: "docs/PULSAR.md", cmd: "demandpipe publish -to=pulsar://127.0.0.1:6650/persistent://public/default/rides events.ndjson.zst",
		subst: []string{"127.0.0.1:6650", "127.0.0.1:{port:6650}"},
		check: func(b *block, r result) error {
			return contains(r.stderr, fmt.Sprintf("published %d messages", testsize.Pick(100000, 200000)))
		}},
	{file: "docs/PULSAR.md", cmd: "demandpipe run -source='pulsar://127.0.0.1:6650/persistent://public/default/rides?subscription=demandpipe' -sink=store:features",
		subst: []string{"127.0.0.1:6650", "127.0.0.1:{port:6650}"}, add: serveFree, mode: bounded,
		ready: func(b *block, p *proc) error { return minutesServed(b.url("8080"), 1) },
		check: func(b *block, r result) error {
			// "SIGINT/SIGTERM stop a Pulsar run without closing its open
			// minutes; it exits 0."
			return contains(r.stderr, "stopped              without closing the open minutes")
		}},

	// docs/PULSAR.md: the scale-out roles, over the in-process double
	// holding the raw topic, published with -batch-by-key as the text
	// says. -scaleout.url's default, pulsar://127.0.0.1:6650, is made
	// explicit at the double's address.
	{file: "docs/PULSAR.md", cmd: "demandpipe run -role=aggregate -scaleout.topic=persistent://public/default/counted -scaleout.ranges=0-32767 -sink=store:a &",
		needs: []string{"rides"}, add: " -scaleout.url=pulsar://{pulsar}", mode: background,
		ready: logged("run: aggregate role"), check: aggregateWrote},
	{file: "docs/PULSAR.md", cmd: "demandpipe run -role=aggregate -scaleout.topic=persistent://public/default/counted -scaleout.ranges=32768-65535 -sink=store:b &",
		add: " -scaleout.url=pulsar://{pulsar}", mode: background,
		ready: logged("run: aggregate role"), check: aggregateWrote},
	{file: "docs/PULSAR.md", cmd: "demandpipe run -role=dedup -scaleout.topic=persistent://public/default/counted -source='pulsar://localhost:6650/rides?subscription=dedup&type=key_shared&key-ranges=0-65535'",
		subst: []string{"localhost:6650", "{pulsar}"}, add: " -scaleout.url=pulsar://{pulsar}", mode: bounded,
		ready: func(b *block, p *proc) error {
			// An aggregate process acknowledges the counted events of a
			// minute once it committed the minute; the subscription's
			// mark-delete position passes entry 100 (of ~180 for 10:00,
			// ~360 in all) once both did: the entries of the two ranges
			// interleave.
			st, ok := b.pulsar().Subscription("persistent://public/default/counted", "demandpipe-aggregate")
			if !ok || st.MarkDelete < 100 {
				return fmt.Errorf("counted events acknowledged through entry %d", st.MarkDelete)
			}
			return nil
		}},

	// docs/READING.md: the API, against a served store.
	{file: "docs/READING.md", cmd: `P=$(curl -s 127.0.0.1:8080/v1/products | python3 -c 'import json,sys; print(json.load(sys.stdin)["products"][0])')`,
		needs: []string{"store served"}, subst: []string{"127.0.0.1:8080", "127.0.0.1:{port:8080}"}, sets: "P",
		check: func(b *block, r result) error {
			if !slices.Contains(products(), b.vars["P"]) {
				return fmt.Errorf("P=%q: not a product of the generated city %q", b.vars["P"], products())
			}
			return nil
		}},
	{file: "docs/READING.md", cmd: `curl -s "127.0.0.1:8080/v1/features?lat=40.758&lng=-73.9855&product=$P"`,
		subst: []string{"127.0.0.1:8080", "127.0.0.1:{port:8080}"},
		check: func(b *block, r result) error {
			_, err := featureAnswer([]byte(r.stdout), b.vars["P"], 6, false)
			return err
		}},
	{file: "docs/READING.md", cmd: `curl -s "127.0.0.1:8080/v1/features?h3=882a100d65fffff&product=$P&minute=2024-06-01T10:07:00Z&avg=true"`,
		subst: []string{"127.0.0.1:8080", "127.0.0.1:{port:8080}"},
		check: func(b *block, r result) error {
			a, err := featureAnswer([]byte(r.stdout), b.vars["P"], 6, false)
			if err == nil && (a.H3 != "882a100d65fffff" || a.Minute != "2024-06-01T10:07:00Z" || a.Features[0].Avg == nil) {
				err = fmt.Errorf("want the cell, the minute asked and avg values: %s", r.stdout)
			}
			return err
		}},
	{file: "docs/READING.md", cmd: `curl -s -XPOST 127.0.0.1:8080/v1/features:batch -d '{"product":"'$P'","cells":["882a100d65fffff","882a100d67fffff"]}'`,
		subst: []string{"127.0.0.1:8080", "127.0.0.1:{port:8080}"},
		check: func(b *block, r result) error {
			var a struct{ Rows []json.RawMessage }
			if err := json.Unmarshal([]byte(r.stdout), &a); err != nil || len(a.Rows) != 2 {
				return fmt.Errorf("want a batch answer of two rows (%v): %s", err, r.stdout)
			}
			for i, cell := range []string{"882a100d65fffff", "882a100d67fffff"} {
				row, err := featureAnswer(a.Rows[i], b.vars["P"], 6, false)
				if err == nil && row.H3 != cell {
					err = fmt.Errorf("row %d is %s, want %s", i, row.H3, cell)
				}
				if err != nil {
					return err
				}
			}
			return nil
		}},
	{file: "docs/READING.md", cmd: "curl -s 127.0.0.1:8080/v1/minutes",
		subst: []string{"127.0.0.1:8080", "127.0.0.1:{port:8080}"},
		check: func(b *block, r result) error { return minutesLatestFirst([]byte(r.stdout), 2) }},

	// docs/READING.md: securing the endpoints. The server is demandpipe
	// serve with a certificate for features.internal, its own CA (ca.pem),
	// and a token file; curl resolves the name to it (--resolve, added).
	{file: "docs/READING.md", cmd: `curl --cacert ca.pem -H "Authorization: Bearer $(cat token)" https://features.internal:8443/v1/minutes`,
		needs: []string{"store served over TLS"},
		subst: []string{"https://features.internal:8443", "--resolve features.internal:{port:8443}:127.0.0.1 https://features.internal:{port:8443}"},
		check: func(b *block, r result) error {
			if err := minutesLatestFirst([]byte(r.stdout), 1); err != nil {
				return err
			}
			// The token is what let it in: without it, 401.
			return tlsWithoutToken(b)
		}},

	// docs/TESTING.md
	{file: "docs/TESTING.md", cmd: "DEMANDPIPE_TEST_LONG=1 go test -race -timeout 60m ./...",
		skip: "here: the long set of the whole suite, this test among its packages (it would run itself): most of an hour on 2 cores"},

	// sink/CASSANDRA.md: the sink's benchmark against a cqltestd process.
	{file: "sink/CASSANDRA.md", cmd: "taskset -c 1 go run ./internal/cqltest/cmd/cqltestd -addr 127.0.0.1:19042 &",
		// The test's build of the same command (go run: without
		// -trimpath, cold in CI); the process, as documented.
		subst: []string{"go run ./internal/cqltest/cmd/cqltestd", "cqltestd", "127.0.0.1:19042", "127.0.0.1:{port:19042}"},
		mode:  background,
		ready: func(b *block, p *proc) error {
			return contains(p.stderr.String(), "listening on 127.0.0.1:"+b.port("19042"))
		},
		// In the short form the block's next line does not run, so the
		// stop follows at once: cqltestd catches SIGINT before it says
		// where it listens, so it must exit cleanly even then.
	},
	{file: "sink/CASSANDRA.md", cmd: "DEMANDPIPE_CQLTEST=127.0.0.1:19042 taskset -c 0 go test ./sink/cassandra -run '^$' -bench 'Write$/sink=cassandra' -benchtime 10x",
		inRepo: true, subst: []string{"127.0.0.1:19042", "127.0.0.1:{port:19042}"},
		shortSkip: "it builds sink/cassandra's test binary without -race or -trimpath: in CI, where the rest is built with -race, a cold compile of the driver and its dependencies. The short form checks that the pattern names the benchmark and that it reads DEMANDPIPE_CQLTEST",
		weak: func(b *block) error {
			return sourceHas("sink/cassandra", "_test.go", "func BenchmarkWrite(", `"sink=cassandra/`, "DEMANDPIPE_CQLTEST")
		},
		check: func(b *block, r result) error {
			return contains(r.stdout, "BenchmarkWrite/sink=cassandra", "ok")
		}},

	// sink/CASSANDRA.md: does the sink keep up? Three runs of the script,
	// each apart with its own scratch directory (WORK=, else a temp
	// directory it leaves behind, with the input); in the short form it runs the test's build
	// (BIN=; the script's own build is go build without -trimpath) on
	// 2,000 events, one round, rings to 1 (EXTRA=, the script's knob for
	// run flags: with k to 20 each event is ~35 rows, and the rows, not
	// the events, are the work).
	{file: "sink/CASSANDRA.md", cmd: "bench/cassandra-sink.sh", inRepo: true, apart: true,
		subst: []string{"bench/", "WORK={work}/bench bench/"},
		short: []string{"WORK=", "BIN={bin} EVENTS=2000 ROUNDS=1 EXTRA=" + shortExtra + " WORK="},
		check: cassandraSinkBench("isolated=0")},
	{file: "sink/CASSANDRA.md", cmd: "ISOLATED=1 bench/cassandra-sink.sh", inRepo: true, apart: true,
		subst: []string{"bench/", "WORK={work}/bench bench/"},
		short: []string{"WORK=", "BIN={bin} EVENTS=2000 ROUNDS=1 EXTRA=" + shortExtra + " WORK="},
		check: cassandraSinkBench("isolated=1")},
	{file: "sink/CASSANDRA.md", cmd: "ROUNDS=5 ISOLATED=1 BIN=dir-with-both-binaries bench/cassandra-sink.sh", inRepo: true, apart: true,
		subst: []string{"dir-with-both-binaries", "{bin}", "bench/", "WORK={work}/bench bench/"},
		short: []string{"ROUNDS=5", "EVENTS=2000 ROUNDS=1 EXTRA=" + shortExtra},
		check: cassandraSinkBench("isolated=1")},

	// tuning/README.md: sweeps against the in-process CQL double, and one
	// against a cluster (the double again, over the network). Each sweep
	// is independent of the others and runs apart (each writes tune.csv
	// and tune.svg where it runs).
	{file: "tuning/README.md", cmd: "go build -o demandpipe ./cmd/demandpipe",
		shortSkip: whyGoBuild, weak: binaryRuns, inRepo: true,
		subst:   []string{"-o demandpipe", "-o {work}/demandpipe"},
		prepare: func(b *block) error { return os.Remove(b.path("demandpipe")) },
		check:   func(b *block, r result) error { return binaryRuns(b) }},
	{file: "tuning/README.md", cmd: "./demandpipe tune", apart: true, shortAdd: shortTune, check: tuneSwept(9, "service time 2ms")},
	{file: "tuning/README.md", cmd: "./demandpipe tune -tune.service-time=20ms", apart: true, shortAdd: shortTune, check: tuneSwept(9, "service time 20ms")},
	{file: "tuning/README.md", cmd: "./demandpipe tune -parallelism=1,2 -sink.writers=4..64x2 -sink.batch-rows=50,100", apart: true, shortAdd: shortTune, check: tuneSwept(20, "")},
	{file: "tuning/README.md", cmd: "./demandpipe tune -sink='cassandra://10.0.0.5/tune?create=true&rf=1'", apart: true,
		subst: []string{"10.0.0.5", "{cql}"}, shortAdd: shortTune,
		check: func(b *block, r result) error {
			n, err := b.cql().Rows("tune", "features")
			if err == nil && n == 0 {
				err = errors.New("no rows written to tune.features")
			}
			return errors.Join(err, tuneSwept(9, "")(b, r))
		}},
	{file: "tuning/README.md", cmd: "./demandpipe help tune",
		check: func(b *block, r result) error {
			return contains(r.stdout, "-tune.service-time (2ms)", "-sink.writers (4,16,64)", "-sink.batch-rows (1,50,200)")
		}},
	{file: "tuning/README.md", cmd: "nice -n 10 ./demandpipe tune", apart: true, shortAdd: shortTune, check: tuneSwept(9, "service time 2ms"),
		shortSkip: whyNice, weak: niceRuns},
	{file: "tuning/README.md", cmd: "nice -n 10 ./demandpipe tune -tune.service-time=20ms", apart: true, shortAdd: shortTune, check: tuneSwept(9, "service time 20ms"),
		shortSkip: whyNice, weak: niceRuns},
	{file: "tuning/README.md", cmd: "nice -n 10 ./demandpipe tune -tune.service-time=0ms", apart: true, shortAdd: shortTune, check: tuneSwept(9, "service time 0s"),
		shortSkip: whyNice, weak: niceRuns},
}

// Fixtures: what a block needs that its commands do not make, named in
// the entries' needs. Each runs once per block.
var fixtures = map[string]func(b *block) error{
	// defs.yaml is the definitions file docs/DEFINITIONS.md shows.
	"defs.yaml": func(b *block) error {
		for _, f := range b.docs {
			if f.file == "docs/DEFINITIONS.md" && f.tag == "yaml" && len(f.lines) > 0 && strings.HasPrefix(f.lines[0], "# defs.yaml") {
				return os.WriteFile(b.path("defs.yaml"), []byte(strings.Join(f.lines, "\n")+"\n"), 0o644)
			}
		}
		return errors.New("docs/DEFINITIONS.md has no yaml block starting '# defs.yaml'")
	},
	// A minute of a city at 10,000 events a minute.
	"events.ndjson": func(b *block) error {
		return b.fixture("demandpipe gen -o events.ndjson -events 10000 -rate 10000")
	},
	"events.ndjson.zst": func(b *block) error {
		return b.fixture("demandpipe gen -o events.ndjson.zst -events 10000 -rate 10000")
	},
	// Queries before the first close, inside the input and after it.
	"queries.csv": func(b *block) error {
		p := products()[0]
		q := "ts,lat,lng,product\n" +
			"2024-06-01T10:00:10Z,40.758,-73.9855," + p + "\n" +
			"1717236180000,40.75,-73.98," + p + "\n" +
			"2024-06-01T12:00:00Z,40.758,-73.9855," + p + "\n"
		return os.WriteFile(b.path("queries.csv"), []byte(q), 0o644)
	},
	// The store of docs/DEFINITIONS.md's first block (DIR: features),
	// served as its text says.
	"definitions store served": func(b *block) error {
		if err := b.fixture("demandpipe run -definitions=defs.yaml -source=file:events.ndjson -sink=store:features -serve="); err != nil {
			return err
		}
		return b.fixtureServer("demandpipe serve -store=features -addr=127.0.0.1:{port:8080}", func() error { return minutesServed(b.url("8080"), 1) })
	},
	// Nine minutes (10:00 to 10:08, so 10:07 is closed) of a thin city,
	// stored (rings to 2, windows to 2: the API's shape is under test,
	// not the default definition) and served.
	"store served": func(b *block) error {
		if err := b.fixture("demandpipe gen -o events.ndjson.zst -events 9000 -rate 1000"); err != nil {
			return err
		}
		if err := b.fixture("demandpipe run -source=file:events.ndjson.zst -sink=store:city -serve= " + smallDef); err != nil {
			return err
		}
		return b.fixtureServer("demandpipe serve -store=city -addr=127.0.0.1:{port:8080}", func() error { return minutesServed(b.url("8080"), 1) })
	},
	// A store served over HTTPS as features.internal, with a token.
	"store served over TLS": func(b *block) error {
		if err := b.fixture("demandpipe gen -o events.ndjson.zst -events 5000 -rate 10000"); err != nil {
			return err
		}
		if err := b.fixture("demandpipe run -source=file:events.ndjson.zst -sink=store:city -serve= " + smallDef); err != nil {
			return err
		}
		if _, err := testcert.WriteFor(b.path("ca.pem"), b.path("key.pem"), 1, "features.internal"); err != nil {
			return err
		}
		tok := make([]byte, 32)
		rand.Read(tok)
		if err := os.WriteFile(b.path("token"), []byte(hex.EncodeToString(tok)+"\n"), 0o600); err != nil {
			return err
		}
		return b.fixtureServer("demandpipe serve -store=city -addr=127.0.0.1:{port:8443} -serve.tls-cert=ca.pem -serve.tls-key=key.pem"+
			" -serve.token-file=token -serve.allowed-hosts=features.internal:{port:8443}",
			func() error { return dialOK("127.0.0.1:" + b.port("8443")) })
	},
	// The raw topic of the scale-out roles: 2 minutes at 10,000 events a
	// minute (a dedup process holds the lateness and a minute or two
	// unacknowledged: under the double's Key_Shared limit of 50,000),
	// published by key as docs/PULSAR.md says.
	"rides": func(b *block) error {
		if err := b.fixture("demandpipe gen -o rides.ndjson -events 20000 -rate 10000 -riders 4000"); err != nil {
			return err
		}
		return b.fixture("demandpipe publish -batch-by-key -to=pulsar://{pulsar}/rides rides.ndjson")
	},
}

// Building.

var built struct {
	once sync.Once
	dir  string
	took time.Duration
	err  error
	out  []byte
}

// TestMain removes the binaries at the end.
func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// binaries builds demandpipe, pulsartestd and cqltestd once, without
// -race, and returns their directory.
func binaries(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "demandpipe-docs-"); built.err != nil {
			return
		}
		start := time.Now()
		// -ldflags=-w: no DWARF, which only a debugger reads; it halves
		// demandpipe's link (2.9 s, not 6.2 s, on a loaded 2-core box).
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-w", "-o", built.dir+"/",
			"./cmd/demandpipe", "./internal/pulsartest/cmd/pulsartestd", "./internal/cqltest/cmd/cqltestd")
		cmd.Dir = repoRoot
		built.out, built.err = cmd.CombinedOutput()
		built.took = time.Since(start)
	})
	if built.err != nil {
		t.Fatalf("building the binaries: %v\n%s", built.err, built.out)
	}
	t.Logf("built demandpipe, pulsartestd and cqltestd in %v", built.took.Round(time.Millisecond))
	return built.dir
}

// Running a block.

// block is one sh block's run: its directory, processes and what its
// commands set, and the ports and doubles they share.
type block struct {
	t     *testing.T // the block's test
	cur   *testing.T // the running command's
	bin   string
	docs  []fence
	dir   string
	env   []string
	vars  map[string]string // set by commands (entry.sets)
	procs []*proc           // background processes, stopped at the end in reverse
	done  map[string]bool   // fixtures made
	*shared
}

// shared is what a block's commands share with those that run apart.
type shared struct {
	mu    sync.Mutex
	ports map[string]string
	ps    *pulsartest.Server
	cs    *cqltest.Server
}

func runBlock(t *testing.T, bin string, docs []fence, sb shBlock) {
	b := &block{t: t, cur: t, bin: bin, docs: docs, dir: t.TempDir(), vars: map[string]string{}, done: map[string]bool{},
		shared: &shared{ports: map[string]string{}}}
	b.env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	if err := os.Symlink(filepath.Join(bin, "demandpipe"), b.path("demandpipe")); err != nil {
		t.Fatal(err)
	}
	defer b.stopAll()
	var apart sync.WaitGroup
	defer apart.Wait()
	for _, c := range sb.cmds {
		e := table()[key(c.file, c.text)]
		if e == nil {
			t.Fatalf("%s:%d: %s: not in the table (TestDocCommandsListed says how to add it)", c.file, c.line, c.text)
		}
		if e.apart && !testsize.Long() {
			// Independent of the block's other commands: in a directory
			// of its own, beside them (the long form's sweeps are
			// CPU-bound: in order).
			apart.Go(func() {
				t.Run(fmt.Sprint(c.line), func(t *testing.T) {
					ab := &block{t: t, cur: t, bin: bin, docs: docs, dir: t.TempDir(), env: b.env,
						vars: map[string]string{}, done: map[string]bool{}, shared: b.shared}
					if err := os.Symlink(filepath.Join(bin, "demandpipe"), ab.path("demandpipe")); err != nil {
						t.Fatal(err)
					}
					ab.runCommand(t, c, e)
				})
			})
			continue
		}
		ok := t.Run(fmt.Sprint(c.line), func(t *testing.T) {
			b.cur = t
			defer func() { b.cur = b.t }()
			b.runCommand(t, c, e)
		})
		if !ok {
			// The block's later commands depend on this one.
			t.Fatalf("%s:%d failed: the block's later commands are not run", c.file, c.line)
		}
	}
}

// errSkip skips a command, saying why (the command's prepare found
// something missing that the test cannot provide).
type errSkip struct{ why string }

func (e errSkip) Error() string { return e.why }

func (b *block) runCommand(t *testing.T, c docCommand, e *entry) {
	where := fmt.Sprintf("%s:%d: %s", c.file, c.line, c.text)
	why := e.skip
	if why == "" && !testsize.Long() && e.shortSkip != "" {
		why = "in the short form: " + e.shortSkip
	}
	if why != "" {
		t.Logf("%s\n\tnot run %s", where, why)
		if e.weak != nil {
			if err := e.weak(b); err != nil {
				t.Fatalf("%s\n\tnot run %s\n\tthe check in its place: %v", where, why, err)
			}
		}
		return
	}
	for _, n := range e.needs {
		if b.done[n] {
			continue
		}
		b.done[n] = true
		f := fixtures[n]
		if f == nil {
			t.Fatalf("%s: no fixture %q", where, n)
		}
		if err := f(b); err != nil {
			t.Fatalf("%s\n\tits fixture %q: %v", where, n, err)
		}
	}
	if e.prepare != nil {
		if err := e.prepare(b); err != nil {
			var skip errSkip
			if errors.As(err, &skip) {
				t.Skipf("%s\n\tskipped: %s", where, skip.why)
			}
			t.Fatalf("%s\n\tpreparing: %v", where, err)
		}
	}
	variants := e.variants
	if variants == nil {
		variants = [][]string{nil}
	}
	for _, v := range variants {
		text := b.command(c.text, e, v)
		if text != c.text {
			where = fmt.Sprintf("%s:%d: %s\n\tran: %s", c.file, c.line, c.text, text)
		}
		if err := b.execute(e, where, text); err != nil {
			t.Fatalf("%s\n\t%v", where, err)
		}
	}
}

// command is the text run for a documented command: the entry's
// substitutions, the variant's, the additions, and the block's values.
func (b *block) command(text string, e *entry, variant []string) string {
	pairs := slices.Clone(e.subst)
	if !testsize.Long() {
		pairs = append(pairs, e.short...)
	}
	pairs = append(pairs, variant...)
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(text, pairs[i]) {
			b.cur.Fatalf("%s: %s: the substitution of %q matches nothing", e.file, e.cmd, pairs[i])
		}
		text = strings.ReplaceAll(text, pairs[i], pairs[i+1])
	}
	text = strings.TrimSuffix(text, " &") // background: the test keeps it running
	text += e.add
	if !testsize.Long() {
		text += e.shortAdd
	}
	return b.expand(text)
}

var placeholder = regexp.MustCompile(`\{(port:[0-9]+|pulsar|cql|uuid|repo|bin|work)\}`)

// expand fills the block's values into s.
func (b *block) expand(s string) string {
	return placeholder.ReplaceAllStringFunc(s, func(m string) string {
		switch name := m[1 : len(m)-1]; {
		case strings.HasPrefix(name, "port:"):
			return b.port(strings.TrimPrefix(name, "port:"))
		case name == "pulsar":
			return strings.TrimPrefix(b.pulsar().URL(), "pulsar://")
		case name == "cql":
			return b.cql().Addr()
		case name == "uuid":
			return b.uuid()
		case name == "repo":
			abs, err := filepath.Abs(repoRoot)
			if err != nil {
				b.cur.Fatal(err)
			}
			return abs
		case name == "bin":
			return b.bin
		default:
			return b.dir
		}
	})
}

// execute runs one command by its mode and checks it; where names it.
func (b *block) execute(e *entry, where, text string) error {
	script := text
	if e.sets != "" {
		// Hand the variable back after the command, for the next ones.
		script += "\nprintf '\\036%s' \"$" + e.sets + "\""
	}
	p, err := b.start(where, script, e.inRepo)
	if err != nil {
		return err
	}
	switch e.mode {
	case once:
		r, err := p.wait(commandTimeout())
		if err != nil {
			return err
		}
		b.cur.Logf("%s: %s", where, r.cost())
		if e.sets != "" {
			out, val, _ := strings.Cut(r.stdout, "\x1e")
			b.vars[e.sets], r.stdout = val, out
			b.env = append(b.env, e.sets+"="+val)
		}
		if r.code != 0 {
			return fmt.Errorf("exit %d\n%s", r.code, r.output())
		}
		if e.check != nil {
			if err := e.check(b, r); err != nil {
				return fmt.Errorf("%v\n%s", err, r.output())
			}
		}
	case background:
		p.entry = e
		b.procs = append(b.procs, p)
		if err := p.waitReady(b, e.ready); err != nil {
			return err
		}
	case bounded:
		if err := p.waitReady(b, e.ready); err != nil {
			p.kill()
			return err
		}
		r, err := p.stop()
		if err != nil {
			return err
		}
		b.cur.Logf("%s: %s", where, r.cost())
		if e.check != nil {
			if err := e.check(b, r); err != nil {
				return fmt.Errorf("%v\n%s", err, r.output())
			}
		}
	}
	return nil
}

// stopAll stops the block's background processes, last started first,
// each with SIGINT, and checks that each exits 0 and what it left.
func (b *block) stopAll() {
	for i := len(b.procs) - 1; i >= 0; i-- {
		p := b.procs[i]
		r, err := p.stop()
		b.t.Logf("%s: %s", p.what, r.cost())
		if err == nil && p.entry != nil && p.entry.check != nil {
			if cerr := p.entry.check(b, r); cerr != nil {
				err = fmt.Errorf("%v\n%s", cerr, r.output())
			}
		}
		if err != nil {
			b.t.Errorf("%s\n\tstopped at the block's end: %v", p.what, err)
		}
	}
	if b.ps != nil {
		b.ps.Close()
	}
	if b.cs != nil {
		b.cs.Close()
	}
}

// fixture runs a setup command (not a documented one) to its end.
func (b *block) fixture(text string) error {
	text = b.expand(text)
	p, err := b.start("fixture: "+text, text, false)
	if err != nil {
		return err
	}
	r, err := p.wait(commandTimeout())
	b.cur.Logf("%s: %s", p.what, r.cost())
	if err == nil && r.code != 0 {
		err = fmt.Errorf("%s: exit %d\n%s", p.what, r.code, r.output())
	}
	return err
}

// fixtureServer starts a setup server, stopped (and expected to exit 0)
// at the block's end.
func (b *block) fixtureServer(text string, ready func() error) error {
	text = b.expand(text)
	p, err := b.start("fixture: "+text, text, false)
	if err != nil {
		return err
	}
	b.procs = append(b.procs, p)
	return p.waitReady(b, func(*block, *proc) error { return ready() })
}

func commandTimeout() time.Duration { return testsize.Pick(2*time.Minute, 30*time.Minute) }

func (b *block) path(name string) string { return filepath.Join(b.dir, name) }

// port is the free port standing for the documented port doc.
func (b *block) port(doc string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p, ok := b.ports[doc]; ok {
		return p
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.cur.Fatal(err)
	}
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	b.ports[doc] = p
	return p
}

// url is http://127.0.0.1:PORT for the documented port doc.
func (b *block) url(doc string) string { return "http://127.0.0.1:" + b.port(doc) }

// pulsar is the block's in-process Pulsar test double.
func (b *block) pulsar() *pulsartest.Server {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ps == nil {
		s, err := pulsartest.Start(pulsartest.Config{})
		if err != nil {
			b.cur.Fatal(err)
		}
		b.ps = s
	}
	return b.ps
}

// cql is the block's in-process CQL test double: data centre dc1 with
// three live nodes, as docs/CASSANDRA.md's cluster.
func (b *block) cql() *cqltest.Server {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cs == nil {
		s, err := cqltest.Start(cqltest.Config{DataCenter: "dc1", LiveNodes: 3})
		if err != nil {
			b.cur.Fatal(err)
		}
		b.cs = s
	}
	return b.cs
}

// uuid is the generated city's first product.
func (b *block) uuid() string { return products()[0] }

// products are the product types of the generator's default city (gen's
// and run's source gen: alike).
var products = sync.OnceValue(func() []string {
	g, err := gen.New(gen.DefaultConfig())
	if err != nil {
		panic(err)
	}
	var out []string
	for _, u := range g.Products() {
		out = append(out, string(u.AppendText(nil)))
	}
	return out
})

// Processes.

// proc is a command running under bash, in its own process group.
type proc struct {
	what           string
	cmd            *exec.Cmd
	stdout, stderr syncbuf.Buffer
	done           chan struct{}
	entry          *entry // background: its entry, checked when stopped
	begin, end     time.Time
}

// result is a finished command's output, exit status and cost.
type result struct {
	stdout, stderr string
	code           int
	wall, cpu      time.Duration
}

// cost is the command's wall and CPU time, for the log.
func (r result) cost() string {
	return fmt.Sprintf("%v wall, %v CPU", r.wall.Round(time.Millisecond), r.cpu.Round(time.Millisecond))
}

// output is the command's output for a failure message, the end of each
// stream.
func (r result) output() string {
	tail := func(s string) string {
		if len(s) > 3000 {
			return "…" + s[len(s)-3000:]
		}
		return s
	}
	return fmt.Sprintf("\tstdout: %s\n\tstderr: %s", tail(r.stdout), tail(r.stderr))
}

// start runs script with bash -c in the block's directory (or the
// repository's); what names it in messages.
func (b *block) start(what, script string, inRepo bool) (*proc, error) {
	p := &proc{what: what, cmd: exec.Command("bash", "-c", script), done: make(chan struct{}), begin: time.Now()}
	p.cmd.Dir = b.dir
	if inRepo {
		p.cmd.Dir = repoRoot
	}
	p.cmd.Env = b.env
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.cmd.Wait()
		p.end = time.Now()
		close(p.done)
	}()
	b.t.Cleanup(p.kill) // whatever happens, nothing is left running
	return p, nil
}

// wait waits for the command's end.
func (p *proc) wait(timeout time.Duration) (result, error) {
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.kill()
		return p.result(), fmt.Errorf("still running after %v\n%s", timeout, p.result().output())
	}
	return p.result(), nil
}

func (p *proc) result() result {
	r := result{stdout: p.stdout.String(), stderr: p.stderr.String(), code: -1}
	select {
	case <-p.done:
		r.code = p.cmd.ProcessState.ExitCode()
		r.wall, r.cpu = p.end.Sub(p.begin), p.cmd.ProcessState.UserTime()+p.cmd.ProcessState.SystemTime()
	default:
	}
	return r
}

// waitReady polls ready until it holds, the process ends, or the bound
// passes.
func (p *proc) waitReady(b *block, ready func(*block, *proc) error) error {
	deadline := time.Now().Add(testsize.Pick(time.Minute, 5*time.Minute))
	for {
		err := ready(b, p)
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited (status %d) before it was ready (%v)\n%s", p.cmd.ProcessState.ExitCode(), err, p.result().output())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %v\n%s", testsize.Pick(time.Minute, 5*time.Minute), err, p.result().output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGINT to the process group (Ctrl-C) and wants exit 0.
func (p *proc) stop() (result, error) {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT)
	r, err := p.wait(time.Minute)
	if err != nil {
		return r, fmt.Errorf("after SIGINT: %v", err)
	}
	if r.code != 0 {
		return r, fmt.Errorf("exit %d after SIGINT\n%s", r.code, r.output())
	}
	return r, nil
}

// kill ends the process group at once, if it is still running.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Checks.

// contains wants every one of subs in s.
func contains(s string, subs ...string) error {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return fmt.Errorf("%q not in the output", sub)
		}
	}
	return nil
}

// summaryLine matches a line of run's summary: its label and first number.
var summaryLine = regexp.MustCompile(`(?m)^  ([a-z][a-z ]*[a-z]) +([0-9]+)`)

// summaryAtLeast wants run's summary on stderr and its line what at
// least n.
func summaryAtLeast(stderr, what string, n int) error {
	if !strings.Contains(stderr, "summary after") {
		return errors.New("no summary")
	}
	for _, m := range summaryLine.FindAllStringSubmatch(stderr, -1) {
		if m[1] == what {
			v, _ := strconv.Atoi(m[2])
			if v < n {
				return fmt.Errorf("summary: %s %d, want at least %d", what, v, n)
			}
			return nil
		}
	}
	return fmt.Errorf("summary: no line %q", what)
}

// genSpan: gen's event time spans a minute per 100,000 events (the
// README's "-events 2000000: a synthetic city, 20 minutes").
var genWrote = regexp.MustCompile(`wrote ([0-9]+) events .* event time (\S+) \.\. (\S+)`)

func genSpan(b *block, r result) error {
	m := genWrote.FindStringSubmatch(r.stderr)
	if m == nil {
		return errors.New("gen printed no 'wrote N events … event time A .. B'")
	}
	n, _ := strconv.Atoi(m[1])
	from, err1 := time.Parse(time.RFC3339, m[2])
	to, err2 := time.Parse(time.RFC3339, m[3])
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	if want := time.Duration(n) * time.Minute / 100000; to.Sub(from) != want {
		return fmt.Errorf("%d events span %v of event time, want %v", n, to.Sub(from), want)
	}
	return nil
}

// fileLines wants at least n lines in path, the first holding sub.
func fileLines(path string, n int, sub string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	lines := 0
	for sc.Scan() {
		if lines == 0 && !strings.Contains(sc.Text(), sub) {
			return fmt.Errorf("%s: first line %q has no %q", filepath.Base(path), sc.Text(), sub)
		}
		lines++
	}
	if lines < n {
		return fmt.Errorf("%s: %d lines, want at least %d", filepath.Base(path), lines, n)
	}
	return sc.Err()
}

// rowsOfWidth wants rows in path, the first thousand read, each with
// width features.
func rowsOfWidth(path string, width int) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for ; n < 1000 && sc.Scan(); n++ {
		var row struct {
			H3       string  `json:"h3"`
			Features []int64 `json:"features"`
		}
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil || len(row.H3) != 15 || len(row.Features) != width {
			return fmt.Errorf("%s line %d (%v): want a row of %d features: %s", filepath.Base(path), n+1, err, width, sc.Text())
		}
	}
	if n == 0 {
		return fmt.Errorf("%s: no rows", filepath.Base(path))
	}
	return sc.Err()
}

func isDir(path string) error {
	st, err := os.Stat(path)
	if err == nil && !st.IsDir() {
		err = fmt.Errorf("%s is not a directory", path)
	}
	return err
}

// binaryRuns: ./demandpipe in the block's directory runs.
// whyNice: the niced sweeps are the sweeps above them (run in the short
// form too) at a lower priority; the suite's CPU budget runs them in the
// long form only.
const whyNice = "the same sweep as the entry without nice, which runs in the short form; nice only lowers its priority"

// niceRuns: nice is there and runs the binary at the lower priority.
func niceRuns(b *block) error {
	out, err := exec.Command("nice", "-n", "10", b.path("demandpipe"), "version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("nice -n 10 ./demandpipe version: %v: %s", err, out)
	}
	return nil
}

func binaryRuns(b *block) error {
	out, err := exec.Command(b.path("demandpipe"), "version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("./demandpipe version: %v: %s", err, out)
	}
	return nil
}

// ciRuns: .ci/run runs the command as its last line.
func ciRuns(command string) error {
	b, err := os.ReadFile(filepath.Join(repoRoot, ".ci/run"))
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if last := lines[len(lines)-1]; last != command {
		return fmt.Errorf(".ci/run ends with %q, not %q", last, command)
	}
	return nil
}

// sourceHas wants every one of subs in the files of dir ending in suffix.
func sourceHas(dir, suffix string, subs ...string) error {
	files, err := filepath.Glob(filepath.Join(repoRoot, dir, "*"+suffix))
	if err != nil {
		return err
	}
	var all strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		all.Write(b)
	}
	return contains(all.String(), subs...)
}

// httpGet fetches url and wants 200.
func httpGet(url string) ([]byte, http.Header, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return body.Bytes(), resp.Header, fmt.Errorf("GET %s: %s: %s", url, resp.Status, body.Bytes())
	}
	return body.Bytes(), resp.Header, nil
}

func httpOK(url string) error {
	_, _, err := httpGet(url)
	return err
}

func dialOK(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
	}
	return err
}

// metricAbove wants the sum of a metric's samples on /metrics above v.
func metricAbove(base, name string, v float64) error {
	body, _, err := httpGet(base + "/metrics")
	if err != nil {
		return err
	}
	sum := 0.0
	for line := range strings.Lines(string(body)) {
		if f := strings.Fields(line); len(f) == 2 && (f[0] == name || strings.HasPrefix(f[0], name+"{")) {
			x, _ := strconv.ParseFloat(f[1], 64)
			sum += x
		}
	}
	if sum <= v {
		return fmt.Errorf("%s = %v", name, sum)
	}
	return nil
}

// minutesServed wants at least n closed minutes from the API at base.
func minutesServed(base string, n int) error {
	body, _, err := httpGet(base + "/v1/minutes")
	if err != nil {
		return err
	}
	return minutesLatestFirst(body, n)
}

// minutesLatestFirst wants /v1/minutes's answer: at least n minutes,
// latest first.
func minutesLatestFirst(body []byte, n int) error {
	var a struct {
		Minutes []struct {
			Minute string `json:"minute"`
			Rows   *int   `json:"rows"`
		} `json:"minutes"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return fmt.Errorf("%v: %s", err, body)
	}
	if len(a.Minutes) < n {
		return fmt.Errorf("%d closed minutes, want at least %d", len(a.Minutes), n)
	}
	prev := ""
	for _, m := range a.Minutes {
		if _, err := time.Parse(time.RFC3339, m.Minute); err != nil || m.Rows == nil || (prev != "" && m.Minute >= prev) {
			return fmt.Errorf("want minutes latest first, each with its rows: %s", body)
		}
		prev = m.Minute
	}
	return nil
}

// answer is a /v1/features answer (docs/READING.md).
type answer struct {
	H3          string   `json:"h3"`
	ProductType string   `json:"product_type"`
	Minute      string   `json:"minute"`
	AgeSeconds  *float64 `json:"age_seconds"`
	Found       *bool    `json:"found"`
	Features    []struct {
		K, W  *int
		Value *float64 `json:"value"`
		Avg   *float64 `json:"avg"`
	} `json:"features"`
}

// featureAnswer decodes a features answer and wants its documented shape:
// the product asked, width features each named by k and w, and, if found,
// "found": true.
func featureAnswer(body []byte, product string, width int, found bool) (answer, error) {
	var a answer
	if err := json.Unmarshal(body, &a); err != nil {
		return a, fmt.Errorf("%v: %s", err, body)
	}
	if len(a.H3) != 15 || a.ProductType != product || a.AgeSeconds == nil || a.Found == nil || len(a.Features) != width {
		return a, fmt.Errorf("want an answer for product %s with %d features: %s", product, width, body)
	}
	if _, err := time.Parse(time.RFC3339, a.Minute); err != nil {
		return a, fmt.Errorf("minute: %v: %s", err, body)
	}
	for _, f := range a.Features {
		if f.K == nil || f.W == nil || f.Value == nil {
			return a, fmt.Errorf("want every feature as {k, w, value}: %s", body)
		}
	}
	if found && !*a.Found {
		return a, fmt.Errorf("want a row found: %s", body)
	}
	return a, nil
}

// fineAnswer: the features of definition fine (rings 0, 2, 7 by windows
// 3, 5, 1), with the header naming it.
func fineAnswer(b *block, r result) error {
	a, err := featureAnswer([]byte(r.stdout), b.uuid(), 9, false)
	if err == nil && (*a.Features[8].K != 7 || *a.Features[8].W != 1) {
		err = fmt.Errorf("want fine's features, k-major over rings 0,2,7 and windows 3,5,1: %s", r.stdout)
	}
	return err
}

// unnamedGetsFine: after the promotion, a request naming no definition
// is answered by fine (the Demandpipe-Definition header, and 9 features).
func unnamedGetsFine(b *block, r result) error {
	url := fmt.Sprintf("%s/v1/features?lat=40.75&lng=-73.98&product=%s", b.url("8080"), b.uuid())
	body, h, err := httpGet(url)
	if err != nil {
		return err
	}
	if d := h.Get("Demandpipe-Definition"); d != "fine" {
		return fmt.Errorf("after the promotion a request naming no definition got %q: %s", d, body)
	}
	_, err = featureAnswer(body, b.uuid(), 9, false)
	return err
}

// definitionsList is /v1/definitions's answer.
type definitionsList struct {
	Active      string `json:"active"`
	Definitions []struct {
		Name        string  `json:"name"`
		Status      string  `json:"status"`
		FirstMinute *string `json:"first_minute"`
		LastMinute  *string `json:"last_minute"`
	} `json:"definitions"`
}

// definitionsServed: both definitions of defs.yaml have a closed minute
// on the API.
func definitionsServed(b *block, p *proc) error {
	body, _, err := httpGet(b.url("8080") + "/v1/definitions")
	if err != nil {
		return err
	}
	var d definitionsList
	if err := json.Unmarshal(body, &d); err != nil {
		return err
	}
	if len(d.Definitions) != 2 || d.Definitions[0].LastMinute == nil || d.Definitions[1].LastMinute == nil {
		return fmt.Errorf("not both definitions with a closed minute: %s", body)
	}
	return nil
}

// historyAnswers reads answers.ndjson of one history variant: three
// answers in ts order, the first before any minute closed, the others
// with features (54 of the default definition, 9 of fine), or the CSV
// header with a column per feature.
func historyAnswers(b *block, r result) error {
	data, err := os.ReadFile(b.path("answers.ndjson"))
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	fine := strings.Contains(r.stderr, "res=9")
	width := 54
	if fine {
		width = 9
	}
	if strings.HasPrefix(lines[0], "ts,") {
		cr := csv.NewReader(bytes.NewReader(data))
		cr.FieldsPerRecord = -1 // an answer with no minute has no features
		recs, err := cr.ReadAll()
		if err != nil || len(recs) != 4 || len(recs[0]) != 7+width || recs[0][7] != "k0_w1" ||
			recs[1][5] != "" || recs[2][5] == "" || len(recs[2]) != 7+width {
			return fmt.Errorf("want a CSV header, three answers and a column per feature (%v): %s", err, data)
		}
		return nil
	}
	if len(lines) != 3 {
		return fmt.Errorf("want three answers: %s", data)
	}
	for i, l := range lines {
		var a struct {
			TS       string  `json:"ts"`
			Minute   *string `json:"minute"`
			Features []int64 `json:"features"`
		}
		if err := json.Unmarshal([]byte(l), &a); err != nil {
			return fmt.Errorf("answer %d: %v: %s", i, err, l)
		}
		if (i == 0) != (a.Minute == nil) || (i > 0 && len(a.Features) != width) {
			return fmt.Errorf("answer %d: want no minute before the first close, then %d features: %s", i, width, l)
		}
	}
	return nil
}

// logged wants the line in the process's stderr.
func logged(line string) func(b *block, p *proc) error {
	return func(b *block, p *proc) error { return contains(p.stderr.String(), line) }
}

// aggregateWrote: a stopped aggregate process committed a minute.
func aggregateWrote(b *block, r result) error {
	return errors.Join(summaryAtLeast(r.stderr, "minutes closed", 1), summaryAtLeast(r.stderr, "rows written", 1))
}

// applyCQL runs each statement of the schema on the double: each ends
// with a semicolon at the end of a line.
func applyCQL(s *cqltest.Server, schema string) error {
	for st := range strings.SplitSeq(schema, ";\n") {
		if st = strings.TrimSuffix(strings.TrimSpace(st), ";"); st == "" {
			continue
		}
		if _, err := s.Exec(st); err != nil {
			return fmt.Errorf("applying %q: %w", st, err)
		}
	}
	return nil
}

// tuneSwept reads a sweep's table, CSV and chart: points rows, a
// recommendation, and the sink line naming the service time.
func tuneSwept(points int, sink string) func(b *block, r result) error {
	return func(b *block, r result) error {
		rows := 0
		for line := range strings.Lines(r.stdout) {
			if strings.HasPrefix(line, "| ") && !strings.HasPrefix(line, "| parallelism") &&
				!strings.HasPrefix(line, "| batch rows") && strings.Count(line, "|") == 13 {
				rows++
			}
		}
		if rows != points {
			return fmt.Errorf("%d points in the table, want %d", rows, points)
		}
		if err := contains(r.stdout, "recommended: -parallelism=", sink); err != nil {
			return err
		}
		f, err := os.Open(b.path("tune.csv"))
		if err != nil {
			return err
		}
		defer f.Close()
		recs, err := csv.NewReader(f).ReadAll()
		if err != nil || len(recs) != points+1 {
			return fmt.Errorf("tune.csv: %v, %d records, want %d", err, len(recs), points+1)
		}
		svg, err := os.ReadFile(b.path("tune.svg"))
		if err != nil || !bytes.Contains(svg, []byte("<svg")) {
			return fmt.Errorf("tune.svg: %v", err)
		}
		return nil
	}
}

// cassandraSinkBench reads bench/cassandra-sink.sh's report.
func cassandraSinkBench(isolated string) func(b *block, r result) error {
	return func(b *block, r result) error {
		return contains(r.stdout, isolated, "median null:", "median cassandra:", "cassandra/null: rows/s")
	}
}

// tlsWithoutToken: the TLS server refuses a request without the token.
func tlsWithoutToken(b *block) error {
	ca, err := os.ReadFile(b.path("ca.pem"))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	addr := "127.0.0.1:" + b.port("8443")
	c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "features.internal"},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	resp, err := c.Get("https://features.internal:" + b.port("8443") + "/v1/minutes")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		return fmt.Errorf("without the token: %s, want 401", resp.Status)
	}
	return nil
}

// Reading the docs.

// fence is a fenced code block of a Markdown file.
type fence struct {
	file  string // slash path from the repository root
	line  int    // the opening fence's line
	tag   string // the info string's first word
	lines []string
}

// docCommand is one command of an sh block.
type docCommand struct {
	file string
	line int    // its first line
	text string // continuations joined, comment stripped, blanks collapsed
}

// shBlock is an sh fence's commands.
type shBlock struct {
	file string
	line int
	cmds []docCommand
}

// skipDirs are not documentation a user reads.
var skipDirs = map[string]bool{"testdata": true, "vendor": true, "node_modules": true}

// readDocs reads the fences of every Markdown file in the repository.
func readDocs(t *testing.T) []fence {
	t.Helper()
	var out []fence
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != repoRoot && (strings.HasPrefix(d.Name(), ".") || skipDirs[d.Name()]) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(d.Name(), ".md") {
			return nil
		}
		rel, err := filepath.Rel(repoRoot, path)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fences, err := parseFences(filepath.ToSlash(rel), string(data))
		out = append(out, fences...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("no fenced blocks in the repository's Markdown")
	}
	return out
}

// parseFences finds the fenced blocks of a Markdown text: ``` or ~~~
// (three or more), indented or not (in a list item), closed by the same
// character at least as many times.
func parseFences(file, text string) ([]fence, error) {
	var out []fence
	var cur *fence
	var marker string
	indent := 0
	for i, l := range strings.Split(text, "\n") {
		trimmed := strings.TrimLeft(l, " ")
		if cur == nil {
			m := fenceMarker(trimmed)
			info := strings.TrimSpace(trimmed[len(m):])
			if m == "" || (m[0] == '`' && strings.Contains(info, "`")) {
				continue
			}
			tag, _, _ := strings.Cut(info, " ")
			cur, marker, indent = &fence{file: file, line: i + 1, tag: tag}, m, len(l)-len(trimmed)
			continue
		}
		if m := fenceMarker(trimmed); m != "" && m[0] == marker[0] && len(m) >= len(marker) && strings.TrimSpace(trimmed[len(m):]) == "" {
			out = append(out, *cur)
			cur = nil
			continue
		}
		n := min(indent, len(l)-len(strings.TrimLeft(l, " ")))
		cur.lines = append(cur.lines, l[n:])
	}
	if cur != nil {
		return out, fmt.Errorf("%s:%d: a fence that is never closed", file, cur.line)
	}
	return out, nil
}

// fenceMarker is the run of three or more ` or ~ that s starts with.
func fenceMarker(s string) string {
	if s == "" || (s[0] != '`' && s[0] != '~') {
		return ""
	}
	n := len(s) - len(strings.TrimLeft(s, s[:1]))
	if n < 3 {
		return ""
	}
	return s[:n]
}

// shBlocks are the sh fences with their commands.
func shBlocks(fences []fence) []shBlock {
	var out []shBlock
	for _, f := range fences {
		if f.tag != "sh" {
			continue
		}
		b := shBlock{file: f.file, line: f.line}
		for i := 0; i < len(f.lines); i++ {
			line, first := f.lines[i], f.line+1+i
			for strings.HasSuffix(line, `\`) && i+1 < len(f.lines) {
				// A backslash-newline is removed, as the shell removes it.
				i++
				line = line[:len(line)-1] + f.lines[i]
			}
			if text := normalize(line); text != "" {
				b.cmds = append(b.cmds, docCommand{file: f.file, line: first, text: text})
			}
		}
		out = append(out, b)
	}
	return out
}

// normalize strips a shell comment (a # starting a word outside quotes)
// and collapses blanks outside quotes to one space.
func normalize(s string) string {
	var b strings.Builder
	var quote byte // ' or " while inside one
	blank := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if quote == 0 {
			switch {
			case c == ' ' || c == '\t':
				blank = true
				continue
			case c == '#' && (blank || b.Len() == 0):
				return b.String()
			}
			if blank && b.Len() > 0 {
				b.WriteByte(' ')
			}
			blank = false
		}
		b.WriteByte(c)
		switch {
		case c == '\\' && quote != '\'' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		case quote == 0 && (c == '\'' || c == '"'):
			quote = c
		case c == quote:
			quote = 0
		}
	}
	return b.String()
}

// TestNormalize pins how a command's text is read: comments stripped
// only where the shell strips them, blanks collapsed outside quotes.
func TestNormalize(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want string }{
		{"go run ./cmd/demandpipe run       # the main job: live city", "go run ./cmd/demandpipe run"},
		{"#   default -> features/       fine -> features.fine/", ""},
		{"demandpipe run -source='pulsar://h:6650/persistent://public/default/rides?x=1#frag' -sink=store:f  # c", "demandpipe run -source='pulsar://h:6650/persistent://public/default/rides?x=1#frag' -sink=store:f"},
		{`echo "a # b"   # c`, `echo "a # b"`},
		{"curl host/page#anchor", "curl host/page#anchor"},
		{`echo \# not a comment`, `echo \# not a comment`},
		{`echo "a \" # still quoted" # gone`, `echo "a \" # still quoted"`},
		{"  a   b\t c  ", "a b c"},
		{"echo 'a   b'", "echo 'a   b'"},
		{`P=$(curl -s x | python3 -c 'import json; print(1)')   # a product`, `P=$(curl -s x | python3 -c 'import json; print(1)')`},
	} {
		if got := normalize(c.in); got != c.want {
			t.Errorf("normalize(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestParseFences pins the fences found: tags, indented fences in a
// list, ~~~, a longer closing fence, and inline triple backticks, which
// are not a fence.
func TestParseFences(t *testing.T) {
	t.Parallel()
	md := "text ```not a fence``` here\n" +
		"```sh\n" +
		"demandpipe gen -o e \\\n" +
		"    -events 10   # ten\n" +
		"# a comment line\n" +
		"```\n" +
		"- a list item:\n" +
		"\n" +
		"  ```\n" +
		"  output\n" +
		"  ```\n" +
		"~~~~yaml title\n" +
		"a: 1\n" +
		"~~~\n" +
		"~~~~~\n"
	fences, err := parseFences("x.md", md)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range fences {
		got = append(got, fmt.Sprintf("%d %q %q", f.line, f.tag, f.lines))
	}
	want := []string{
		`2 "sh" ["demandpipe gen -o e \\" "    -events 10   # ten" "# a comment line"]`,
		`9 "" ["output"]`,
		`12 "yaml" ["a: 1" "~~~"]`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("fences:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	blocks := shBlocks(fences)
	if len(blocks) != 1 || len(blocks[0].cmds) != 1 || blocks[0].cmds[0] != (docCommand{file: "x.md", line: 3, text: "demandpipe gen -o e -events 10"}) {
		t.Fatalf("commands: %+v", blocks)
	}
	if _, err := parseFences("y.md", "```sh\nls\n"); err == nil {
		t.Fatal("an unclosed fence: no error")
	}
}
