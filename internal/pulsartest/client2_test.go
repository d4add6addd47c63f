package pulsartest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
)

func TestClientFailoverTakesOver(t *testing.T) {
	s := startBroker(t, Config{})
	client := newClient(t, s)
	topic := topicName(t)
	opts := pulsar.ConsumerOptions{Topic: topic, SubscriptionName: "sub", Type: pulsar.Failover, AckWithResponse: true}
	opts.Name = "a"
	a := subscribe(t, client, opts)
	opts.Name = "b"
	b := subscribe(t, client, opts)
	prod := newProducer(t, client, pulsar.ProducerOptions{Topic: topic, DisableBatching: true})
	produce(t, prod, 0, 10, 0)
	for i := range 10 {
		m := receive(t, a, 5*time.Second) // "a" sorts first: the active consumer
		if want := fmt.Sprintf("msg-%d", i); string(m.Payload()) != want {
			t.Fatalf("active got %q, want %q", m.Payload(), want)
		}
		if i < 5 {
			a.Ack(m)
		}
	}
	expectNone(t, b, 100*time.Millisecond)
	a.Close()
	for i := 5; i < 10; i++ {
		m := receive(t, b, 5*time.Second)
		if want := fmt.Sprintf("msg-%d", i); string(m.Payload()) != want {
			t.Fatalf("standby got %q, want %q", m.Payload(), want)
		}
	}
}

func TestClientReaderFromEarliest(t *testing.T) {
	s := startBroker(t, Config{})
	client := newClient(t, s)
	topic := topicName(t)
	prod := newProducer(t, client, pulsar.ProducerOptions{Topic: topic, BatchingMaxMessages: 4})
	const n = 25
	produce(t, prod, 0, n, 0)
	r, err := client.CreateReader(pulsar.ReaderOptions{Topic: topic, StartMessageID: pulsar.EarliestMessageID()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := ctxT(t, 10*time.Second)
	for i := range n {
		if !r.HasNext() {
			t.Fatalf("HasNext false at %d", i)
		}
		m, err := r.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("msg-%d", i); string(m.Payload()) != want {
			t.Fatalf("reader got %q, want %q", m.Payload(), want)
		}
	}
	if r.HasNext() {
		t.Fatal("HasNext true after the last message")
	}
}

func TestControlHandler(t *testing.T) {
	s := startBroker(t, Config{})
	h := httptest.NewServer(s.ControlHandler())
	defer h.Close()
	client := newClient(t, s)
	topic := topicName(t)
	cons := subscribe(t, client, pulsar.ConsumerOptions{Topic: topic, SubscriptionName: "sub"})
	prod := newProducer(t, client, pulsar.ProducerOptions{Topic: topic, DisableBatching: true})
	post := func(path string, want int) {
		t.Helper()
		resp, err := http.Post(h.URL+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("POST %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	post("/stall?for=300ms", 200)
	start := time.Now()
	produce(t, prod, 0, 1, 0)
	receive(t, cons, 5*time.Second)
	if time.Since(start) < 250*time.Millisecond {
		t.Errorf("message delivered %v into a 300ms stall", time.Since(start))
	}
	post("/stall?for=bogus", 400)
	post("/drop", 200)
	post("/restart", 200)
	post("/partitions?topic=p&n=2", 200)
	post("/disconnect?topic=nope&sub=x", 400)
	post("/reorder-key-shared?n=3", 200)
	if s.mu.Lock(); s.ksReorder != 3 {
		t.Errorf("after /reorder-key-shared?n=3 the reordering is %d", s.ksReorder)
	}
	s.mu.Unlock()
	post("/reorder-key-shared?n=-1", 400)
	post("/reorder-key-shared?n=0", 200)
	// Send only once the producer is back: the Go client v0.21.0 races
	// (under -race) between a producer's reconnect and a concurrent send.
	for deadline := time.Now().Add(10 * time.Second); s.Producers(topic) == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	produce(t, prod, 1, 1, 0)
	receive(t, cons, 5*time.Second)
	resp, err := http.Get(h.URL + "/stats")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stats: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestClientInitialPositionAndRestartKeepsCursor(t *testing.T) {
	s := startBroker(t, Config{})
	client := newClient(t, s)
	topic := topicName(t)
	prod := newProducer(t, client, pulsar.ProducerOptions{Topic: topic, DisableBatching: true})
	produce(t, prod, 0, 5, 0)
	latest := subscribe(t, client, pulsar.ConsumerOptions{Topic: topic, SubscriptionName: "latest",
		SubscriptionInitialPosition: pulsar.SubscriptionPositionLatest})
	earliest := subscribe(t, client, pulsar.ConsumerOptions{Topic: topic, SubscriptionName: "earliest",
		SubscriptionInitialPosition: pulsar.SubscriptionPositionEarliest, AckWithResponse: true})
	for i := range 3 {
		m := receive(t, earliest, 5*time.Second)
		if want := fmt.Sprintf("msg-%d", i); string(m.Payload()) != want {
			t.Fatalf("earliest got %q, want %q", m.Payload(), want)
		}
		earliest.Ack(m)
	}
	expectNone(t, latest, 100*time.Millisecond)
	before, _ := s.Subscription(topic, "earliest")

	// A restart keeps messages and cursors; clients reconnect by themselves.
	s.Stop()
	if n := s.Stats().ActiveConnections; n != 0 {
		t.Fatalf("%d connections open while stopped", n)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	after, _ := s.Subscription(topic, "earliest")
	if after.MarkDelete != before.MarkDelete || before.MarkDelete != 2 {
		t.Fatalf("cursor before restart %+v, after %+v", before, after)
	}
	for i := 3; i < 5; i++ {
		m := receive(t, earliest, 5*time.Second)
		if want := fmt.Sprintf("msg-%d", i); string(m.Payload()) != want {
			t.Fatalf("after restart got %q, want %q", m.Payload(), want)
		}
	}
	if s.TopicEntries(topic) != 5 {
		t.Fatalf("entries after restart: %d", s.TopicEntries(topic))
	}
}

func TestClientExclusiveBusyAndNack(t *testing.T) {
	s := startBroker(t, Config{})
	client := newClient(t, s)
	topic := topicName(t)
	cons := subscribe(t, client, pulsar.ConsumerOptions{Topic: topic, SubscriptionName: "sub", Type: pulsar.Exclusive,
		NackRedeliveryDelay: 50 * time.Millisecond})
	if c, err := client.Subscribe(pulsar.ConsumerOptions{Topic: topic, SubscriptionName: "sub", Type: pulsar.Exclusive,
		MaxReconnectToBroker: new(uint)}); err == nil {
		c.Close()
		t.Fatal("second exclusive consumer accepted")
	}
	prod := newProducer(t, client, pulsar.ProducerOptions{Topic: topic, DisableBatching: true})
	produce(t, prod, 0, 1, 0)
	m := receive(t, cons, 5*time.Second)
	cons.Nack(m) // REDELIVER_UNACKNOWLEDGED_MESSAGES after the nack delay
	again := receive(t, cons, 5*time.Second)
	if string(again.Payload()) != "msg-0" || again.RedeliveryCount() != 1 {
		t.Fatalf("after nack: %q redelivery %d", again.Payload(), again.RedeliveryCount())
	}
	cons.Ack(again)
	// Unsubscribe is checked in TestRawProtocol: with the Go client
	// v0.21.0, Close after Unsubscribe returns early and leaks the
	// consumer's goroutines, which goleak would report.
}
