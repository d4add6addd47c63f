package pulsar

import (
	"fmt"
	"slices"
	"testing"
	"unsafe"

	"github.com/apache/pulsar-client-go/pulsar"

	"github.com/demandpipe/demandpipe/internal/pulsartest"
)

// TestPulsarKeySharedReorderLosesNothing: a key_shared run whose
// consumer's connection drops while the client holds messages it has not
// handed over, against a broker that then sends newer messages of another
// key before the replay (apache/pulsar#10762; the test double's
// Config.KeySharedReorderAfterReconnect). Messages 0..199 are keyed a,
// 200..399 keyed b. The client clears its receive queue on the reconnect,
// so a's messages not taken yet (those it held, and all later ones) arrive
// after b's 200..219: every message must still be handed exactly once,
// and a run resumed from a checkpoint taken right after 219 (before a's
// came again) must hand exactly the rest. Before the source kept each
// slot's last id, both lost 190 of the 400 (dropped as copies: at or
// before 219, the partition's last id).
func TestPulsarKeySharedReorderLosesNothing(t *testing.T) {
	const n, passAhead = 400, 20
	s := startBrokerWith(t, pulsartest.Config{KeySharedReorderAfterReconnect: passAhead})
	topic := testTopic(t)
	in := publishTwoKeys(t, s, topic, n)
	const query = "subscription=sub&type=key_shared&until=end&receiver-queue=10"
	p := openPulsar(t, s, topic, query)
	got, _ := readLines(t, p, 3)
	// The client fills its channel (10) and receive queue; nothing is
	// read until the broker has sent again after the reconnect: the
	// client clears its queue before it subscribes again.
	waitFor(t, "the client's queue to fill", func() bool { return s.Stats().Dispatched >= p.stats.messages.Load()+15 })
	if _, err := s.DisconnectConsumer(topic, "sub", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the broker to send again after the reconnect", func() bool { return s.Stats().KeySharedPassedAhead > 0 })

	// Read up to b's last message passed ahead, and name that position.
	var pos int64
	for !slices.Contains(got, in[200+passAhead-1]) {
		l, ends := readLines(t, p, 1)
		got, pos = append(got, l...), ends[0]
	}
	upToPos := len(got)
	cur, err := p.Cursor(pos)
	if err != nil {
		t.Fatal(err)
	}
	rest, _ := readLines(t, p, -1)
	got = append(got, rest...)
	if st := s.Stats(); st.KeySharedPassedAhead != passAhead {
		t.Fatalf("the fault did not bite: %d passed ahead, want %d", st.KeySharedPassedAhead, passAhead)
	}
	// Two keys, two slots: one chunk of 256 slots allocated (the gauge
	// pulsar_key_slot_bytes).
	if got, want := p.keySlotBytes(), int64(unsafe.Sizeof(slotChunk{})); got < want || got > 2*want {
		t.Errorf("key slot tables hold %d bytes, want one or two chunks of %d", got, want)
	}
	held := 0 // a's messages first handed after b's 219
	for _, l := range got[upToPos:] {
		if slices.Index(in, l) < 200 {
			held++
		}
	}
	t.Logf("handed %d of %d; %d of key a came after b's %d passed ahead; %d copies dropped", len(got), n, held, passAhead, p.stats.skipped.Load())
	checkOnce(t, "the run", got, in)
	if held == 0 {
		t.Fatal("no message of key a came after b's passed ahead: the scenario did not happen")
	}
	p.Close()

	// A restart from the checkpoint at pos hands exactly what the run had
	// not handed by then.
	if err := s.ReorderKeySharedReplays(0); err != nil {
		t.Fatal(err)
	}
	second := openPulsar(t, s, topic, query)
	if err := second.ResumeAt(pos, cur); err != nil {
		t.Fatal(err)
	}
	after, _ := readLines(t, second, -1)
	checkOnce(t, "the resumed run", append(got[:upToPos:upToPos], after...), in)
}

// checkOnce fails unless got holds every line of want exactly once.
func checkOnce(t *testing.T, what string, got, want []string) {
	t.Helper()
	count := map[string]int{}
	for _, l := range got {
		count[l]++
	}
	var lost, twice []string
	for _, l := range want {
		switch count[l] {
		case 0:
			lost = append(lost, l)
		case 1:
		default:
			twice = append(twice, l)
		}
	}
	if len(lost) > 0 || len(twice) > 0 || len(got) != len(want) {
		t.Fatalf("%s handed %d lines of %d: %d lost %v, %d more than once %v", what, len(got), len(want), len(lost), lost, len(twice), twice)
	}
}

// publishUnbatched sends lines keyed by key(i), one message per entry.
func publishUnbatched(t *testing.T, s *pulsartest.Server, topic string, lines []string, key func(int) string) {
	t.Helper()
	publishWith(t, s, pulsar.ProducerOptions{Topic: topic, DisableBatching: true}, lines, key, nil)
}

// publishTwoKeys publishes n lines {"i":I}, one message each, keyed a
// for the first 200 and b after.
func publishTwoKeys(t *testing.T, s *pulsartest.Server, topic string, n int) []string {
	t.Helper()
	var in []string
	for i := range n {
		in = append(in, fmt.Sprintf(`{"i":%d}`, i))
	}
	publishUnbatched(t, s, topic, in, func(i int) string {
		if i < 200 {
			return "a"
		}
		return "b"
	})
	return in
}

// TestPulsarKeySharedUntilEndWaitsForReplays: on key_shared a partition's
// last message may come before the replay of older messages of other
// slots (apache/pulsar#10762): here key b's 40 messages, the last of the
// topic among them, pass ahead of key a's replay after a reconnect. An
// until=end run used to end once the partition's last id was taken, with
// a's replayed messages not read (they came in the next run); now it ends
// once every slot's last message is taken, and hands all 240 exactly once.
func TestPulsarKeySharedUntilEndWaitsForReplays(t *testing.T) {
	const n, passAhead = 240, 40
	s := startBrokerWith(t, pulsartest.Config{KeySharedReorderAfterReconnect: passAhead})
	topic := testTopic(t)
	in := publishTwoKeys(t, s, topic, n)
	p := openPulsar(t, s, topic, "subscription=sub&type=key_shared&until=end&receiver-queue=10")
	got, _ := readLines(t, p, 3)
	waitFor(t, "the client's queue to fill", func() bool { return s.Stats().Dispatched >= p.stats.messages.Load()+15 })
	if _, err := s.DisconnectConsumer(topic, "sub", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the broker to send again after the reconnect", func() bool { return s.Stats().KeySharedPassedAhead > 0 })
	rest, _ := readLines(t, p, -1)
	got = append(got, rest...)
	if st := s.Stats(); st.KeySharedPassedAhead != passAhead {
		t.Fatalf("%d passed ahead, want %d", st.KeySharedPassedAhead, passAhead)
	}
	checkOnce(t, "the run", got, in)
	if last := slices.Index(got, in[n-1]); last == len(got)-1 {
		t.Fatalf("the topic's last message came last: not ahead of the replay, the scenario did not happen")
	}
}
