package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDefinitionsFile (issue 23): run -definitions=FILE writes each
// definition's rows, the first to the -sink file and the others beside it
// under their names, each byte for byte what a run of that definition
// alone writes with the shorthand flags; the shorthand flags beside the
// file, a store sink and stdout are refused with what to do.
func TestDefinitionsFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	events := genEvents(t, dir, 30_000)
	defs := filepath.Join(dir, "defs.yaml")
	if err := os.WriteFile(defs, []byte(`
- name: base
  resolution: 8
  rings: [0, 1, 2, 3, 5]
  windows: [1, 2, 4, 8, 16]
- name: fine
  resolution: 9
  rings: [0, 2, 7]
  windows: [3, 5, 1]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(out string, args ...string) {
		t.Helper()
		if err := runCommand(append([]string{"-source=file:" + events, "-sink=ndjson:" + out, "-progress=never", "-log.level=warn"}, args...)); err != nil {
			t.Fatal(err)
		}
	}
	both := filepath.Join(dir, "rows.ndjson")
	run(both, "-definitions="+defs)
	run(filepath.Join(dir, "base.ndjson"), smallDef...)
	run(filepath.Join(dir, "fine.ndjson"), "-h3.resolution=9", "-kring.rings=0,2,7", "-windows.minutes=3,5,1")
	for got, want := range map[string]string{"rows.ndjson": "base.ndjson", "rows.fine.ndjson": "fine.ndjson"} {
		g, err := os.ReadFile(filepath.Join(dir, got))
		if err != nil {
			t.Fatal(err)
		}
		w, _ := os.ReadFile(filepath.Join(dir, want))
		if len(w) == 0 || !bytes.Equal(g, w) {
			t.Errorf("%s (%d bytes) differs from the run of its definition alone, %s (%d bytes)", got, len(g), want, len(w))
		}
	}
	// Into stores: the first definition's in DIR, each other's in DIR.NAME,
	// each equal to a store written by its definition alone; a second run
	// resumes every definition and adds nothing.
	st := filepath.Join(dir, "st")
	for range 2 {
		if err := runCommand(storeArgs("file:"+events, st, "-definitions="+defs)); err != nil {
			t.Fatal(err)
		}
	}
	alone := filepath.Join(dir, "fine-alone")
	if err := runCommand(storeArgs("file:"+events, alone, "-h3.resolution=9", "-kring.rings=0,2,7", "-windows.minutes=3,5,1")); err != nil {
		t.Fatal(err)
	}
	compareStores(t, st+".fine", alone)

	src := "-source=file:" + events
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{src, "-sink=ndjson:" + both, "-h3.resolution=9"}, "drop -h3.resolution or put it in the file"},
		{[]string{src, "-sink=cassandra://127.0.0.1:1/ks"}, "only store:DIR, ndjson:FILE and null: take several definitions so far"},
		{[]string{src, "-sink=ndjson:-"}, "stdout holds one definition's rows"},
		// definition fine would write rows.fine.ndjson, the input here
		{[]string{"-source=file:" + filepath.Join(dir, "rows.fine.ndjson"), "-sink=ndjson:" + both}, "name the same file"},
	} {
		err := runCommand(append([]string{"-definitions=" + defs, "-progress=never"}, tc.args...))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}
