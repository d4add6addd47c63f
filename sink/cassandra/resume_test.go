package cassandra

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/demandpipe/demandpipe/feature"
	"github.com/demandpipe/demandpipe/gen"
	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/internal/syncbuf"
	"github.com/demandpipe/demandpipe/internal/testsize"
	"github.com/demandpipe/demandpipe/pipeline"
)

// The child of TestKillAndResume: a run into Cassandra at port/keyspace,
// resuming from the sink's checkpoint, killed at a random moment.
const resumeChildEnv = "DEMANDPIPE_CASSANDRA_RESUME_CHILD"

var resumeDef = feature.Definition{Resolution: 8, Rings: []int{0, 1, 2}, Windows: []int{1, 2, 4, 16}}

// resumeRun runs the engine over the input file into keyspace ks at port,
// resuming when the sink holds a checkpoint of it. logf gets one line;
// closed, if not nil, hears of every closed minute.
func resumeRun(port int, ks, input string, logf func(string, ...any), closed func(m int64)) error {
	in, err := os.ReadFile(input)
	if err != nil {
		return err
	}
	cfg := DefaultConfig()
	cfg.Hosts, cfg.Port, cfg.Keyspace = []string{"127.0.0.1"}, port, ks
	cfg.CreateSchema, cfg.ReplicationFactor = true, 1
	cfg.Definition = resumeDef
	cfg.Queue.Writers = 4
	cfg.Queue.MinBackoff, cfg.Queue.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	s, err := Open(context.Background(), cfg, Options{Logf: func(string, ...any) {}})
	if err != nil {
		return err
	}
	// Count records of several chunks, so kills tear some.
	s.chunkBytes = 4 << 10
	pc := pipeline.DefaultConfig()
	pc.Def, pc.Parallelism, pc.ChunkBytes = resumeDef, 2, 64<<10
	e, err := pipeline.New(pc)
	if err != nil {
		s.Close()
		return err
	}
	id := "file:" + input + ":" + strconv.Itoa(len(in))
	e.Identity = id
	if closed != nil {
		e.OnClose = func(m, _ int64, _ time.Duration) { closed(m) }
	}
	res, err := e.Resume(s, id)
	if err != nil {
		s.Close()
		return err
	}
	if err := e.Run(context.Background(), bytes.NewReader(in), s); err != nil {
		s.Close()
		return err
	}
	if err := s.Close(); err != nil {
		return err
	}
	if res != nil {
		logf("resumed after minute %d from byte %d; %d rows written", res.Minute, res.Pos, e.Stats.Rows.Load())
	} else {
		logf("from the start; %d rows written", e.Stats.Rows.Load())
	}
	return nil
}

