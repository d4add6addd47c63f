package main

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/internal/pulsartest"
	"github.com/demandpipe/demandpipe/internal/syncbuf"
	"github.com/demandpipe/demandpipe/internal/testsize"
	"github.com/demandpipe/demandpipe/store"
)

// TestRolesOverPulsarEqualOneProcess: `run -role=dedup` processes (one;
// two, the riders split between them as a Key_Shared subscription by rider
// would) and three `run -role=aggregate` processes on sticky hash ranges,
// through the Pulsar test double, write together exactly the rows of one
// `run` of the same file, each row once.
func TestRolesOverPulsarEqualOneProcess(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	for _, dedups := range []int{1, 2} {
		t.Run(fmt.Sprintf("dedups=%d", dedups), func(t *testing.T) { testRoles(t, startPulsar(t).URL(), pulsarTopic(t), dedups) })
	}
}

// testRoles runs the deployment against the broker at url (the test
// double, or a real Pulsar: the integration suite), on topic.
func testRoles(t *testing.T, url, topic string, dedups int) {
	dir := t.TempDir()
	events := filepath.Join(dir, "events.ndjson")
	// No late events: a dedup process sees only its riders, so its
	// watermark, and so lateness, differ from one process's.
	n := 30000 // 5 minutes
	if raceEnabled {
		n = 18000 // 3 minutes: each process runs ~5x slower under -race
	}
	if err := genCommand([]string{"-o", events, "-events", fmt.Sprint(n), "-rate", "6000", "-riders", "4000"}); err != nil {
		t.Fatal(err)
	}
	parts := splitByRider(t, events, dedups)
	base := append([]string{"-serve=", "-progress=never", "-parallelism=1"}, smallDef...)
	single := filepath.Join(dir, "single.ndjson")
	if err := runCommand(append([]string{"-source=file:" + events, "-sink=ndjson:" + single}, base...)); err != nil {
		t.Fatal(err)
	}
	common := append([]string{"-scaleout.url=" + url, "-scaleout.topic=" + topic, "-scaleout.region-res=6", fmt.Sprint("-scaleout.dedups=", dedups)}, base...)
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
	lines := func(path string) []string { return ndjsonLines(t, path) }
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

// TestAggregateRoleKilledAndRestarted: one `run -role=dedup` and three
// `run -role=aggregate` processes, each aggregate process with its own
// store; one aggregate process is killed with SIGKILL after its first
// commits, while the stream goes on, and started again with the same
// flags: the three stores together hold exactly the rows of one `run` of
// the same file.
func TestAggregateRoleKilledAndRestarted(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	s := startPulsar(t)
	dir := t.TempDir()
	// 4 minutes of events (long: 20). The dedup process reads them from a
	// pipe that the test fills: the first 60% (two minutes and more, so
	// the first minute closes), then, once the second aggregate process is
	// killed, the rest. So the kill always lands mid-stream, however fast
	// or slow the machine.
	n := testsize.Pick(24000, 120000)
	events := filepath.Join(dir, "events.ndjson")
	if err := genCommand([]string{"-o", events, "-events", fmt.Sprint(n), "-rate", "6000", "-riders", "4000"}); err != nil {
		t.Fatal(err)
	}
	base := append([]string{"-serve=", "-progress=never", "-parallelism=1"}, smallDef...)
	single := filepath.Join(dir, "single")
	if err := runCommand(append([]string{"-source=file:" + events, "-sink=store:" + single}, base...)); err != nil {
		t.Fatal(err)
	}
	topic := pulsarTopic(t)
	common := append([]string{"-scaleout.url=" + s.URL(), "-scaleout.topic=" + topic, "-scaleout.region-res=6"}, base...)
	ranges := []string{"0-21844", "21845-43689", "43690-65535"}
	stores := make([]string, len(ranges))
	args := make([][]string, len(ranges))
	dones := make([]<-chan error, len(ranges))
	stderrs := make([]*syncbuf.Buffer, len(ranges))
	cmds := make([]*exec.Cmd, len(ranges))
	for i, r := range ranges {
		stores[i] = filepath.Join(dir, fmt.Sprint("agg", i))
		args[i] = append([]string{"-role=aggregate", "-scaleout.ranges=" + r, "-sink=store:" + stores[i]}, common...)
		cmds[i], stderrs[i], dones[i] = runSubprocess(t, args[i])
	}
	pipe, rest := gatedPipe(t, events, 0.6)
	dedupDone := make(chan error, 1)
	go func() {
		// A pipe is a live input: the idle clock must not move event time
		// while the test holds the rest back.
		dedupDone <- runCommand(append([]string{"-role=dedup", "-source=file:" + pipe, "-windows.idle-timeout=1h"}, common...))
	}()
	// Some minutes are committed and acknowledged: kill the second process.
	if _, ok := waitAcked(t, s, topic, "demandpipe-aggregate", 0, dones[1]); !ok {
		t.Fatalf("the aggregate process ended before it acknowledged anything:\n%s", stderrs[1])
	}
	cmds[1].Process.Signal(syscall.SIGKILL)
	if err := <-dones[1]; err == nil {
		t.Fatalf("SIGKILL: the aggregate process had ended already\n%s", lastLines(stderrs[1].String(), 5))
	}
	close(rest)
	_, stderrs[1], dones[1] = runSubprocess(t, args[1])
	if err := <-dedupDone; err != nil {
		t.Fatal(err)
	}
	for i := range ranges {
		if err := <-dones[i]; err != nil {
			t.Fatalf("aggregate process %d: %v\n%s", i, err, lastLines(stderrs[i].String(), 8))
		}
	}
	restarted := stderrs[1].String()
	if !strings.Contains(restarted, "events dropped as committed already") {
		t.Fatalf("no transport summary from the restarted process:\n%s", lastLines(restarted, 8))
	}
	t.Logf("restarted process: %s", lastLines(restarted, 1))
	want, got := storeRows(t, single), map[string]string{}
	for i, st := range stores {
		rows := storeRows(t, st)
		if len(rows) == 0 {
			t.Errorf("aggregate process %d (%s) stored no row: the test no longer splits the work", i, ranges[i])
		}
		maps.Copy(got, rows)
	}
	diff := 0
	for k, v := range want {
		if got[k] != v {
			if diff == 0 {
				t.Errorf("first difference at %s: got %q want %q", k, got[k], v)
			}
			diff++
		}
	}
	if diff > 0 || len(got) != len(want) {
		t.Fatalf("%d of %d rows differ; %d stored by the aggregate processes", diff, len(want), len(got))
	}
	t.Logf("%d rows equal", len(got))
}

// gatedPipe makes a named pipe that gives the lines of path: the first
// fraction of them at once, the rest once the returned channel is closed,
// then the end of the input. A test that must act mid-stream (a kill) holds
// the rest back until it has.
func gatedPipe(t *testing.T, path string, fraction float64) (string, chan struct{}) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cut := lineCut(b, fraction)
	pipe := path + ".pipe"
	if err := syscall.Mkfifo(pipe, 0o600); err != nil {
		t.Fatal(err)
	}
	rest := make(chan struct{})
	go func() {
		f, err := os.OpenFile(pipe, os.O_WRONLY, 0)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		if _, err := f.Write(b[:cut]); err != nil {
			t.Error(err)
			return
		}
		<-rest
		if _, err := f.Write(b[cut:]); err != nil {
			t.Error(err)
		}
	}()
	return pipe, rest
}

