package main

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/internal/testsize"
	"github.com/demandpipe/demandpipe/store"
)

// TestKillAndResume is the acceptance: kill -9 a replay into the
// store at random points, run the same command again (and again), and
// every stored minute equals an uninterrupted run's.
func TestKillAndResume(t *testing.T) {
	if args := os.Getenv("DEMANDPIPE_RUN_ARGS"); args != "" {
		if n, _ := strconv.Atoi(os.Getenv("DEMANDPIPE_KILL_AFTER_CLOSES")); n > 0 {
			closes := 0
			afterClose = func() {
				if closes++; closes == n {
					syscall.Kill(os.Getpid(), syscall.SIGKILL) // mid-run: the next minute is being read
				}
			}
		}
		if err := runCommand(strings.Split(args, "\x1f")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	t.Parallel()
	if norace.Run(t) {
		return
	}
	dir := t.TempDir()
	events := filepath.Join(dir, "events.ndjson.zst")
	// 8 minutes of events (long: 33). Each attempt is killed after it has
	// closed a minute, a few milliseconds on, so each kill lands mid-run
	// and every kill but the last leaves at least two minutes to read.
	n, kills := testsize.Pick(24000, 100000), testsize.Pick(3, 6)
	if err := genCommand([]string{"-o", events, "-events", fmt.Sprint(n), "-rate", "3000", "-riders", "3000", "-late", "0.01", "-malformed", "0.002"}); err != nil {
		t.Fatal(err)
	}
	args := func(st string) []string {
		return []string{"-source=file:" + events, "-sink=store:" + st, "-serve=", "-progress=never", "-parallelism=2",
			"-kring.rings=0,1,2,3,5", "-windows.minutes=1,2,4,8,16", "-source.chunk-bytes=65536"}
	}
	whole := filepath.Join(dir, "whole")
	if err := runCommand(args(whole)); err != nil {
		t.Fatal(err)
	}
	killed := filepath.Join(dir, "killed")
	rng := rand.New(rand.NewPCG(testsize.Seed(t), 3))
	for attempt := range kills {
		// The child kills itself right after its n-th close (1 or 2),
		// while it reads the next minute: a point the input guarantees
		// (a kill sent from here after the close log came too late in 1
		// of 4 runs without -race, where a minute is ~3 ms of work).
		n := 1 + rng.IntN(2)
		_, stderr, done := runSubprocess(t, args(killed), "DEMANDPIPE_KILL_AFTER_CLOSES="+strconv.Itoa(n))
		if err := <-done; err == nil {
			t.Fatalf("attempt %d: SIGKILL: the run had ended already: too few events\n%s", attempt, lastLines(stderr.String(), 3))
		}
		t.Logf("attempt %d killed: %s", attempt, lastLines(stderr.String(), 1))
	}
	// Once more, to the end, in process.
	if err := runCommand(args(killed)); err != nil {
		t.Fatal(err)
	}
	compareStores(t, whole, killed)
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], " | ")
}

// compareStores checks that two stores hold the same minutes and rows.
func compareStores(t *testing.T, a, b string) {
	t.Helper()
	open := func(dir string) *store.Store {
		c := store.DefaultConfig()
		c.Dir, c.ReadOnly = dir, true
		s, err := store.Open(c, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	sa, sb := open(a), open(b)
	defer sa.Close()
	defer sb.Close()
	ma, mb := sa.Minutes(nil), sb.Minutes(nil)
	if len(ma) != len(mb) || len(ma) == 0 {
		t.Fatalf("%d minutes against %d", len(ma), len(mb))
	}
	rows := 0
	for i := range ma {
		if ma[i].Minute != mb[i].Minute || ma[i].Rows != mb[i].Rows {
			t.Fatalf("minute %d: %+v against %+v", i, ma[i], mb[i])
		}
		for _, p := range sa.Products() {
			dump := func(s *store.Store) []string {
				var out []string
				s.Scan(ma[i].Minute, p, func(cell uint64, f []int32) bool {
					out = append(out, rowString(cell, f))
					return true
				})
				return out
			}
			ra, rb := dump(sa), dump(sb)
			if !slices.Equal(ra, rb) {
				t.Fatalf("minute %d product %s: %d rows against %d, first difference at %v", ma[i].Minute, p, len(ra), len(rb), firstDiff(ra, rb))
			}
			rows += len(ra)
		}
	}
	t.Logf("%d minutes, %d rows equal", len(ma), rows)
}

// rowString is a stored row as a comparable string: the cell and the
// features, 4 bytes each (fmt.Sprint took most of the comparisons' time
// under -race).
func rowString(cell uint64, f []int32) string {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 8+4*len(f)), cell)
	for _, v := range f {
		b = binary.BigEndian.AppendUint32(b, uint32(v))
	}
	return string(b)
}

func firstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("%x / %x", a[i], b[i])
		}
	}
	return "the end of the shorter"
}

// TestRerunFinishedReplaySaysSo: the same replay again after it finished
// resumes at the end of its input and says that there was nothing new,
// instead of a summary of zeros that looks like a failed read.
func TestRerunFinishedReplaySaysSo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	events := genEvents(t, dir, 3000)
	args := storeArgs("file:"+events, filepath.Join(dir, "store"), "-kring.rings=0,1", "-windows.minutes=1,2")
	if err := runCommand(args); err != nil {
		t.Fatal(err)
	}
	_, stderr, done := runSubprocess(t, args)
	if err := <-done; err != nil {
		t.Fatalf("the second run: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr.String(), "nothing new") {
		t.Fatalf("the second run of a finished replay does not say there was nothing new:\n%s", lastLines(stderr.String(), 10))
	}
}
