package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOutputOverInputRefused: an output path that names the input (or
// another output), however spelled, is refused before anything is opened
// for writing, and the input is left whole; before, `run -source=file:X
// -sink=ndjson:X` truncated X while reading it.
func TestOutputOverInputRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	events := filepath.Join(dir, "events.ndjson")
	if err := genCommand([]string{"-o", events, "-events", "2000", "-rate", "2000", "-riders", "500"}); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(events)
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.ndjson")
	if err := os.Symlink(events, link); err != nil {
		t.Fatal(err)
	}
	rows := filepath.Join(dir, "rows.ndjson")
	other := filepath.Join(dir, "sub", "..", "events.ndjson") // another spelling
	for _, args := range [][]string{
		{"-source=file:" + events, "-sink=ndjson:" + events},
		{"-source=file:" + events, "-sink=null:", "-rejects=" + events},
		{"-source=file:" + events, "-sink=ndjson:" + link},
		{"-source=file:" + link, "-sink=null:", "-rejects=" + other},
		{"-source=file:" + events, "-sink=ndjson:" + rows, "-rejects=" + rows},
	} {
		err := runCommand(append(args, "-progress=never", "-serve="))
		if err == nil || !strings.Contains(err.Error(), "name the same file") {
			t.Errorf("%v: err = %v, want a refusal", args, err)
		}
	}
	if err := genCommand([]string{"-from-csv", events, "-o", events}); err == nil || !strings.Contains(err.Error(), "name the same file") {
		t.Errorf("gen -from-csv X -o X: err = %v, want a refusal", err)
	}
	after, err := os.ReadFile(events)
	if err != nil || string(after) != string(before) {
		t.Fatalf("the input changed: %d bytes before, %d after (%v)", len(before), len(after), err)
	}
	if _, err := os.Stat(rows); err == nil {
		t.Error("rows.ndjson was created by a refused run")
	}
	// Different files still run.
	if err := runCommand([]string{"-source=file:" + events, "-sink=ndjson:" + rows, "-rejects=" + filepath.Join(dir, "rejects.ndjson"), "-progress=never", "-serve=", "-kring.rings=0", "-windows.minutes=1"}); err != nil {
		t.Fatal(err)
	}
}
