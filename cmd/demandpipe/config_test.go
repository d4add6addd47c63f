package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigListsEveryKnob: `demandpipe config -format=json` lists every
// flag of run once, grouped by stage with the source and the sink first.
func TestConfigListsEveryKnob(t *testing.T) {
	b := captureStdout(t, func() error { return configCommand([]string{"-format=json"}) })
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

// TestConfigFile: `config -format=yaml` prints every knob of run, and the
// file loads back to the same settings; keys are the flags (a list may be
// YAML's or the flag's own), the command line overrides the file whatever
// the order, and an unknown key or a bad value is refused with the file,
// the line and a suggestion.
func TestConfigFile(t *testing.T) {
	yml := captureStdout(t, func() error { return configCommand([]string{"-format=yaml"}) })
	want, got := newRunFlags(), newRunFlags()
	if err := loadConfig(got.fs, "defaults.yaml", yml); err != nil {
		t.Fatalf("%v\n%s", err, yml)
	}
	n := 0
	want.fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" {
			return
		}
		n++
		if g := got.fs.Lookup(f.Name).Value.String(); g != f.Value.String() {
			t.Errorf("%s: %q after loading the printed file, default %q", f.Name, g, f.Value.String())
		}
		set := false
		got.fs.Visit(func(v *flag.Flag) { set = set || v.Name == f.Name })
		if !set {
			t.Errorf("%s: not in the printed file", f.Name)
		}
	})
	if n < 40 {
		t.Fatalf("only %d flags compared", n)
	}

	dir := t.TempDir()
	file := filepath.Join(dir, "run.yaml")
	if err := os.WriteFile(file, []byte("# settings\nsink.writers: 3\nkring.rings: [0, 1, 2]\nwindows.minutes: 1,4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rf := newRunFlags()
	args := []string{"-sink.writers=5", "-config=" + file}
	if err := applyConfigFile(rf.fs, args); err != nil {
		t.Fatal(err)
	}
	if err := rf.fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	if w := rf.fs.Lookup("sink.writers").Value.String(); w != "5" || fmt.Sprint(rf.cfg.Pipeline.Def.Rings) != "[0 1 2]" || fmt.Sprint(rf.cfg.Pipeline.Def.Windows) != "[1 4]" {
		t.Fatalf("writers %s (want the flag's 5 over the file's 3), rings %v, windows %v", rf.fs.Lookup("sink.writers").Value, rf.cfg.Pipeline.Def.Rings, rf.cfg.Pipeline.Def.Windows)
	}
	for text, want := range map[string]string{
		"sink.writer: 4\n":                     `line 1: unknown key "sink.writer" (keys are run's flags without the dash): did you mean sink.writers?`,
		"# a comment\nh3.resolution: 99x\n":    "line 2: h3.resolution: ",
		"sink.writers: 1\nsink.writers: 2\n":   "line 2: sink.writers given twice (first on line 1)",
		"- a\n- b\n":                           "want a mapping of flag names to values",
		"kring.rings: {a: 1}\n":                "not a mapping",
		"config: other.yaml\n":                 `unknown key "config"`,
		"windows.lateness: [1s, [2s]]\n":       "want a list of values",
		"sink.writers: 3\n\tbad indentation\n": "-config=" + file,
	} {
		if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		err := applyConfigFile(newRunFlags().fs, []string{"-config", file})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", text, err, want)
		}
	}
	if err := applyConfigFile(newRunFlags().fs, []string{"-config=" + file + ".missing"}); err == nil || !strings.Contains(err.Error(), "-config: open ") {
		t.Errorf("missing file: %v", err)
	}
}

// captureStdout is what fn writes on os.Stdout (the test swaps it: not
// parallel).
func captureStdout(t *testing.T, fn func() error) []byte {
	t.Helper()
	r, w, _ := os.Pipe()
	stdout := os.Stdout
	os.Stdout = w
	out := make(chan []byte)
	go func() { b, _ := io.ReadAll(r); out <- b }()
	err := fn()
	w.Close()
	os.Stdout = stdout
	b := <-out
	if err != nil {
		t.Fatal(err)
	}
	return b
}