// storeRows reads every row of the store at dir, keyed by minute, product
// and cell.
func storeRows(t *testing.T, dir string) map[string]string {
	t.Helper()
	c := store.DefaultConfig()
	c.Dir, c.ReadOnly = dir, true
	s, err := store.Open(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out := map[string]string{}
	for _, m := range s.Minutes(nil) {
		for _, p := range s.Products() {
			group := fmt.Sprint(m.Minute, p)
			if err := s.Scan(m.Minute, p, func(cell uint64, f []int32) bool {
				out[group+rowString(cell, nil)] = rowString(0, f)
				return true
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

// dedupDeployment is the fixture of the dedup-role tests: n generated
// events, the first 60% of them on a raw topic (published with
// publishArgs) and the rest held back for publishRest, the rows of one
// `run` of them all, and three aggregate processes (ndjson sinks) running.
// Holding the rest back makes a test's stop land mid-stream whatever the
// machine's speed.
type dedupDeployment struct {
	s           *pulsartest.Server
	raw         string   // the raw topic
	common      []string // the flags every role shares
	single      string   // one run's rows
	outs        []string // the aggregate processes' rows
	done        chan error
	rest        string   // the events not published yet
	publishArgs []string // their publish flags
}

func startDedupDeployment(t *testing.T, n int, publishArgs ...string) *dedupDeployment {
	t.Helper()
	return startDedupDeploymentOn(t, startPulsar(t), 0, n, publishArgs...)
}

// startDedupDeploymentOn is startDedupDeployment on broker s, with a raw
// topic of partitions partitions (0: not partitioned).
func startDedupDeploymentOn(t *testing.T, s *pulsartest.Server, partitions, n int, publishArgs ...string) *dedupDeployment {
	t.Helper()
	d := &dedupDeployment{s: s, raw: pulsarTopic(t) + "-raw", done: make(chan error, 3), publishArgs: publishArgs}
	if partitions > 0 {
		if err := s.CreatePartitionedTopic(d.raw, partitions); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	events := filepath.Join(dir, "events.ndjson")
	if err := genCommand([]string{"-o", events, "-events", fmt.Sprint(n), "-rate", "6000", "-riders", "4000"}); err != nil {
		t.Fatal(err)
	}
	parts := splitLines(t, events, 0.6)
	d.rest = parts[1]
	d.publish(t, parts[0])
	base := append([]string{"-serve=", "-progress=never", "-parallelism=1"}, smallDef...)
	d.single = filepath.Join(dir, "single.ndjson")
	if err := runCommand(append([]string{"-source=file:" + events, "-sink=ndjson:" + d.single}, base...)); err != nil {
		t.Fatal(err)
	}
	d.common = append([]string{"-scaleout.url=" + d.s.URL(), "-scaleout.topic=" + pulsarTopic(t), "-scaleout.region-res=6"}, base...)
	for i, r := range []string{"0-21844", "21845-43689", "43690-65535"} {
		out := filepath.Join(dir, fmt.Sprint("agg", i, ".ndjson"))
		d.outs = append(d.outs, out)
		// Processes, as deployed (children without -race: the engine's
		// races are looked for in process by pipeline's and scaleout's
		// tests; here three race-instrumented aggregators were most of
		// the CPU).
		d.child(t, append([]string{"-role=aggregate", "-scaleout.ranges=" + r, "-sink=ndjson:" + out}, d.common...))
	}
	return d
}

// child runs one process of the deployment; its end goes to d.done, with
// its last lines when it failed.
func (d *dedupDeployment) child(t *testing.T, args []string) {
	t.Helper()
	cmd, stderr, done := runSubprocess(t, args)
	t.Cleanup(func() { cmd.Process.Kill() }) // a test that failed early leaves none behind
	go func() {
		if err := <-done; err != nil {
			d.done <- fmt.Errorf("%v: %w\n%s", args[:2], err, lastLines(stderr.String(), 8))
			return
		}
		d.done <- nil
	}()
}

func (d *dedupDeployment) publish(t *testing.T, path string) {
	t.Helper()
	if err := publishCommand(append(append([]string{"-to=" + d.s.URL() + "/" + d.raw, "-progress=never"}, d.publishArgs...), path)); err != nil {
		t.Fatal(err)
	}
}

// publishRest puts the events held back on the raw topic.
func (d *dedupDeployment) publishRest(t *testing.T) { d.publish(t, d.rest) }

// source is the -source flag of a dedup process on the raw topic that
// reads to the end of the topic (until=end): the one that ends the stream.
func (d *dedupDeployment) source(query string) string {
	return "-source=" + d.s.URL() + "/" + d.raw + "?subscription=dedup&until=end&receiver-queue=100" + query
}

// liveSource is the -source flag of a dedup process on the raw topic that
// reads on until it is stopped, its idle clock off while the test holds the
// rest of the events back.
func (d *dedupDeployment) liveSource(query string) []string {
	return []string{"-source=" + d.s.URL() + "/" + d.raw + "?subscription=dedup&receiver-queue=100" + query, "-windows.idle-timeout=1h"}
}

// check waits for the aggregate processes and compares their rows with
// one run's.
func (d *dedupDeployment) check(t *testing.T) {
	t.Helper()
	for range d.outs {
		if err := <-d.done; err != nil {
			t.Fatal(err)
		}
	}
	lines := func(path string) []string { return ndjsonLines(t, path) }
	want := lines(d.single)
	var got []string
	for _, o := range d.outs {
		got = append(got, lines(o)...)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("%d rows from the aggregate processes, %d from one process", len(got), len(want))
	}
	t.Logf("%d rows equal", len(got))
}

// TestDedupRoleKilledAndResumed: the dedup process reads a raw topic and
// is killed with SIGKILL once it has checkpointed and acknowledged; the
// same command again resumes from its checkpoint on the state topic, and
// the three aggregate processes write exactly the rows of one `run` of the
// same events.
func TestDedupRoleKilledAndResumed(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	d := startDedupDeployment(t, testsize.Pick(18000, 60000)) // 3 minutes (long: 10)
	opts := append([]string{"-role=dedup", "-source.chunk-bytes=65536"}, d.common...)
	cmd, stderr, done := runSubprocess(t, append(d.liveSource(""), opts...))
	if _, ok := waitAcked(t, d.s, d.raw, "dedup", 0, done); !ok {
		t.Fatalf("the dedup process ended before it acknowledged anything\n%s", lastLines(stderr.String(), 5))
	}
	cmd.Process.Signal(syscall.SIGKILL)
	if err := <-done; err == nil {
		t.Fatalf("SIGKILL: the dedup process had ended already\n%s", lastLines(stderr.String(), 5))
	}
	d.publishRest(t)
	_, stderr, done = runSubprocess(t, append([]string{d.source("")}, opts...))
	if err := <-done; err != nil {
		t.Fatalf("the resumed dedup process: %v\n%s", err, lastLines(stderr.String(), 8))
	}
	if !strings.Contains(stderr.String(), "resuming from the checkpoint") {
		t.Fatalf("the second dedup process did not resume:\n%s", lastLines(stderr.String(), 8))
	}
	d.check(t)
}

// TestDedupJoinsMidStream: one dedup process owns every rider of the raw
// topic (Key_Shared, sticky key-ranges=0-65535); once it has checkpointed it
// is stopped (SIGTERM), and two take its place: it again with half the
// riders (-scaleout.joins=1), and a new one with the other half, resuming
// from its checkpoint (-scaleout.resume-from=0). Three aggregate processes,
// started for one dedup process, write exactly the rows of one `run` of the
// same events.
func TestDedupJoinsMidStream(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	d := startDedupDeployment(t, testsize.Pick(18000, 60000), "-batch-by-key") // 3 minutes (long: 10)
	keys := func(r string) string { return d.source("&type=key_shared&key-ranges=" + r) }
	first := append(d.liveSource("&type=key_shared&key-ranges=0-65535"), "-role=dedup", "-source.chunk-bytes=65536")
	cmd, stderr, done := runSubprocess(t, append(first, d.common...))
	if _, ok := waitAcked(t, d.s, d.raw, "dedup", 0, done); !ok {
		t.Fatalf("the first dedup process ended before it acknowledged anything\n%s", lastLines(stderr.String(), 5))
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := <-done; err != nil {
		t.Fatalf("the first dedup process, stopped: %v\n%s", err, lastLines(stderr.String(), 5))
	}
	if !strings.Contains(stderr.String(), "stopped without ending the stream") {
		t.Fatalf("the first dedup process ended the stream instead of stopping\n%s", lastLines(stderr.String(), 8))
	}
	d.publishRest(t)
	joined := make(chan error, 2)
	for _, args := range [][]string{
		{"-role=dedup", keys("0-32767"), "-scaleout.joins=1"},
		{"-role=dedup", keys("32768-65535"), "-scaleout.dedup-id=1", "-scaleout.resume-from=0"},
	} {
		cmd, stderr, done := runSubprocess(t, append(args, d.common...))
		t.Cleanup(func() { cmd.Process.Kill() })
		go func() {
			if err := <-done; err != nil {
				joined <- fmt.Errorf("%v: %w\n%s", args[:2], err, lastLines(stderr.String(), 8))
				return
			}
			joined <- nil
		}()
	}
	for range 2 {
		if err := <-joined; err != nil {
			t.Fatal(err)
		}
	}
	d.check(t)
}

// ndjsonLines reads the rows of an ndjson sink's file.
func ndjsonLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// TestDedupRoleUnderUnackedLimits (issue 22 P1): a dedup process on
// key_shared acknowledges only behind its durable checkpoints, so the
// lateness plus about a minute of input stays unacknowledged, and a broker
// stops delivering to a consumer at maxUnackedMessagesPerConsumer (50,000
// by default: a metro's 100,000 events a minute hold ~150,000). The limit
// counts each partition's consumer, so a topic of 4 partitions holds such
// a stream. Scaled down here: 6,000 events a minute (~9,000 unacknowledged
// at once, more than the limit for one partition) against a broker
// limiting a consumer to 4,000 and a subscription to 16,000, the source
// told the same (max-unacked=4000), over 4 partitions: a live process,
// then a replay resumed from its checkpoint, run through without the
// broker ever blocking a consumer, and the three aggregate processes
// write exactly one run's rows. (One partition fails
// at start instead, naming the fix: TestUnackedLimitFailsFast ./pulsar.)
func TestDedupRoleUnderUnackedLimits(t *testing.T) {
	t.Parallel()
	if norace.Run(t) {
		return
	}
	s, err := pulsartest.Start(pulsartest.Config{MaxUnackedMessagesPerConsumer: 4000, MaxUnackedMessagesPerSubscription: 16000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	d := startDedupDeploymentOn(t, s, 4, 18000, "-batch-by-key") // 3 minutes
	// Live on the first 60%: it checkpoints and acknowledges as minutes
	// close, then is stopped (SIGTERM).
	const query = "&type=key_shared&key-ranges=0-65535&max-unacked=4000"
	opts := append([]string{"-role=dedup", "-source.chunk-bytes=65536"}, d.common...)
	cmd, stderr, done := runSubprocess(t, append(d.liveSource(query), opts...))
	if _, ok := waitAcked(t, s, d.raw+"-partition-0", "dedup", 0, done); !ok {
		t.Fatalf("the live dedup process ended before it acknowledged anything\n%s", lastLines(stderr.String(), 5))
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := <-done; err != nil {
		t.Fatalf("the live dedup process, stopped: %v\n%s", err, lastLines(stderr.String(), 8))
	}
	// Then a replay of the rest, resumed from its checkpoint, to the end.
	d.publishRest(t)
	_, stderr, done = runSubprocess(t, append([]string{d.source(query)}, opts...))
	if err := <-done; err != nil {
		t.Fatalf("the dedup process: %v\n%s", err, lastLines(stderr.String(), 8))
	}
	if !strings.Contains(stderr.String(), "resuming from the checkpoint") {
		t.Fatalf("the second dedup process did not resume:\n%s", lastLines(stderr.String(), 8))
	}
	d.check(t)
	if st := s.Stats(); st.ConsumersBlocked != 0 || st.SubscriptionsBlocked != 0 || st.Acked == 0 {
		t.Fatalf("broker: %d consumer and %d subscription blocks, %d acknowledged; want none blocked and the messages acknowledged", st.ConsumersBlocked, st.SubscriptionsBlocked, st.Acked)
	}
}
