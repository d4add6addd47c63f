package pulsar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/demandpipe/demandpipe/internal/keyshared"
	"github.com/demandpipe/demandpipe/internal/norace"
	"github.com/demandpipe/demandpipe/pipeline"
	"github.com/demandpipe/demandpipe/pulsar/conn"
	"github.com/demandpipe/demandpipe/source"

	"github.com/apache/pulsar-client-go/pulsar"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/demandpipe/demandpipe/internal/leakcheck"
	"github.com/demandpipe/demandpipe/internal/pulsartest"
	"github.com/demandpipe/demandpipe/internal/topicread"
)

// TestMain checks that no goroutine outlives the tests, except the Pulsar
// client's bounded lingerers (leakcheck.PulsarClient) and a subscribe
// that a refusal abandoned, which retries until its operation timeout
// (conn.Client.Consumer).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(norace.M(m), append(leakcheck.PulsarClient,
		goleak.IgnoreAnyFunction("github.com/demandpipe/demandpipe/pulsar/conn.(*Client).Consumer.func1"),
		goleak.IgnoreAnyFunction("github.com/demandpipe/demandpipe/pulsar/conn.(*Client).Consumer.func2"))...)
}

// The capabilities the wiring and the engine find by type assertion.
var (
	_ source.Acknowledger = (*Source)(nil)
	_ source.Instrumented = (*Source)(nil)
	_ source.DeadLetterer = (*Source)(nil)
	_ pipeline.Cursored   = (*Source)(nil)
)

// TestCursorEncoding: cursors of in-order types stay version 1, which
// older builds read; key_shared's slots and floor make a version 2; both
// round-trip, and a truncated cursor or an unknown version is refused.
func TestCursorEncoding(t *testing.T) {
	ids := []pulsar.MessageID{pulsar.NewMessageID(3, 17, -1, 0), nil, pulsar.NewMessageID(1<<40, 0, 5, 2)}
	v1 := make([]cursorPart, len(ids))
	for i, id := range ids {
		v1[i] = cursorPart{last: id, floor: id}
	}
	v2 := []cursorPart{
		{last: ids[0], floor: pulsar.NewMessageID(2, 9, -1, 0), slots: []cursorSlot{{0, toSlotID(ids[0])}, {7, slotID{ledger: 2, entry: 30, batch: 1}}, {65535, slotID{ledger: 3, entry: 16, batch: 1}}}},
		{},
		{last: ids[2], slots: []cursorSlot{{40000, toSlotID(ids[2])}}},
		{last: pulsar.NewMessageID(5, 5, -1, 3), floor: pulsar.NewMessageID(5, 5, -1, 3)},
	}
	for _, tc := range []struct {
		name    string
		parts   []cursorPart
		version byte
	}{{"in order", v1, cursorV1}, {"key_shared", v2, cursorV2}} {
		enc := encodeCursor(tc.parts)
		if enc[0] != tc.version {
			t.Errorf("%s: version %d, want %d", tc.name, enc[0], tc.version)
		}
		got, err := decodeCursor(enc)
		if err != nil {
			t.Fatal(err)
		}
		if d := diffCursor(got, tc.parts); d != "" {
			t.Errorf("%s: %s", tc.name, d)
		}
		for k := range len(enc) {
			if _, err := decodeCursor(enc[:k]); err == nil && k > 0 {
				t.Errorf("%s: truncated to %d bytes: accepted", tc.name, k)
			}
		}
		if _, err := decodeCursor(append([]byte{9}, enc[1:]...)); err == nil {
			t.Errorf("%s: another version accepted", tc.name)
		}
	}
	// A cursor an older build wrote (version 1: partition 0 at 3:17:-1)
	// still reads, as a floor.
	got, err := decodeCursor([]byte{1, 1, 0, 6, 34, 1})
	if err != nil {
		t.Fatal(err)
	}
	if d := diffCursor(got, v1[:1]); d != "" {
		t.Errorf("an older cursor: %s", d)
	}
}

// diffCursor describes how got differs from want ("" if it does not).
func diffCursor(got, want []cursorPart) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d partitions, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if (g.last == nil) != (w.last == nil) || (g.floor == nil) != (w.floor == nil) ||
			(w.last != nil && (cmpID(g.last, w.last) != 0 || g.last.PartitionIdx() != int32(i))) ||
			(w.floor != nil && cmpID(g.floor, w.floor) != 0) || !slices.Equal(g.slots, w.slots) {
			return fmt.Sprintf("partition %d: %+v, want %+v", i, g, w)
		}
	}
	return ""
}

