package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/store"
)

// TestKillAndResume is the acceptance: kill -9 a replay into the
// store at random points, run the same command again (and again), and
// every stored minute equals an uninterrupted run's.
func TestKillAndResume(t *testing.T) {
	if args := os.Getenv("DEMANDPIPE_RUN_ARGS"); args != "" {
		if err := runCommand(strings.Split(args, "\x1f")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	dir := t.TempDir()
	events := filepath.Join(dir, "events.ndjson.zst")
	n, slow := 200000, 1
	if raceEnabled {
		n, slow = 40000, 4
	}
	if err := genCommand([]string{"-o", events, "-events", fmt.Sprint(n), "-rate", "6000", "-riders", "4000", "-late", "0.01", "-malformed", "0.002"}); err != nil {
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
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	kills := 0
	for attempt := range 6 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillAndResume$")
		cmd.Env = append(os.Environ(), "DEMANDPIPE_RUN_ARGS="+strings.Join(args(killed), "\x1f"))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("attempt %d: %v\n%s", attempt, err, stderr.String())
			}
			t.Logf("attempt %d ran to the end: %s", attempt, lastLines(stderr.String(), 2))
			attempt = 99
		case <-time.After(time.Duration(slow*(100+rng.IntN(500))) * time.Millisecond):
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
			kills++
			t.Logf("attempt %d killed: %s", attempt, lastLines(stderr.String(), 1))
		}
		if attempt == 99 {
			break
		}
	}
	if kills == 0 {
		t.Log("no run was killed mid-way (the machine was fast): the comparison still checks the resume at the end")
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
					out = append(out, fmt.Sprint(cell, f))
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

func firstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return a[i] + " / " + b[i]
		}
	}
	return "the end of the shorter"
}
