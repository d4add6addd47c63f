package pulsartest

import (
	"fmt"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
)

// firstFromEarliest reads the first message a Reader from "earliest" gets
// (the upstream client, as a replay would).
func firstFromEarliest(t *testing.T, client pulsar.Client, topic string) pulsar.Message {
	t.Helper()
	r, err := client.CreateReader(pulsar.ReaderOptions{Topic: topic, StartMessageID: pulsar.EarliestMessageID()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	m, err := r.Next(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// waitTrimmed polls the double's Stats until ok or 5 s (acknowledgements
// reach it asynchronously: the client groups them).
func waitTrimmed(t *testing.T, s *Server, ok func(Stats) bool) Stats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := s.Stats()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats never got there: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestClientRetentionTrimsAcknowledgedLedgers: with the broker's default
// retention (0), ledgers a durable subscription has consumed are deleted
// once closed; until then the subscription holds them. A replay from
// "earliest" then starts at the first entry left, and with entry indexes
// exposed its first message says how many came before it.
func TestClientRetentionTrimsAcknowledgedLedgers(t *testing.T) {
	t.Parallel()
	s := startBroker(t, Config{LedgerMaxEntries: 10, LedgerMinRollover: -1, ExposeEntryIndex: true})
	client := newClient(t, s)
	topic := topicName(t)
	cons := subscribe(t, client, pulsar.ConsumerOptions{Topic: topic, SubscriptionName: "sub", Type: pulsar.Exclusive})
	prod := newProducer(t, client, pulsar.ProducerOptions{Topic: topic, DisableBatching: true})
	produce(t, prod, 0, 35, 0)
	if st := s.Stats(); st.LedgersRolled != 3 || st.EntriesTrimmed != 0 {
		t.Fatalf("before any ack: %d ledgers rolled, %d entries trimmed; want 3 and 0 (the subscription holds them)", st.LedgersRolled, st.EntriesTrimmed)
	}
	for i := range 35 {
		m := receive(t, cons, 5*time.Second)
		if got, want := string(m.Payload()), fmt.Sprintf("msg-%d", i); got != want || m.Index() == nil || *m.Index() != uint64(i) {
			t.Fatalf("message %d: %q, index %v", i, got, m.Index())
		}
		if err := cons.Ack(m); err != nil {
			t.Fatal(err)
		}
	}
	st := waitTrimmed(t, s, func(st Stats) bool { return st.LedgersTrimmed == 3 })
	if st.EntriesTrimmed != 30 || st.MessagesTrimmed != 30 {
		t.Fatalf("trimmed %d entries, %d messages; want 30 (the current ledger stays)", st.EntriesTrimmed, st.MessagesTrimmed)
	}
	m := firstFromEarliest(t, client, topic)
	if string(m.Payload()) != "msg-30" || m.Index() == nil || *m.Index() != 30 {
		t.Fatalf("replay from earliest starts at %q, index %v; want msg-30, index 30", m.Payload(), m.Index())
	}
}

// TestClientRetentionWithoutSubscription: a topic no durable subscription
// holds loses every closed ledger at once (a reader's cursor is
// non-durable); a retention of -1 (for ever) keeps them all.
func TestClientRetentionWithoutSubscription(t *testing.T) {
	t.Parallel()
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprint("keep=", keep), func(t *testing.T) {
			cfg := Config{LedgerMaxEntries: 10, LedgerMinRollover: -1}
			if keep {
				cfg.RetentionTime = -1
			}
			s := startBroker(t, cfg)
			client := newClient(t, s)
			topic := topicName(t)
			produce(t, newProducer(t, client, pulsar.ProducerOptions{Topic: topic, DisableBatching: true}), 0, 25, 0)
			want, trimmed := "msg-20", int64(20)
			if keep {
				want, trimmed = "msg-0", 0
			}
			if st := s.Stats(); st.LedgersRolled != 2 || st.EntriesTrimmed != trimmed {
				t.Fatalf("%d ledgers rolled, %d entries trimmed; want 2 and %d", st.LedgersRolled, st.EntriesTrimmed, trimmed)
			}
			m := firstFromEarliest(t, client, topic)
			if string(m.Payload()) != want || m.Index() != nil {
				t.Fatalf("replay from earliest starts at %q (index %v); want %s and no index (not exposed by default)", m.Payload(), m.Index(), want)
			}
		})
	}
}

// TestClientRetentionDefaultsKeepShortTopics: with the broker's defaults a
// ledger rolls over only after 50,000 entries and 10 minutes, so a test's
// topic keeps every message whatever is acknowledged.
func TestClientRetentionDefaultsKeepShortTopics(t *testing.T) {
	t.Parallel()
	s := startBroker(t, Config{})
	client := newClient(t, s)
	topic := topicName(t)
	produce(t, newProducer(t, client, pulsar.ProducerOptions{Topic: topic, DisableBatching: true}), 0, 100, 0)
	if m := firstFromEarliest(t, client, topic); string(m.Payload()) != "msg-0" {
		t.Fatalf("replay starts at %q", m.Payload())
	}
	if st := s.Stats(); st.LedgersRolled != 0 || st.EntriesTrimmed != 0 {
		t.Fatalf("%+v", st)
	}
}

// TestClientEntryIndexOfBatches: the index is per message, counted from 0
// over the topic's life: the broker stores the index of an entry's last
// message and the client numbers the batch's messages back from it.
func TestClientEntryIndexOfBatches(t *testing.T) {
	t.Parallel()
	s := startBroker(t, Config{ExposeEntryIndex: true})
	client := newClient(t, s)
	topic := topicName(t)
	cons := subscribe(t, client, pulsar.ConsumerOptions{Topic: topic, SubscriptionName: "sub", Type: pulsar.Exclusive})
	prod := newProducer(t, client, pulsar.ProducerOptions{Topic: topic, BatchingMaxMessages: 5, BatchingMaxPublishDelay: time.Second})
	produce(t, prod, 0, 23, 0)
	for i := range 23 {
		m := receive(t, cons, 5*time.Second)
		if got := string(m.Payload()); got != fmt.Sprintf("msg-%d", i) || m.Index() == nil || *m.Index() != uint64(i) {
			t.Fatalf("message %d: %q, index %v", i, got, m.Index())
		}
	}
	if st := s.Stats(); st.EntriesIn >= 23 {
		t.Fatalf("%d entries for 23 messages: not batched", st.EntriesIn)
	}
}