func FuzzDecodeCursor(f *testing.F) {
	id := pulsar.NewMessageID(3, 17, -1, 0)
	f.Add(encodeCursor([]cursorPart{{last: id, floor: id}}))
	f.Add(encodeCursor([]cursorPart{{last: id, slots: []cursorSlot{{3, toSlotID(id)}, {9, slotID{ledger: 1, entry: 2, batch: 4}}}}}))
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		parts, err := decodeCursor(b)
		if err != nil {
			return
		}
		again, err := decodeCursor(encodeCursor(parts))
		if err != nil {
			t.Fatalf("re-encoding %v: %v", parts, err)
		}
		if d := diffCursor(again, parts); d != "" {
			t.Fatalf("re-encoding: %s", d)
		}
	})
}

func TestBoundariesRing(t *testing.T) {
	var b boundaries
	next, end := int64(0), int64(0)
	for round := range 50 {
		for range round * 7 {
			end += 10
			b.push(boundary{end: end, id: pulsar.NewMessageID(1, end, -1, 0)})
		}
		upTo := end - int64(round%5)*10
		b.popThrough(upTo, func(x boundary) {
			next += 10
			if x.end != next {
				t.Fatalf("popped %d, want %d", x.end, next)
			}
		})
		if b.size != int((end-upTo)/10) {
			t.Fatalf("round %d: %d left, want %d", round, b.size, (end-upTo)/10)
		}
	}
	if len(b.ring) > 1024 {
		t.Errorf("ring of %d for at most 343 at once", len(b.ring))
	}
}

// --- against the test broker, with the real client ---

