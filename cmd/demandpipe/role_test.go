package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
)

// TestRolesOverPulsarEqualOneProcess: `run -role=dedup` processes (one;
// two, the riders split between them as a Key_Shared subscription by rider
// would) and three `run -role=aggregate` processes on sticky hash ranges,
// through the Pulsar test double, write together exactly the rows of one
// `run` of the same file, each row once.
func TestRolesOverPulsarEqualOneProcess(t *testing.T) {
	for _, dedups := range []int{1, 2} {
		t.Run(fmt.Sprintf("dedups=%d", dedups), func(t *testing.T) { testRoles(t, dedups) })
	}
}

func testRoles(t *testing.T, dedups int) {
	s := startPulsar(t)
	dir := t.TempDir()
	events := filepath.Join(dir, "events.ndjson")
	// No late events: a dedup process sees only its riders, so its
	// watermark, and so lateness, differ from one process's.
	if err := genCommand([]string{"-o", events, "-events", "30000", "-rate", "6000", "-riders", "4000"}); err != nil {
		t.Fatal(err)
	}
	parts := splitByRider(t, events, dedups)
	base := append([]string{"-serve=", "-progress=never", "-parallelism=1"}, smallDef...)
	single := filepath.Join(dir, "single.ndjson")
	if err := runCommand(append([]string{"-source=file:" + events, "-sink=ndjson:" + single}, base...)); err != nil {
		t.Fatal(err)
	}
	common := append([]string{"-scaleout.url=" + s.URL(), "-scaleout.topic=" + pulsarTopic(t), "-scaleout.region-res=6", fmt.Sprint("-scaleout.dedups=", dedups)}, base...)
	ranges := []string{"0-21844", "21845-43689", "43690-65535"}
	done := make(chan error, len(ranges))
	var outs []string
	for i, r := range ranges {
		out := filepath.Join(dir, "agg"+string(rune('a'+i))+".ndjson")
		outs = append(outs, out)
		go func() {
			done <- runCommand(append([]string{"-role=aggregate", "-scaleout.ranges=" + r, "-sink=ndjson:" + out}, common...))
		}()
	}
	dedupDone := make(chan error, dedups)
	for d, part := range parts {
		go func() {
			dedupDone <- runCommand(append([]string{"-role=dedup", "-source=file:" + part, fmt.Sprint("-scaleout.dedup-id=", d)}, common...))
		}()
	}
	for range parts {
		if err := <-dedupDone; err != nil {
			t.Fatal(err)
		}
	}
	for range ranges {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	lines := func(path string) []string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	}
	want := lines(single)
	var got []string
	for i, o := range outs {
		l := lines(o)
		if len(l) < 2 {
			t.Errorf("aggregate process %d (%s) wrote %d rows: the test no longer splits the work", i, ranges[i], len(l))
		}
		got = append(got, l...)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("%d rows from the aggregate processes, %d from one process", len(got), len(want))
	}
	t.Logf("%d rows equal", len(got))
}

// splitByRider writes the events of path into n files, a rider's events
// all in one (by a hash of rider_id), in their order.
func splitByRider(t *testing.T, path string, n int) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	outs := make([][]byte, n)
	for line := range strings.Lines(string(b)) {
		i := strings.Index(line, `"rider_id":"`)
		rider := line[i+12 : i+12+strings.IndexByte(line[i+12:], '"')]
		k := int(xxhash.Sum64String(rider) % uint64(n))
		outs[k] = append(outs[k], line...)
	}
	var paths []string
	for k, o := range outs {
		p := fmt.Sprintf("%s.part%d", path, k)
		if err := os.WriteFile(p, o, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}
