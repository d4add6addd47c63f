package main

import (
	"encoding/json"
	"flag"
	"io"
	"os"
	"testing"
)

// TestConfigListsEveryKnob: `demandpipe config -format=json` lists every
// flag of run once, grouped by stage with the source and the sink first.
func TestConfigListsEveryKnob(t *testing.T) {
	r, w, _ := os.Pipe()
	stdout := os.Stdout
	os.Stdout = w
	err := configCommand([]string{"-format=json"})
	w.Close()
	os.Stdout = stdout
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	var knobs []struct{ Stage, Flag, Default, Usage string }
	if err := json.Unmarshal(b, &knobs); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	want := map[string]bool{}
	newRunFlags().fs.VisitAll(func(f *flag.Flag) { want["-"+f.Name] = true })
	got := map[string]string{}
	for _, k := range knobs {
		if got[k.Flag] != "" {
			t.Fatalf("%s listed twice", k.Flag)
		}
		got[k.Flag] = k.Stage
	}
	if len(got) != len(want) || len(knobs) < 40 {
		t.Fatalf("%d knobs listed, run has %d", len(got), len(want))
	}
	if knobs[0].Flag != "-source" || got["-sink"] != "sink" || got["-sink.writers"] != "sink" || got["-windows.max-future-skew"] != "windows" || got["-parallelism"] != "run" {
		t.Fatalf("grouping: first %s, %v", knobs[0].Flag, got)
	}
}
