package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestRolesOverPulsarEqualOneProcess: `run -role=dedup` and three
// `run -role=aggregate` processes on sticky hash ranges, through the
// Pulsar test double, write together exactly the rows of one `run` of the
// same file, each row once.
func TestRolesOverPulsarEqualOneProcess(t *testing.T) {
	s := startPulsar(t)
	dir := t.TempDir()
	events := genEvents(t, dir, 30_000)
	base := append([]string{"-serve=", "-progress=never", "-parallelism=1"}, smallDef...)
	single := filepath.Join(dir, "single.ndjson")
	if err := runCommand(append([]string{"-source=file:" + events, "-sink=ndjson:" + single}, base...)); err != nil {
		t.Fatal(err)
	}
	common := append([]string{"-scaleout.url=" + s.URL(), "-scaleout.topic=" + pulsarTopic(t), "-scaleout.region-res=6"}, base...)
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
	if err := runCommand(append([]string{"-role=dedup", "-source=file:" + events}, common...)); err != nil {
		t.Fatal(err)
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