func startBroker(t testing.TB) *pulsartest.Server {
	t.Helper()
	s, err := pulsartest.Start(pulsartest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testTopic(t testing.TB) string {
	return "persistent://public/default/" + strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()) + fmt.Sprint(time.Now().UnixNano())
}

// publish sends lines keyed by key(i) and waits for every receipt.
func publish(t testing.TB, s *pulsartest.Server, topic string, lines []string, key func(int) string) {
	publishAt(t, s, topic, lines, key, nil)
}

// publishAt is publish with event times eventTime(i) (nil: none).
func publishAt(t testing.TB, s *pulsartest.Server, topic string, lines []string, key func(int) string, eventTime func(int) time.Time) {
	t.Helper()
	publishWith(t, s, pulsar.ProducerOptions{Topic: topic, BatchingMaxMessages: 16}, lines, key, eventTime)
}

// publishWith sends lines with a producer of opts, keyed by key(i) and
// with event times eventTime(i) (nil: none), and waits for every receipt.
func publishWith(t testing.TB, s *pulsartest.Server, opts pulsar.ProducerOptions, lines []string, key func(int) string, eventTime func(int) time.Time) {
	t.Helper()
	cfg := conn.DefaultConfig()
	cfg.ServiceURL, cfg.Topic = s.URL(), opts.Topic
	client, err := conn.Dial(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	prod, err := client.CreateProducer(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for i, l := range lines {
		wg.Add(1)
		m := &pulsar.ProducerMessage{Payload: []byte(l)}
		if key != nil {
			m.Key = key(i)
		}
		if eventTime != nil {
			m.EventTime = eventTime(i)
		}
		prod.SendAsync(context.Background(), m, func(_ pulsar.MessageID, _ *pulsar.ProducerMessage, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				first = firstErr(first, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func openPulsar(t testing.TB, s *pulsartest.Server, topic, query string) *Source {
	t.Helper()
	p, err := Open(s.URL() + "/" + topic + "?" + query)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// readLines reads n lines from p (or to EOF when n < 0), returning them
// and the stream offset after each.
func readLines(t testing.TB, p *Source, n int) (lines []string, ends []int64) {
	t.Helper()
	off, _ := p.Position()
	var partial []byte
	buf := make([]byte, 300)
	if n >= 0 {
		buf = buf[:1] // exactly n lines: never read past the n-th
	}
	for n < 0 || len(lines) < n {
		k, err := p.Read(buf)
		for _, c := range buf[:k] {
			off++
			if c == '\n' {
				lines = append(lines, string(partial))
				ends = append(ends, off)
				partial = partial[:0]
				continue
			}
			partial = append(partial, c)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if n >= 0 && len(lines) != n {
		t.Fatalf("read %d lines, want %d", len(lines), n)
	}
	if len(partial) > 0 {
		t.Fatalf("a line cut at a message boundary: %q", partial)
	}
	return lines, ends
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPulsarAckOnlyThroughPosition: nothing is acknowledged before Ack;
// Ack(pos) acknowledges exactly the messages ending at or before pos, and
// the boundary table keeps only the rest. Cursor names the same position
// in message ids.
func TestPulsarAckOnlyThroughPosition(t *testing.T) {
	for _, typ := range []string{"failover", "shared"} {
		t.Run(typ, func(t *testing.T) {
			s := startBroker(t)
			topic := testTopic(t)
			var in []string
			for i := range 200 {
				in = append(in, fmt.Sprintf(`{"i":%d,"s":"a\nb\rc"}`, i))
			}
			in[7] = "raw\nnewline\r\nin a payload"
			publish(t, s, topic, in, nil)
			p := openPulsar(t, s, topic, "subscription=sub&ack-group-size=1&type="+typ)
			reg := prometheus.NewRegistry()
			if err := p.RegisterMetrics(reg); err != nil {
				t.Fatal(err)
			}
			lines, ends := readLines(t, p, len(in))
			for i, l := range lines {
				if want := strings.NewReplacer("\n", " ", "\r", " ").Replace(in[i]); l != want {
					t.Fatalf("line %d: %q, want %q", i, l, want)
				}
			}
			st, _ := s.Subscription(topic, "sub")
			if st.MarkDelete != -1 || st.Backlog == 0 {
				t.Fatalf("acknowledged before any Ack: %+v", st)
			}
			if p.table.size != len(in) {
				t.Fatalf("table holds %d, want %d", p.table.size, len(in))
			}
			cur, err := p.Cursor(ends[119])
			if err != nil {
				t.Fatal(err)
			}
			ids, _ := decodeCursor(cur)
			want := p.table.at(119).id
			if len(ids) != 1 || cmpID(ids[0].last, want) != 0 {
				t.Fatalf("cursor %v, want %v", ids, want)
			}
			// Ack at a position inside message 120's line is before its end.
			before, _ := s.Subscription(topic, "sub")
			p.Ack(ends[119] + 3)
			if p.table.size != len(in)-120 || p.table.at(0).end != ends[120] {
				t.Fatalf("after Ack: table holds %d from %d", p.table.size, p.table.at(0).end)
			}
			// The broker's cursor: every entry wholly at or before message
			// 119 is acked, nothing of message 120's entry.
			last := want
			e := last.EntryID()
			if last.BatchIdx() < last.BatchSize()-1 {
				e-- // message 119 is inside its batch: its entry is not whole
			}
			waitFor(t, "the broker to see the acks", func() bool {
				st, _ := s.Subscription(topic, "sub")
				return st.Backlog < before.Backlog && st.MarkDelete >= e
			})
			st, _ = s.Subscription(topic, "sub")
			if st.MarkDelete != e {
				t.Fatalf("mark-delete at entry %d, want %d (message 119 is %v)", st.MarkDelete, e, last)
			}
			if got := p.stats.acked.Load(); got != 120 {
				t.Fatalf("acked messages %v, want 120", got)
			}
			p.Ack(ends[len(ends)-1])
			if p.table.size != 0 {
				t.Fatalf("table holds %d after acking everything", p.table.size)
			}
			waitFor(t, "every entry acked", func() bool {
				st, _ := s.Subscription(topic, "sub")
				return st.Backlog == 0
			})
		})
	}
}

// TestPulsarUntilEndPartitioned: until=end over a partitioned topic reads
// every message once, each key's messages in order, then io.EOF; messages
// published after the start are not waited for.
func TestPulsarUntilEndPartitioned(t *testing.T) {
	s := startBroker(t)
	topic := testTopic(t)
	if err := s.CreatePartitionedTopic(topic, 3); err != nil {
		t.Fatal(err)
	}
	const n, keys = 600, 17
	var in []string
	for i := range n {
		in = append(in, fmt.Sprintf(`{"k":%d,"i":%d}`, i%keys, i))
	}
	publish(t, s, topic, in, func(i int) string { return fmt.Sprint(i % keys) })
	p := openPulsar(t, s, topic, "subscription=sub&until=end&receiver-queue=20")
	lines, _ := readLines(t, p, -1)
	if len(lines) != n {
		t.Fatalf("%d lines, want %d", len(lines), n)
	}
	seen := map[string]bool{}
	lastOf := map[int]int{}
	for _, l := range lines {
		var k, i int
		if _, err := fmt.Sscanf(l, `{"k":%d,"i":%d}`, &k, &i); err != nil {
			t.Fatal(l, err)
		}
		if seen[l] {
			t.Fatalf("%s twice", l)
		}
		seen[l] = true
		if j, ok := lastOf[k]; ok && j > i {
			t.Fatalf("key %d: %d after %d", k, i, j)
		}
		lastOf[k] = i
	}
	if _, err := p.Read(make([]byte, 10)); !errors.Is(err, io.EOF) {
		t.Fatalf("after the end: %v", err)
	}
}

// TestPulsarResumeAt: a consumer reads part of the topic, a checkpoint is
// taken at a position and the process dies (no ack). A new consumer of the
// same subscription resumed at that position with its cursor continues
// exactly after it: the broker redelivers everything, the copies up to the
// cursor are dropped and counted.
func TestPulsarResumeAt(t *testing.T) {
	for _, typ := range []string{"failover", "shared", "key_shared"} {
		t.Run(typ, func(t *testing.T) { testResumeAt(t, typ) })
	}
}

func testResumeAt(t *testing.T, typ string) {
	s := startBroker(t)
	topic := testTopic(t)
	if err := s.CreatePartitionedTopic(topic, 2); err != nil {
		t.Fatal(err)
	}
	var in []string
	for i := range 300 {
		in = append(in, fmt.Sprintf(`{"k":%d,"i":%d}`, i%5, i))
	}
	publish(t, s, topic, in, func(i int) string { return fmt.Sprint(i % 5) })
	first := openPulsar(t, s, topic, "subscription=sub&until=end&type="+typ)
	before, ends := readLines(t, first, 180)
	pos := ends[99]
	cur, err := first.Cursor(pos)
	if err != nil {
		t.Fatal(err)
	}
	first.Ack(ends[49]) // an earlier checkpoint's acknowledgement
	first.Close()

	second := openPulsar(t, s, topic, "subscription=sub&until=end&type="+typ)
	if err := second.ResumeAt(pos, cur); err != nil {
		t.Fatal(err)
	}
	after, ends2 := readLines(t, second, -1)
	if len(ends2) > 0 && ends2[0] <= pos {
		t.Fatalf("offsets restart at %d, want after %d", ends2[0], pos)
	}
	got := append(before[:100:100], after...)
	if len(got) != len(in) {
		t.Fatalf("%d lines after the resume, want %d", len(got), len(in))
	}
	seen := map[string]bool{}
	for _, l := range got {
		if seen[l] {
			t.Fatalf("%s twice", l)
		}
		seen[l] = true
	}
	if sk := second.stats.skipped.Load(); sk < 50 {
		t.Fatalf("%d copies dropped at or before the cursor, want at least the 50 unacknowledged", sk)
	}
	// Once the resumed run's last checkpoint is durable, nothing is left:
	// the dropped copies (in the first run's checkpoint already) were
	// acknowledged too, one by one where the type allows no cumulative ack.
	second.Ack(ends2[len(ends2)-1])
	waitFor(t, "every message acknowledged", func() bool {
		st, _ := s.Subscription(topic+"-partition-0", "sub")
		st1, _ := s.Subscription(topic+"-partition-1", "sub")
		return st.Backlog == 0 && st1.Backlog == 0
	})
}

// TestPulsarConnectionDropsLoseNothing: the broker drops every connection
// and restarts while the stream is read; every message is handed once,
// in order, the copies the broker sends again are dropped.
func TestPulsarConnectionDropsLoseNothing(t *testing.T) {
	s := startBroker(t)
	topic := testTopic(t)
	var in []string
	for i := range 3000 {
		in = append(in, fmt.Sprintf(`{"i":%d}`, i))
	}
	publish(t, s, topic, in, nil)
	p := openPulsar(t, s, topic, "subscription=sub&until=end&receiver-queue=50&operation-timeout=5s&connect-timeout=1s")
	var got []string
	for i, fault := range []func(){func() { s.DropConnections() }, func() {
		if err := s.Restart(); err != nil {
			t.Fatal(err)
		}
	}, nil} {
		n := 1000
		if fault == nil {
			n = -1
		}
		l, ends := readLines(t, p, n)
		got = append(got, l...)
		if i == 0 {
			p.Ack(ends[500]) // some acked before the faults, some not
		}
		if fault != nil {
			fault()
		}
	}
	if len(got) != len(in) {
		t.Fatalf("%d lines, want %d", len(got), len(in))
	}
	for i := range in {
		if got[i] != in[i] {
			t.Fatalf("line %d: %s, want %s", i, got[i], in[i])
		}
	}
	if st := s.Stats(); st.Redelivered == 0 || p.stats.skipped.Load() == 0 {
		t.Fatalf("the faults did not bite: redelivered %d, copies dropped %d", st.Redelivered, p.stats.skipped.Load())
	}
	if r := p.reconnects(); r < 2 {
		t.Fatalf("%d reconnects counted, want at least 2 (a drop, a restart)", r)
	}
}

// TestPulsarDeadLetter: reject lines written to the rejects writer are on
// the dead-letter topic, with their reason and line, once Ack returns;
// the tee gets the lines too.
func TestPulsarDeadLetter(t *testing.T) {
	s := startBroker(t)
	topic := testTopic(t)
	publish(t, s, topic, []string{`{"ok":1}`}, nil)
	p := openPulsar(t, s, topic, "subscription=sub&dead-letter="+topic+"-dlq")
	var tee strings.Builder
	w := p.RejectsWriter(&tee)
	rejects := `{"line":3,"reason":"bad_json","text":"{nope"}` + "\n" + `{"line":9,"reason":"no_ts","text":"{\"a\":1}"}` + "\n"
	// Cut mid-line, as a buffered writer may.
	for _, part := range []string{rejects[:20], rejects[20:]} {
		if _, err := w.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	readLines(t, p, 1)
	p.Ack(0)
	if got := p.stats.deadLettered.Load(); got != 2 {
		t.Fatalf("%d dead-lettered after Ack, want 2", got)
	}
	if tee.String() != rejects {
		t.Fatalf("tee got %q", tee.String())
	}
	wants := []struct{ text, reason, line string }{{"{nope", "bad_json", "3"}, {`{"a":1}`, "no_ts", "9"}}
	for i, m := range topicread.Read(t, s.URL(), topic+"-dlq", len(wants), 10*time.Second, false) {
		want := wants[i]
		if string(m.Payload()) != want.text || m.Properties()["reason"] != want.reason || m.Properties()["line"] != want.line {
			t.Fatalf("dead letter %q %v, want %+v", m.Payload(), m.Properties(), want)
		}
	}
}

// TestPulsarDeadLettersOutliveTheRun (issue 22 P2): dead letters stay on
// their topic after the run ends, through a broker that deletes inactive
// topics (every 200 ms here; a broker's default is every 60 s) and checks
// three times: the source made DeadLetterSubscription when it started,
// and that durable subscription keeps the topic and its messages until
// someone reads them. (Without it the topic, which then has no client and
// no subscription, went with the dead letters.)
func TestPulsarDeadLettersOutliveTheRun(t *testing.T) {
	const every = 200 * time.Millisecond
	s, err := pulsartest.Start(pulsartest.Config{DeleteInactiveTopicsFrequency: every})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	topic := testTopic(t)
	dlq := topic + "-dlq"
	publish(t, s, topic, []string{`{"ok":1}`}, nil)
	p, err := Open(s.URL() + "/" + topic + "?subscription=sub&dead-letter=" + dlq)
	if err != nil {
		t.Fatal(err)
	}
	w := p.RejectsWriter(nil)
	if _, err := w.Write([]byte(`{"line":3,"reason":"bad_json","text":"{nope"}` + "\n" + `{"line":9,"reason":"no_ts","text":"{\"a\":1}"}` + "\n")); err != nil {
		t.Fatal(err)
	}
	_, ends := readLines(t, p, 1)
	p.Ack(ends[0])
	if got := p.stats.deadLettered.Load(); got != 2 {
		t.Fatalf("%d dead-lettered after Ack, want 2", got)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	// The run is over: nobody produces to or consumes from the dead-letter
	// topic while the broker checks three times (a topic is deleted at
	// most two checks after its last client left).
	want := s.Stats().InactiveTopicChecks + 3
	for deadline := time.Now().Add(30 * every); s.Stats().InactiveTopicChecks < want; time.Sleep(every / 4) {
		if time.Now().After(deadline) {
			t.Fatalf("the broker did not check for inactive topics 3 times in %v", 30*every)
		}
	}
	if s.TopicEntries(dlq) == 0 {
		t.Fatalf("the dead-letter topic is empty after the broker's checks (%d topics deleted)", s.Stats().TopicsDeleted)
	}
	if st, ok := s.Subscription(dlq, DeadLetterSubscription); !ok || st.Backlog != int64(s.TopicEntries(dlq)) {
		t.Fatalf("subscription %s: %+v (exists %v), want every entry in its backlog", DeadLetterSubscription, st, ok)
	}
	wants := []string{"{nope", `{"a":1}`}
	for i, m := range topicread.Read(t, s.URL(), dlq, len(wants), 5*time.Second, true) {
		if string(m.Payload()) != wants[i] {
			t.Fatalf("dead letter %d: %q, want %q", i, m.Payload(), wants[i])
		}
	}
}

// TestPulsarDeadLetterFailureFailsTheRun: when the dead-letter topic
// cannot be written, Ack acknowledges nothing and Read reports the error.
func TestPulsarDeadLetterFailureFailsTheRun(t *testing.T) {
	s := startBroker(t)
	topic := testTopic(t)
	publish(t, s, topic, []string{`{"ok":1}`, `{"ok":2}`}, nil)
	p := openPulsar(t, s, topic, "subscription=sub&dead-letter=dlq&operation-timeout=500ms&connect-timeout=200ms")
	_, ends := readLines(t, p, 1)
	s.Stop() // the broker is gone: the dead-letter copy cannot be stored
	w := p.RejectsWriter(nil)
	if _, err := w.Write([]byte(`{"line":1,"reason":"bad_json","text":"x"}` + "\n")); err != nil {
		t.Fatal(err)
	}
	p.Ack(ends[0])
	if p.table.size != 1 {
		t.Fatalf("acknowledged (table %d) though the dead letter failed", p.table.size)
	}
	_, err := p.Read(make([]byte, 100))
	if err == nil || !strings.Contains(err.Error(), "dead letter") {
		t.Fatalf("Read after a failed dead letter: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
}

// TestPulsarUnreachable: a broker that is not there fails Open within the
// timeouts, saying where it tried.
func TestPulsarUnreachable(t *testing.T) {
	s := startBroker(t)
	url := s.URL()
	s.Close()
	start := time.Now()
	_, err := Open(url + "/rides?subscription=s&operation-timeout=1s&connect-timeout=200ms")
	if err == nil || !strings.Contains(err.Error(), url) {
		t.Fatalf("open of a dead broker: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s", d)
	}
}

// TestPulsarMetrics: the counters are exported under demandpipe_source_.
func TestPulsarMetrics(t *testing.T) {
	s := startBroker(t)
	topic := testTopic(t)
	publish(t, s, topic, []string{`{"a":1}`, `{"a":2}`}, nil)
	p := openPulsar(t, s, topic, "subscription=sub&until=end")
	reg := prometheus.NewRegistry()
	if err := p.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if err := (*Source)(nil).RegisterMetrics(nil); err != nil {
		t.Fatal(err)
	}
	_, ends := readLines(t, p, -1)
	p.Ack(ends[0])
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		got[mf.GetName()] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	for name, want := range map[string]float64{
		"demandpipe_source_pulsar_messages_total":       2,
		"demandpipe_source_pulsar_received_bytes_total": 14,
		"demandpipe_source_pulsar_acked_messages_total": 1,
		"demandpipe_source_pulsar_unacked_messages":     1,
		"demandpipe_source_pulsar_redeliveries_total":   0,
		"demandpipe_source_pulsar_key_slot_bytes":       0, // not key_shared
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (registered: %v), want %v", name, v, ok, want)
		}
	}
	if lag := got["demandpipe_source_pulsar_consumer_lag_seconds"]; lag <= 0 || lag > 60 {
		t.Errorf("consumer lag %v s", lag)
	}
}

// TestPulsarMergeIsDeterministic: the lines of a partitioned topic come
// out in the same order whatever the timing (two subscriptions, receiver
// queues of 1 and 1000 messages), each partition in its order; with event
// times set, merged by them: here globally in ts order, though the client
// lets partitions run thousands of messages apart.
func TestPulsarMergeIsDeterministic(t *testing.T) {
	if norace.Run(t) {
		return
	}
	s := startBroker(t)
	for _, withEventTime := range []bool{true, false} {
		topic := testTopic(t) + fmt.Sprint(withEventTime)
		if err := s.CreatePartitionedTopic(topic, 3); err != nil {
			t.Fatal(err)
		}
		const n = 20000
		var in []string
		for i := range n {
			in = append(in, fmt.Sprintf(`{"ts":%d,"rider_id":"r%d"}`, 1e12+i*10, i%997))
		}
		var et func(int) time.Time
		if withEventTime {
			et = func(i int) time.Time { return time.UnixMilli(1e12 + int64(i)*10) }
		}
		publishAt(t, s, topic, in, func(i int) string { return fmt.Sprint("r", i%997) }, et)
		var runs [][]string
		for _, q := range []string{"1", "1000"} {
			p := openPulsar(t, s, topic, "subscription=q"+q+"&until=end&receiver-queue="+q)
			lines, _ := readLines(t, p, -1)
			if len(lines) != n {
				t.Fatalf("%d lines, want %d", len(lines), n)
			}
			runs = append(runs, lines)
		}
		for i := range runs[0] {
			if runs[0][i] != runs[1][i] {
				t.Fatalf("event time %v: line %d differs between the runs: %s / %s", withEventTime, i, runs[0][i], runs[1][i])
			}
		}
		last := map[string]int{}
		sorted := true
		for i, l := range runs[0] {
			var ts, r int
			fmt.Sscanf(l, `{"ts":%d,"rider_id":"r%d"}`, &ts, &r)
			k := fmt.Sprint(r)
			if j, ok := last[k]; ok && j > ts {
				t.Fatalf("rider %d: ts %d after %d", r, ts, j)
			}
			last[k] = ts
			sorted = sorted && ts == 1e12+i*10
		}
		if withEventTime && !sorted {
			t.Fatal("merged by event time, yet not in ts order")
		}
	}
}

func TestReachedAndPast(t *testing.T) {
	id := func(e int64, b, size int32) pulsar.MessageID {
		if size == 0 {
			return pulsar.NewMessageID(1, e, b, 0)
		}
		return batchID{pulsar.NewMessageID(1, e, b, 0), size}
	}
	for _, c := range []struct {
		id, last      pulsar.MessageID
		reached, past bool
	}{
		{id(3, -1, 0), id(5, -1, 0), false, false},
		{id(5, -1, 0), id(5, -1, 0), true, false},
		{id(6, -1, 0), id(5, -1, 0), true, true},
		{id(5, 2, 10), id(5, 9, 0), false, false}, // inside the last batch
		{id(5, 9, 10), id(5, 9, 0), true, false},  // its last message
		{id(5, 9, 10), id(5, -1, 0), true, false}, // the broker named the entry only
		{id(5, 3, 10), id(5, -1, 0), false, false},
		{id(5, 3, 0), id(5, 9, 0), false, false}, // a cursor's id: no batch size
		{id(5, 9, 0), id(5, 9, 0), true, false},
		{id(0, -1, 0), id(-1, -1, 0), true, true}, // an empty partition
	} {
		if got := reached(c.id, c.last); got != c.reached {
			t.Errorf("reached(%v, %v) = %v", c.id, c.last, got)
		}
		if got := past(c.id, c.last); got != c.past {
			t.Errorf("past(%v, %v) = %v", c.id, c.last, got)
		}
	}
}

// batchID is a message id inside a batch of a known size.
type batchID struct {
	pulsar.MessageID
	size int32
}

func (b batchID) BatchSize() int32 { return b.size }

// TestPulsarEventClock: a replay's clock is the largest event time handed
// (a late event last does not move it back), not the wall clock; a live
// stream's is the wall clock.
func TestPulsarEventClock(t *testing.T) {
	s := startBroker(t)
	topic := testTopic(t)
	base := time.Date(2024, 6, 1, 10, 0, 0, 0, time.UTC)
	ts := []time.Duration{0, 5 * time.Second, 2 * time.Second} // the last one is older
	var in []string
	for i := range ts {
		in = append(in, fmt.Sprintf(`{"i":%d}`, i))
	}
	publishAt(t, s, topic, in, nil, func(i int) time.Time { return base.Add(ts[i]) })
	replay := openPulsar(t, s, topic, "subscription=replay&until=end")
	if d := time.Since(replay.EventClock()); d < 0 || d > time.Minute {
		t.Fatalf("before the first message: %v, want the wall clock", replay.EventClock())
	}
	readLines(t, replay, -1)
	if got, want := replay.EventClock(), base.Add(5*time.Second); !got.Equal(want) {
		t.Fatalf("replay clock %v, want %v", got, want)
	}
	live := openPulsar(t, s, topic, "subscription=live")
	readLines(t, live, 3)
	if d := time.Since(live.EventClock()); d < 0 || d > time.Minute {
		t.Fatalf("live clock %v, want the wall clock", live.EventClock())
	}
}

// TestPulsarExclusiveBusy: a second consumer of an exclusive subscription
// is refused with an error that says why and what to do.
func TestPulsarExclusiveBusy(t *testing.T) {
	s := startBroker(t)
	topic := testTopic(t)
	openPulsar(t, s, topic, "subscription=ex&type=exclusive")
	_, err := Open(s.URL() + "/" + topic + "?subscription=ex&type=exclusive&operation-timeout=2s")
	if err == nil || !strings.Contains(err.Error(), "type=failover") {
		t.Fatalf("second exclusive consumer: %v", err)
	}
}

// TestPulsarKeyRangesRefuseMixedEntries: a consumer with sticky key-ranges
// reads only messages whose keys its ranges hold, and ends (until=end) at
// the last of its own; a batch entry holding messages of several keys (the
// default batcher), which Key_Shared routes by one key, ends the run with
// an error that says how to publish instead of splitting a rider's events
// between consumers.
func TestPulsarKeyRangesRefuseMixedEntries(t *testing.T) {
	s := startBroker(t)
	lines := make([]string, 64)
	for i := range lines {
		lines[i] = fmt.Sprintf(`{"ts":1717236000000,"rider_id":"r%d","lat":40.7,"lng":-74,"product_type":"00000000-0000-0000-0000-000000000001"}`, i)
	}
	key := func(i int) string { return fmt.Sprint("r", i) }

	// Batched by key: this consumer reads the lines of its keys, and ends.
	cfg := conn.DefaultConfig()
	cfg.ServiceURL, cfg.Topic = s.URL(), testTopic(t)
	client, err := conn.Dial(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	byKey := testTopic(t) + "-bykey"
	prod, err := client.CreateProducer(pulsar.ProducerOptions{Topic: byKey, BatcherBuilderType: pulsar.KeyBasedBatchBuilder})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i, l := range lines {
		prod.SendAsync(context.Background(), &pulsar.ProducerMessage{Payload: []byte(l), Key: key(i)}, nil)
		if keyshared.Holds([]int{0, 32767}, []byte(key(i))) {
			want = append(want, l)
		}
	}
	if err := prod.Flush(); err != nil {
		t.Fatal(err)
	}
	prod.Close()
	got, err := io.ReadAll(openPulsar(t, s, byKey, "subscription=k&type=key_shared&key-ranges=0-32767&until=end"))
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(string(got)), "\n"); len(want) == 0 || !slices.Equal(lines, want) {
		t.Fatalf("read %d lines, want the %d of its keys", len(lines), len(want))
	}

	topic := testTopic(t)
	publish(t, s, topic, lines, key) // batches of 16 messages of 16 keys
	p := openPulsar(t, s, topic, "subscription=k&type=key_shared&key-ranges=0-32767&until=end")
	_, err = io.ReadAll(p)
	if err == nil || !strings.Contains(err.Error(), "batch-by-key") {
		t.Fatalf("mixed-key entries under key-ranges: %v, want an error naming -batch-by-key", err)
	}
}
