package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/internal/cqltest"
	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/internal/testsize"
	"github.com/demandpipe/demandpipe/store"
)

// TestGenThenRun is the newcomer's path: gen a file, replay it, read rows.
func TestGenThenRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	events := filepath.Join(dir, "events.ndjson.zst")
	rows := filepath.Join(dir, "rows.ndjson")
	rejects := filepath.Join(dir, "rejects.ndjson")
	nEvents := testsize.Pick(10000, 30000)
	if err := genCommand([]string{"-o", events, "-events", fmt.Sprint(nEvents), "-rate", "10000", "-riders", "3000", "-malformed", "0.01"}); err != nil {
		t.Fatal(err)
	}
	// The default definition in the long set; smaller disks in the short.
	if err := runCommand(append([]string{"-source=file:" + events, "-sink=ndjson:" + rows, "-rejects=" + rejects, "-progress=never"}, testsize.Pick(smallDef, nil)...)); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(rows)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	var last time.Time
	for sc.Scan() {
		var r struct {
			H3          string  `json:"h3"`
			ProductType string  `json:"product_type"`
			Minute      string  `json:"minute"`
			Features    []int64 `json:"features"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("row %d: %v", n, err)
		}
		m, err := time.Parse(time.RFC3339, r.Minute)
		if err != nil || len(r.H3) != 15 || len(r.ProductType) != 36 || len(r.Features) != testsize.Pick(25, 54) || m.Before(last) {
			t.Fatalf("row %d: %s", n, sc.Text())
		}
		last = m
		n++
	}
	if n == 0 {
		t.Fatal("no rows")
	}
	rej, _ := os.ReadFile(rejects)
	if c := strings.Count(string(rej), "\n"); c < nEvents/300 || c > nEvents/60 {
		t.Fatalf("%d rejected lines for 1%% of %d malformed", c, nEvents)
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-h3.resolution=16"},
		{"-kring.rings=1,x"},
		{"-windows.minutes=0"},
		{"-sink=kafka:x"},
		{"-source=nope"},
		{"-progress=sometimes"},
	} {
		if err := runCommand(args); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

// TestOlderReplayIntoStoreFails: replaying older data into a store that
// holds newer minutes used to drop every row silently and exit 0; now the
// run stops with an error naming the minute, the window and the way out.
func TestOlderReplayIntoStoreFails(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	newer, older := filepath.Join(dir, "newer.ndjson"), filepath.Join(dir, "older.ndjson")
	for f, start := range map[string]string{newer: "2024-06-01T12:00:00Z", older: "2024-06-01T08:00:00Z"} {
		if err := genCommand([]string{"-o", f, "-events", "20000", "-rate", "10000", "-riders", "2000", "-start", start}); err != nil {
			t.Fatal(err)
		}
	}
	st := "-sink=store:" + filepath.Join(dir, "store")
	if err := runCommand([]string{"-source=file:" + newer, st, "-serve=", "-progress=never", "-kring.rings=0,1", "-windows.minutes=1,2"}); err != nil {
		t.Fatal(err)
	}
	err := runCommand([]string{"-source=file:" + older, st, "-serve=", "-progress=never", "-kring.rings=0,1", "-windows.minutes=1,2"})
	if err == nil || !strings.Contains(err.Error(), "minute 2024-06-01T0") || !strings.Contains(err.Error(), "retention window") || !strings.Contains(err.Error(), "-sink=store:NEWDIR") {
		t.Fatalf("older replay: err = %v", err)
	}
}

// TestFewRidersCannotMoveTheStoreClock is issue 21 point 4: made-up rider
// ids carrying the current time, appended to a 2024 replay into a store.
// Fifteen (fewer than -windows.future-confirm-riders) are closed at the end
// of the input, as the last riders of a thin night are, but do not move the
// store's retention clock: every 2024 minute stays (was: every one
// expired), and a later run of the next hour still writes. Sixteen would.
func TestFewRidersCannotMoveTheStoreClock(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	dir := t.TempDir()
	replay, next := filepath.Join(dir, "replay.ndjson"), filepath.Join(dir, "next.ndjson")
	for f, start := range map[string]string{replay: "2024-06-01T10:00:00Z", next: "2024-06-01T10:30:00Z"} {
		if err := genCommand([]string{"-o", f, "-events", "20000", "-rate", "1000", "-riders", "2000", "-start", start}); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.OpenFile(replay, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	for i := range 15 {
		fmt.Fprintf(f, `{"ts":%d,"rider_id":"made-up-%d","lat":40.758,"lng":-73.9855,"product_type":"a1b2c3d4-0000-4000-8000-000000000001"}`+"\n", now-int64(i)*1000, i)
	}
	f.Close()
	storeDir := filepath.Join(dir, "store")
	args := []string{"-sink=store:" + storeDir, "-serve=", "-progress=never", "-kring.rings=0,1", "-windows.minutes=1,2"}
	if err := runCommand(append([]string{"-source=file:" + replay}, args...)); err != nil {
		t.Fatal(err)
	}
	c := store.DefaultConfig()
	c.Dir, c.ReadOnly = storeDir, true
	s, err := store.Open(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	mins := s.Minutes(nil)
	s.Close()
	var replayed []string
	for _, m := range mins {
		if ts := encode.MinuteStart(m.Minute); ts.Year() == 2024 {
			replayed = append(replayed, ts.Format("15:04"))
		}
	}
	// 20,000 events at 1,000 a minute: minutes 10:00-10:19 and their
	// windows' trailing minute; the made-up riders are the input's tail
	// (fewer than K, nobody after them), so the end closes their minutes
	// too: one, or two when their 15 seconds cross a minute.
	if extra := len(mins) - len(replayed); len(replayed) < 20 || extra < 1 || extra > 2 {
		t.Fatalf("after the made-up riders the store lists %d minutes, %d of the replay: %v", len(mins), len(replayed), replayed)
	}
	if err := runCommand(append([]string{"-source=file:" + next}, args...)); err != nil {
		t.Fatalf("the next hour after the attack: %v", err)
	}
}

// TestAllRejectedFails: a run in which no line is a valid event (here CR
// line endings, so the whole file is one over-long line or bad JSON)
// exits non-zero instead of reporting success.
func TestAllRejectedFails(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := filepath.Join(dir, "cr.ndjson")
	line := `{"ts":1717236000000,"rider_id":"a","lat":40.7,"lng":-73.9,"product_type":"a1b2c3d4-0000-4000-8000-000000000001"}`
	if err := os.WriteFile(f, []byte(strings.Repeat(line+"\r", 50)), 0o644); err != nil {
		t.Fatal(err)
	}
	err := runCommand([]string{"-source=file:" + f, "-sink=null:", "-progress=never"})
	if err == nil || !strings.Contains(err.Error(), "no valid event") {
		t.Fatalf("err = %v", err)
	}
}

// TestRunIntoCassandra: `run -sink=cassandra://…` through the CQL test
// double: the schema is created, every row the engine emitted is stored,
// and the queue flags reach the sink (every batch of one partition, at
// most -sink.writers in flight).
func TestRunIntoCassandra(t *testing.T) {
	t.Parallel()
	srv, err := cqltest.Start(cqltest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	dir := t.TempDir()
	events, rows := filepath.Join(dir, "events.ndjson"), filepath.Join(dir, "rows.ndjson")
	if err := genCommand([]string{"-o", events, "-events", "20000", "-rate", "10000", "-riders", "2000"}); err != nil {
		t.Fatal(err)
	}
	def := []string{"-kring.rings=0,1,2", "-windows.minutes=1,4", "-progress=never"}
	if err := runCommand(append([]string{"-source=file:" + events, "-sink=ndjson:" + rows}, def...)); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(rows)
	want := strings.Count(string(b), "\n")
	url := fmt.Sprintf("cassandra://127.0.0.1:%d/demandpipe?create=true&rf=1", srv.Port())
	if err := runCommand(append([]string{"-source=file:" + events, "-sink=" + url, "-sink.writers=3", "-sink.batch-rows=20"}, def...)); err != nil {
		t.Fatal(err)
	}
	got, err := srv.Rows("demandpipe", "features")
	if err != nil || got != want || want == 0 {
		t.Fatalf("%d rows in the test double (%v), the engine emitted %d", got, err, want)
	}
	st := srv.Stats()
	if st.InFlightPeak > 3+1 { // 3 writers, plus the driver's own start-up queries
		t.Fatalf("in-flight peak %d with -sink.writers=3", st.InFlightPeak)
	}
}

// TestHelpGoesToStdout: `demandpipe help run` prints the flags on stdout (so
// `| grep` finds them) and exits 0; `help nosuch` exits 2.
func TestHelpGoesToStdout(t *testing.T) {
	if args := os.Getenv("DEMANDPIPE_MAIN_ARGS"); args != "" {
		os.Args = append([]string{"demandpipe"}, strings.Fields(args)...)
		main()
		os.Exit(0)
	}
	t.Parallel()
	run := func(args string) (string, int) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelpGoesToStdout$")
		cmd.Env = append(os.Environ(), "DEMANDPIPE_MAIN_ARGS="+args)
		var stdout strings.Builder
		cmd.Stdout = &stdout
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return stdout.String(), code
	}
	if out, code := run("help run"); code != 0 || !strings.Contains(out, "-windows.max-future-skew") || !strings.Contains(out, "source: where events come from") {
		t.Fatalf("help run: exit %d, stdout %.300q", code, out)
	}
	if _, code := run("help nosuch"); code != 2 {
		t.Fatalf("help nosuch: exit %d", code)
	}
}

// TestLogFormatJSON: with -log.format=json every log line on stderr is a
// JSON object, with one "minute closed" line per closed minute; the human
// summary follows.
func TestLogFormatJSON(t *testing.T) {
	dir := t.TempDir()
	events := filepath.Join(dir, "events.ndjson")
	if err := genCommand([]string{"-o", events, "-events", "20000", "-rate", "5000", "-riders", "2000"}); err != nil {
		t.Fatal(err)
	}
	r, w, _ := os.Pipe()
	stderr := os.Stderr
	os.Stderr = w
	err := runCommand([]string{"-source=file:" + events, "-sink=null:", "-progress=never", "-log.format=json", "-kring.rings=0,1", "-windows.minutes=1,2"})
	w.Close()
	os.Stderr = stderr
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(r)
	closes := 0
	for _, l := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(l, "{") {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("not JSON: %s", l)
		}
		if rec["msg"] == "minute closed" {
			closes++
			if rec["level"] != "INFO" || rec["minute"] == nil || rec["rows"] == nil {
				t.Fatalf("minute line: %s", l)
			}
		}
	}
	if closes < 4 || !strings.Contains(string(out), "minutes closed") {
		t.Fatalf("%d minute lines in:\n%s", closes, out)
	}
	if err := runCommand([]string{"-log.format=xml"}); err == nil {
		t.Fatal("-log.format=xml accepted")
	}
}

// TestMisspelledFlagSuggests: a mistyped flag gets the error, the nearest
// flags and where the full list is: a few lines, not the whole help.
// (Not parallel: it sets helpOut.)
func TestMisspelledFlagSuggests(t *testing.T) {
	var out strings.Builder
	helpOut = &out
	defer func() { helpOut = nil }()
	for _, tc := range []struct {
		run  func([]string) error
		args []string
		want string
	}{
		{runCommand, []string{"-sink.writer=4"}, "did you mean -sink.writers?"},
		{runCommand, []string{"-kring.ring=0,1"}, "did you mean -kring.rings?"},
		{genCommand, []string{"-event=3"}, "did you mean -events?"},
		{runCommand, []string{"-zzzzzzzz"}, "demandpipe help run lists every flag"},
	} {
		out.Reset()
		if err := tc.run(tc.args); err == nil {
			t.Errorf("%v accepted", tc.args)
		}
		if got := out.String(); !strings.Contains(got, tc.want) || strings.Count(got, "\n") > 4 {
			t.Errorf("%v: output %q, want a few lines with %q", tc.args, got, tc.want)
		}
	}
}

// TestProductsFlag: -products=FILE loads the products file when the flag is
// parsed (a bad line stops run with the file and line named), and admits
// only its products: another product type is rejected as unknown_product.
func TestProductsFlag(t *testing.T) {
	var out strings.Builder // not parallel: helpOut is the package's
	helpOut = &out
	defer func() { helpOut = nil }()
	dir := t.TempDir()
	events, bad, good := filepath.Join(dir, "events.ndjson"), filepath.Join(dir, "bad.csv"), filepath.Join(dir, "good.csv")
	const known = "a1b2c3d4-0000-4000-8000-000000000001"
	lines := `{"ts":1717236000000,"rider_id":"a","lat":40.758,"lng":-73.9855,"product_type":"` + known + `"}` + "\n" +
		`{"ts":1717236001000,"rider_id":"b","lat":40.758,"lng":-73.9855,"product_type":"b1b2c3d4-0000-4000-8000-000000000002"}` + "\n"
	for f, text := range map[string]string{events: lines, bad: known + ",uberX\nnot-a-uuid,Pool\n", good: "uuid,name\n" + known + ",uberX\n"} {
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	err := runCommand([]string{"-source=file:" + events, "-sink=null:", "-progress=never", "-products=" + bad})
	if err == nil || !strings.Contains(out.String(), "-products: "+bad+": line 2: \"not-a-uuid\"") {
		t.Fatalf("bad products file: %v\n%s", err, out.String())
	}
	rejects := filepath.Join(dir, "rejects.ndjson")
	if err := runCommand([]string{"-source=file:" + events, "-sink=null:", "-progress=never", "-products=" + good, "-rejects=" + rejects}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(rejects)
	if err != nil || !strings.Contains(string(b), `{"line":2,"reason":"unknown_product"`) || strings.Count(string(b), "\n") != 1 {
		t.Fatalf("rejects: %s %v", b, err)
	}
}

// TestMisspelledCommandSuggests: a mistyped command gets one line naming
// the nearest commands and where the list is, not the whole usage.
func TestMisspelledCommandSuggests(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"rnu":     `unknown command "rnu": did you mean run? (demandpipe help lists the commands)`,
		"sevre":   `unknown command "sevre": did you mean serve?`,
		"tun":     `did you mean run or tune?`,
		"zzzzzzz": `unknown command "zzzzzzz" (demandpipe help lists the commands)`,
	} {
		if got := suggestCommand(in); !strings.Contains(`unknown command "`+in+`"`+got, want) {
			t.Errorf("%s: %q, want %q", in, got, want)
		}
	}
	for _, c := range commands {
		if got := suggestCommand(c); !strings.Contains(got, "did you mean "+c) {
			t.Errorf("%s itself is not its own nearest command: %q", c, got)
		}
	}
}
