package pulsartest

import (
	"strings"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
)

// A producer name is unique per topic while its producer is connected, as
// on a broker: a second producer with the name gets ProducerBusy, from the
// same process or another one; the name is free again after a close.
func TestClientProducerNameBusy(t *testing.T) {
	s := startBroker(t, Config{})
	c1, c2 := newClient(t, s), newClient(t, s) // two processes
	topic := topicName(t)
	opts := pulsar.ProducerOptions{Topic: topic, Name: "dup", DisableBatching: true, BackOffPolicyFunc: newFastBackoff}
	first, err := c1.CreateProducer(opts)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range []pulsar.Client{c1, c2} {
		p, err := c.CreateProducer(opts)
		if err == nil {
			p.Close()
			first.Close()
			t.Fatalf("client %d: a second producer named %q was accepted", i+1, opts.Name)
		}
		if !strings.Contains(err.Error(), "ProducerBusy") {
			t.Errorf("client %d: error %q does not name ProducerBusy", i+1, err)
		}
	}
	if n := s.Producers(topic); n != 1 {
		t.Errorf("Producers = %d after refusals, want 1", n)
	}
	first.Close()
	again := newProducer(t, c2, opts)
	if again.Name() != "dup" {
		t.Errorf("name %q, want dup", again.Name())
	}
	produce(t, again, 0, 1, 0)
	// Names are per topic: the same name elsewhere is fine.
	other := opts
	other.Topic = topic + "-other"
	newProducer(t, c1, other)
}

// PRODUCER for a producer id the connection already has is answered with
// success for that producer and changes nothing (ServerCnx.handleProducer);
// a name stays busy until CLOSE_PRODUCER.
func TestRawProducerNameRules(t *testing.T) {
	s := startBroker(t, Config{})
	topic := "persistent://public/default/raw-producer-names"
	producerCmd := func(id, req uint64) []byte {
		return appendBase(nil, cmdProducer, putString(putU64(putU64(putString(nil, 1, topic), 2, id), 3, req), 4, "p"))
	}
	expect := func(c *rawClient, want cmdType) []byte {
		t.Helper()
		typ, body, _ := c.recv()
		if typ != want {
			t.Fatalf("got command %d, want %d", typ, want)
		}
		return body
	}
	a, b := dialRaw(t, s), dialRaw(t, s)
	a.connect(20)
	b.connect(20)
	for req := uint64(1); req <= 2; req++ { // the same id twice: idempotent
		a.send(producerCmd(7, req), nil)
		expect(a, cmdProducerSuccess)
	}
	if n := s.Producers(topic); n != 1 {
		t.Fatalf("Producers = %d after a repeated PRODUCER, want 1", n)
	}
	b.send(producerCmd(1, 1), nil)
	var code uint64
	var msg string
	walk(expect(b, cmdError), func(f field) error {
		switch f.num {
		case 2:
			code = f.u
		case 3:
			msg = string(f.b)
		}
		return nil
	})
	if serverError(code) != errProducerBusy || msg != "Producer with name 'p' is already connected to topic" {
		t.Fatalf("ERROR %d %q, want ProducerBusy (16)", code, msg)
	}
	a.send(appendBase(nil, cmdCloseProducer, putU64(putU64(nil, 1, 7), 2, 3)), nil)
	expect(a, cmdSuccess)
	b.send(producerCmd(1, 2), nil)
	expect(b, cmdProducerSuccess)
}

// A consumer that disconnects does not raise the redelivery count of the
// messages it held; a negative ack does (as in the broker).
func TestClientRedeliveryCountOnlyOnNack(t *testing.T) {
	s := startBroker(t, Config{})
	client := newClient(t, s)
	topic := topicName(t)
	opts := pulsar.ConsumerOptions{Topic: topic, SubscriptionName: "sub", Type: pulsar.Shared,
		NackRedeliveryDelay: 50 * time.Millisecond}
	c1 := subscribe(t, client, opts)
	produce(t, newProducer(t, client, pulsar.ProducerOptions{Topic: topic, DisableBatching: true}), 0, 1, 0)
	if m := receive(t, c1, 5*time.Second); m.RedeliveryCount() != 0 {
		t.Fatalf("first delivery: redelivery count %d", m.RedeliveryCount())
	}
	c1.Close() // unacked
	c2 := subscribe(t, client, opts)
	m := receive(t, c2, 5*time.Second)
	if string(m.Payload()) != "msg-0" || m.RedeliveryCount() != 0 {
		t.Fatalf("after a reconnect: %q redelivery count %d, want msg-0 and 0", m.Payload(), m.RedeliveryCount())
	}
	c2.Nack(m)
	m = receive(t, c2, 5*time.Second)
	if string(m.Payload()) != "msg-0" || m.RedeliveryCount() != 1 {
		t.Fatalf("after a nack: %q redelivery count %d, want msg-0 and 1", m.Payload(), m.RedeliveryCount())
	}
	if err := c2.Ack(m); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Redelivered != 2 {
		t.Errorf("Stats.Redelivered = %d, want 2 (one after the reconnect, one after the nack)", st.Redelivered)
	}
}
