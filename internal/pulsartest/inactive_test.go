package pulsartest

import (
	"fmt"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
)

// TestInactiveTopicRule pins PersistentTopic.checkGC as the double runs it,
// on broker state built by hand and checks run at chosen instants (the
// server's own monitor is set to an hour, so it never runs here).
func TestInactiveTopicRule(t *testing.T) {
	const maxInactive = 10 * time.Second
	for _, mode := range []string{DeleteWhenNoSubscriptions, DeleteWhenCaughtUp} {
		t.Run(mode, func(t *testing.T) {
			s := startBroker(t, Config{DeleteInactiveTopicsFrequency: time.Hour, DeleteInactiveTopicsMaxInactive: maxInactive, DeleteInactiveTopicsMode: mode})
			if err := s.CreatePartitionedTopic("parted", 2); err != nil {
				t.Fatal(err)
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			t0 := time.Now()
			topic := func(name string, entries int) *topic {
				tp := s.topicLocked("persistent://public/default/" + name)
				tp.lastActive = t0
				for range entries {
					tp.append(msgMeta{}, 1, []byte("x"))
				}
				return tp
			}
			topic("idle", 3)
			subscribed := topic("subscribed", 3)
			subscribed.subs["keep"] = newSubscription(subscribed, "keep", subShared, true)
			caughtUp := topic("caught-up", 3)
			sub := newSubscription(caughtUp, "done", subShared, true)
			sub.resetTo(3) // every entry acknowledged
			caughtUp.subs["done"] = sub
			produced := topic("produced", 1)
			produced.producers = 1
			consumed := topic("consumed", 0)
			cs := newSubscription(consumed, "reader", subExclusive, false)
			cs.consumers = []*consumer{{name: "c"}}
			consumed.subs["reader"] = cs
			for _, name := range []string{PartitionName("persistent://public/default/parted", 0), PartitionName("persistent://public/default/parted", 1)} {
				s.topics[name].lastActive = t0
			}
			exists := func(name string) bool { return s.topics["persistent://public/default/"+name] != nil }

			// Before the inactive duration, nothing goes.
			if n := s.checkInactiveLocked(t0.Add(maxInactive - time.Millisecond)); n != 0 {
				t.Fatalf("%d topics deleted before %v of inactivity", n, maxInactive)
			}
			// The producer leaves: its topic's clock starts again then.
			produced.producers = 0
			produced.lastActive = t0.Add(maxInactive / 2)
			// A connected consumer keeps its topic active: the check moves
			// lastActive to its own time.
			s.checkInactiveLocked(t0.Add(maxInactive))
			want := map[string]bool{"idle": false, "subscribed": true, "caught-up": mode == DeleteWhenNoSubscriptions,
				"produced": true, "consumed": true, "parted-partition-0": false, "parted-partition-1": false}
			for name, kept := range want {
				if exists(name) != kept {
					t.Errorf("after %v: topic %s exists = %v, want %v", maxInactive, name, exists(name), kept)
				}
			}
			if s.partitioned["persistent://public/default/parted"] != 2 {
				t.Errorf("the partitioned topic's metadata went with its partitions")
			}
			if got := consumed.lastActive; !got.Equal(t0.Add(maxInactive)) {
				t.Errorf("an active topic's lastActive = %v after the check, want the check's time", got.Sub(t0))
			}
			// The reader goes, and with it its non-durable subscription.
			cs.consumers = nil
			delete(consumed.subs, "reader")
			s.checkInactiveLocked(t0.Add(maxInactive*3/2 + time.Millisecond))
			want["produced"], want["consumed"] = false, true // consumed: last seen active at maxInactive
			s.checkInactiveLocked(t0.Add(2 * maxInactive))
			want["consumed"] = false
			for name, kept := range want {
				if exists(name) != kept {
					t.Errorf("after %v: topic %s exists = %v, want %v", 2*maxInactive, name, exists(name), kept)
				}
			}
			// A topic deleted comes back empty, with a new ledger, on use.
			idle := s.topicLocked("persistent://public/default/idle")
			if len(idle.entries) != 0 || idle.ledger <= subscribed.ledger {
				t.Errorf("the idle topic came back with %d entries, ledger %d", len(idle.entries), idle.ledger)
			}
			deleted := 0
			for _, kept := range want {
				if !kept {
					deleted++
				}
			}
			if st := s.stats; st.InactiveTopicChecks != 4 || st.TopicsDeleted != int64(deleted) {
				t.Errorf("stats: %d checks, %d topics deleted; want 4, %d", st.InactiveTopicChecks, st.TopicsDeleted, deleted)
			}
		})
	}
}

// TestClientInactiveTopicDeleted checks the deletion with the upstream Go
// client and the double's own monitor (every 200 ms): a topic produced to
// without a subscription loses its messages once the producer has gone (a
// reader from the earliest message finds nothing: the topic was created
// again, empty), a partitioned one too (its partition count stays), a
// reader that read a topic and left does not keep it; a durable
// subscription created first keeps the messages, and so does a producer
// still connected.
func TestClientInactiveTopicDeleted(t *testing.T) {
	const every = 200 * time.Millisecond
	s := startBroker(t, Config{DeleteInactiveTopicsFrequency: every})
	client := newClient(t, s)
	base := topicName(t)
	lost, read, kept, open, parted := base+"-lost", base+"-read", base+"-kept", base+"-open", base+"-parted"
	if err := s.CreatePartitionedTopic(parted, 2); err != nil {
		t.Fatal(err)
	}
	// A durable subscription that never consumes, made before anything is
	// produced.
	c, err := client.Subscribe(pulsar.ConsumerOptions{Topic: kept, SubscriptionName: "keep", Type: pulsar.Shared})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	const n = 5
	for _, topic := range []string{lost, read, kept, parted} {
		p, err := client.CreateProducer(pulsar.ProducerOptions{Topic: topic, BatchingMaxPublishDelay: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		produce(t, p, 0, n, 0)
		p.Close()
	}
	openProd := newProducer(t, client, pulsar.ProducerOptions{Topic: open})
	produce(t, openProd, 0, n, 0)
	if got := readAll(t, client, read); got != n {
		t.Fatalf("read %d of %d messages before the deletion", got, n)
	}
	// lost, read and the two partitions of parted go.
	deadline := time.Now().Add(20 * every)
	for s.Stats().TopicsDeleted < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("%d topics deleted %v after their producers left (%d checks), want 4", s.Stats().TopicsDeleted, 20*every, s.Stats().InactiveTopicChecks)
		}
		time.Sleep(every / 4)
	}
	checks := s.Stats().InactiveTopicChecks
	for s.Stats().InactiveTopicChecks < checks+2 { // and nothing else goes over two more checks
		time.Sleep(every / 4)
	}
	if st := s.Stats(); st.TopicsDeleted != 4 {
		t.Fatalf("%d topics deleted, want 4 (lost, read, two partitions)", st.TopicsDeleted)
	}
	for topic, want := range map[string]int{lost: 0, read: 0, parted: 0, kept: n, open: n} {
		if got := readAll(t, client, topic); got != want {
			t.Errorf("%s: a reader from the earliest message read %d messages, want %d", topic[len(base):], got, want)
		}
	}
	if parts, err := client.TopicPartitions(parted); err != nil || len(parts) != 2 {
		t.Errorf("the partitioned topic's partitions after the deletion: %v %v, want 2", parts, err)
	}
	// The subscription that kept its topic still has every message.
	sub := subscribe(t, client, pulsar.ConsumerOptions{Topic: kept, SubscriptionName: "keep", Type: pulsar.Shared})
	for i := range n {
		if m := receive(t, sub, 5*time.Second); string(m.Payload()) != fmt.Sprintf("msg-%d", i) {
			t.Fatalf("kept message %d: %q", i, m.Payload())
		}
	}
}

// readAll reads topic with a reader from the earliest message to its end
// and returns how many messages it read.
func readAll(t *testing.T, client pulsar.Client, topic string) int {
	t.Helper()
	r, err := client.CreateReader(pulsar.ReaderOptions{Topic: topic, StartMessageID: pulsar.EarliestMessageID()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := ctxT(t, 10*time.Second)
	n := 0
	for r.HasNext() {
		if _, err := r.Next(ctx); err != nil {
			t.Fatalf("%s: %v", topic, err)
		}
		n++
	}
	return n
}