// TestKillAndResume: kill -9 a run into Cassandra (the test double lives
// on in this process) at random points, run it again (and again), and
// the rows, minutes and count records equal an uninterrupted run's into
// another keyspace.
func TestKillAndResume(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	if arg := os.Getenv(resumeChildEnv); arg != "" {
		f := strings.Split(arg, "\x1f")
		port, _ := strconv.Atoi(f[0])
		logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
		if err := resumeRun(port, f[1], f[2], logf, func(m int64) { logf("minute closed %d", m) }); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	srv := startServer(t, 0)
	// 25 minutes of input either way: more than the longest window, so
	// count records are deleted as the run goes.
	perMinute := testsize.Pick(1000, 6000)
	n := 25 * perMinute
	gc := gen.DefaultConfig()
	gc.EventsPerMinute, gc.Riders, gc.Hotspots = perMinute, perMinute*3/4, 4
	gc.LateFraction, gc.MalformedFraction = 0.01, 0.002
	gc.RadiusKm, gc.BackgroundFraction = 6, 0.1 // a small town: fewer rows to write
	gc.Start = time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC)
	buf, err := gen.Generate(gc, n)
	if err != nil {
		t.Fatal(err)
	}
	input := filepath.Join(t.TempDir(), "events.ndjson")
	if err := os.WriteFile(input, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := resumeRun(srv.Port(), "whole", input, t.Logf, nil); err != nil {
		t.Fatal(err)
	}
	// Each attempt is killed a few milliseconds after it has closed a
	// minute: every kill lands mid-run (each attempt moves on by a minute
	// or two of the 25), wherever the machine's speed puts it.
	rng := rand.New(rand.NewPCG(testsize.Seed(t), 7))
	kills, resumes := testsize.Pick(4, 8), 0
	lastClosed := int64(-1)
	for attempt := range kills {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillAndResume$")
		cmd.Env = append(os.Environ(), resumeChildEnv+"="+strings.Join([]string{strconv.Itoa(srv.Port()), "killed", input}, "\x1f"))
		stderr := &syncbuf.Buffer{}
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		for !strings.Contains(stderr.String(), "minute closed") {
			select {
			case err := <-done:
				t.Fatalf("attempt %d ended before it closed a minute (%v):\n%s", attempt, err, stderr.String())
			case <-time.After(2 * time.Millisecond):
			}
		}
		time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		if err := <-done; err == nil {
			t.Fatalf("attempt %d: SIGKILL: the run had ended already:\n%s", attempt, stderr.String())
		}
		m, _ := strconv.ParseInt(strings.Fields(stderr.String()[strings.Index(stderr.String(), "minute closed"):])[2], 10, 64)
		if m <= lastClosed {
			t.Fatalf("attempt %d closed minute %d first, after minute %d was closed: it did not resume", attempt, m, lastClosed)
		}
		lastClosed = m
		t.Logf("attempt %d killed after minute %d", attempt, m)
	}
	var line string
	if err := resumeRun(srv.Port(), "killed", input, func(f string, a ...any) { line = fmt.Sprintf(f, a...) }, nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("last run: %s", line)
	if strings.HasPrefix(line, "resumed") {
		resumes++
	}
	t.Logf("%d kills, %d resumed runs", kills, resumes)

	if resumes == 0 {
		t.Fatal("no run resumed: the checkpoint was never found")
	}
	compareKeyspaces(t, srv.Port(), "whole", "killed")
}

// compareKeyspaces checks that two keyspaces hold the same feature rows,
// minutes (rows per minute) and committed count records.
func compareKeyspaces(t *testing.T, port int, a, b string) {
	t.Helper()
	cl := gocql.NewCluster("127.0.0.1")
	cl.Port = port
	sess, err := cl.CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	dump := func(q string, scan func(*gocql.Iter) (string, bool)) []string {
		iter := sess.Query(q).PageSize(5000).Iter()
		var out []string
		for {
			s, ok := scan(iter)
			if !ok {
				break
			}
			out = append(out, s)
		}
		if err := iter.Close(); err != nil {
			t.Fatal(err)
		}
		slices.Sort(out)
		return out
	}
	rows := func(ks string) []string {
		return dump("SELECT product, minute, region, cell, f FROM "+ks+".features", func(it *gocql.Iter) (string, bool) {
			var (
				p       gocql.UUID
				m, r, c int64
				f       []byte
			)
			ok := it.Scan(&p, &m, &r, &c, &f)
			return fmt.Sprintf("%s %d %d %x %x", p, m, r, c, f), ok
		})
	}
	minutes := func(ks string) []string {
		return dump("SELECT minute, rows, regions FROM "+ks+".minutes", func(it *gocql.Iter) (string, bool) {
			var (
				m  int64
				n  int
				rg []byte
			)
			ok := it.Scan(&m, &n, &rg)
			return fmt.Sprintf("%d %d %x", m, n, rg), ok
		})
	}
	ra, rb := rows(a), rows(b)
	if len(ra) == 0 || !slices.Equal(ra, rb) {
		t.Fatalf("rows: %d against %d, first difference %s", len(ra), len(rb), firstDiff(ra, rb))
	}
	ma, mb := minutes(a), minutes(b)
	if len(ma) < 20 || !slices.Equal(ma, mb) {
		t.Fatalf("minutes: %d against %d, first difference %s", len(ma), len(mb), firstDiff(ma, mb))
	}
	// The count records kept at the end are the same minutes, each equal.
	records := func(ks string) map[int64][]byte {
		st := newStateStmts(Config{Keyspace: ks})
		iter := sess.Query(st.getKind, "features", kindCounts).Iter()
		out := map[int64][]byte{}
		if err := scanRecords(iter, func(k int64, data []byte, complete bool, err error) bool {
			if err != nil || !complete {
				t.Fatalf("%s: count record %d: complete=%v %v", ks, k, complete, err)
			}
			out[k] = data
			return true
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	ca, cb := records(a), records(b)
	if len(ca) == 0 || len(ca) != len(cb) {
		t.Fatalf("count records: %d against %d", len(ca), len(cb))
	}
	for m, x := range ca {
		if !bytes.Equal(x, cb[m]) {
			t.Fatalf("count record of minute %d differs", m)
		}
	}
	t.Logf("%d rows, %d minutes, %d count records equal", len(ra), len(ma), len(ca))
}

func firstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return a[i] + " / " + b[i]
		}
	}
	if len(a) != len(b) {
		return "the end of the shorter"
	}
	return "none"
}
