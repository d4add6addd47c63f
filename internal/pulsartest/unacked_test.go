package pulsartest

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"

	"github.com/demandpipe/demandpipe/internal/murmur3"
)

// The unacked-message limits of Shared and Key_Shared subscriptions
// (config.go), pinned on the dispatcher alone, then with the Go client and
// with pulsar-flex, an independent client.

// TestUnackedDefaults: a Config left zero gets the broker's defaults
// (conf/broker.conf: maxUnackedMessagesPerConsumer=50000,
// maxUnackedMessagesPerSubscription=200000, Key_Shared look-ahead 2000 per
// consumer and 20000 per subscription).
func TestUnackedDefaults(t *testing.T) {
	s := startBroker(t, Config{})
	c := s.Config()
	if c.MaxUnackedMessagesPerConsumer != 50000 || c.MaxUnackedMessagesPerSubscription != 200000 ||
		c.KeySharedLookAheadPerConsumer != 2000 || c.KeySharedLookAheadPerSubscription != 20000 {
		t.Fatalf("defaults: consumer %d, subscription %d, look-ahead %d/%d", c.MaxUnackedMessagesPerConsumer,
			c.MaxUnackedMessagesPerSubscription, c.KeySharedLookAheadPerConsumer, c.KeySharedLookAheadPerSubscription)
	}
	if c := startBroker(t, Config{MaxUnackedMessagesPerConsumer: Unlimited}).Config(); c.MaxUnackedMessagesPerConsumer != Unlimited {
		t.Fatalf("Unlimited became %d", c.MaxUnackedMessagesPerConsumer)
	}
}

// ids returns entry ids from..to-1.
func ids(from, to int64) []int64 {
	var out []int64
	for e := from; e < to; e++ {
		out = append(out, e)
	}
	return out
}

func (r *dispatchRig) ackEntries(es ...int64) {
	cmd := ackCmd{}
	for _, e := range es {
		cmd.ids = append(cmd.ids, msgID{ledger: r.t.ledger, entry: e})
	}
	r.sub.ack(cmd)
}

// TestUnackedConsumerLimit: a Shared consumer that does not acknowledge
// gets exactly the limit, is blocked, gets nothing more until its count
// is down to half, and a redelivered message counts again.
func TestUnackedConsumerLimit(t *testing.T) {
	r := newRigWith(subShared, Config{MaxUnackedMessagesPerConsumer: 10})
	a := r.consumer("a", 1000)
	for range 40 {
		r.produce("k", 1)
	}
	if got := got(t, a); !slices.Equal(got, ids(0, 10)) || !a.blocked || a.unacked != 10 {
		t.Fatalf("got %v (blocked %v, unacked %d), want exactly entries 0..9 and blocked", got, a.blocked, a.unacked)
	}
	if r.s.stats.ConsumersBlocked != 1 {
		t.Fatalf("ConsumersBlocked %d", r.s.stats.ConsumersBlocked)
	}
	r.ackEntries(0, 1, 2, 3) // 6 left: above half
	if got := got(t, a); len(got) != 0 || !a.blocked {
		t.Fatalf("at 6 of 10 unacked: got %v, blocked %v", got, a.blocked)
	}
	r.ackEntries(4) // 5: half
	if got := got(t, a); !slices.Equal(got, ids(10, 15)) || !a.blocked || a.unacked != 10 {
		t.Fatalf("at half: got %v (blocked %v, unacked %d), want 10..14 and blocked again", got, a.blocked, a.unacked)
	}
	// A nack releases the message from the count and unblocks
	// (Consumer.redeliverUnacknowledgedMessages); dispatched again, it
	// counts again.
	r.sub.redeliver(a, []msgID{{ledger: r.t.ledger, entry: 5}})
	if got := got(t, a); !slices.Equal(got, []int64{5}) || !a.blocked || a.unacked != 10 {
		t.Fatalf("after a nack: got %v (blocked %v, unacked %d), want [5] again and blocked", got, a.blocked, a.unacked)
	}
	// FLOW while blocked adds permits but sends nothing.
	r.sub.flow(a, 1000)
	if got := got(t, a); len(got) != 0 {
		t.Fatalf("FLOW while blocked sent %v", got)
	}
	// A second consumer gets its own 10; when a leaves, its count goes
	// with it and its messages go to b once b is below half.
	b := r.consumer("b", 1000)
	r.sub.dispatch()
	if got := got(t, b); !slices.Equal(got, ids(15, 25)) || !b.blocked {
		t.Fatalf("b got %v (blocked %v)", got, b.blocked)
	}
	r.sub.removeConsumer(a)
	if r.sub.unacked != 10 || len(got(t, b)) != 0 {
		t.Fatalf("after a left: subscription unacked %d", r.sub.unacked)
	}
	r.ackEntries(ids(15, 20)...)
	if got := got(t, b); !slices.Equal(got, []int64{5, 6, 7, 8, 9}) {
		t.Fatalf("b got %v, want a's first unacked messages", got)
	}
	// Batches count their messages; an entry goes whole, so a consumer
	// may pass the limit by less than a batch, as with the broker (which
	// sends at least one entry: PersistentDispatcherMultipleConsumers.
	// trySendMessagesToConsumers).
	rb := newRigWith(subShared, Config{MaxUnackedMessagesPerConsumer: 10})
	c := rb.consumer("c", 1000)
	for range 5 {
		rb.produce("k", 4)
	}
	if got := got(t, c); !slices.Equal(got, ids(0, 3)) || c.unacked != 12 || !c.blocked {
		t.Fatalf("batches of 4: got %v, unacked %d, blocked %v", got, c.unacked, c.blocked)
	}
}

// TestUnackedNoLimit: Exclusive and Failover (cumulative acks), a
// non-durable subscription, and a limit set to Unlimited deliver
// everything.
func TestUnackedNoLimit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		typ     subType
		durable bool
		cfg     Config
	}{
		{"exclusive", subExclusive, true, Config{MaxUnackedMessagesPerConsumer: 5, MaxUnackedMessagesPerSubscription: 5}},
		{"failover", subFailover, true, Config{MaxUnackedMessagesPerConsumer: 5, MaxUnackedMessagesPerSubscription: 5}},
		{"non-durable shared", subShared, false, Config{MaxUnackedMessagesPerConsumer: 5}},
		{"unlimited", subShared, true, Config{MaxUnackedMessagesPerConsumer: Unlimited, MaxUnackedMessagesPerSubscription: Unlimited}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRigWith(tc.typ, tc.cfg)
			r.sub.durable = tc.durable
			c := r.consumer("a", 1000)
			for range 30 {
				r.produce("k", 1)
			}
			if got := got(t, c); len(got) != 30 || c.blocked || r.sub.blocked {
				t.Fatalf("got %d of 30 (blocked %v/%v)", len(got), c.blocked, r.sub.blocked)
			}
		})
	}
}

// TestUnackedSubscriptionLimit: the subscription's consumers together stop
// at its limit; it still redelivers, and reads new entries again once its
// count is below half.
func TestUnackedSubscriptionLimit(t *testing.T) {
	r := newRigWith(subShared, Config{MaxUnackedMessagesPerConsumer: Unlimited, MaxUnackedMessagesPerSubscription: 10})
	a := r.consumer("a", 1000)
	b := r.consumer("b", 1000)
	for range 30 {
		r.produce("k", 1)
	}
	ga, gb := got(t, a), got(t, b)
	if len(ga)+len(gb) != 10 || !r.sub.blocked || r.s.stats.SubscriptionsBlocked != 1 {
		t.Fatalf("a %v, b %v, blocked %v: want 10 in all and blocked", ga, gb, r.sub.blocked)
	}
	// b leaves: 5 unacked remain, not below half; its 5 are redelivered
	// to a all the same (the dispatcher replays while blocked).
	r.sub.removeConsumer(b)
	if got := got(t, a); !slices.Equal(got, gb) || !r.sub.blocked || r.sub.unacked != 10 {
		t.Fatalf("after b left a got %v (want b's %v), blocked %v, unacked %d", got, gb, r.sub.blocked, r.sub.unacked)
	}
	r.ackEntries(ids(0, 5)...) // 5 left: not below half
	if got := got(t, a); len(got) != 0 {
		t.Fatalf("at 5 of 10: got %v", got)
	}
	r.ackEntries(5) // 4: below half
	if got := got(t, a); !slices.Equal(got, ids(10, 16)) || !r.sub.blocked {
		t.Fatalf("below half: got %v (blocked %v), want 10..15 and blocked again", got, r.sub.blocked)
	}
	if st := r.s.Stats(); len(st.Blocked) != 1 || st.Blocked[0].Consumer != "" || st.Blocked[0].UnackedMessages != 10 || st.Blocked[0].Limit != 10 {
		t.Fatalf("Stats.Blocked = %+v", st.Blocked)
	}
}

// keysOf finds a key owned by each of the given Key_Shared consumers.
func (r *dispatchRig) keysOf(cs ...*consumer) []string {
	keys := make([]string, len(cs))
	for i, found := 0, 0; found < len(cs); i++ {
		k := fmt.Sprintf("key-%d", i)
		j := slices.Index(cs, r.sub.ks.owner(int32(murmur3.Sum31([]byte(k))%hashRangeSize)))
		if j >= 0 && keys[j] == "" {
			keys[j] = k
			found++
		}
	}
	return keys
}

// TestUnackedKeyShared: a Key_Shared consumer blocked on unacked messages
// holds back only its own keys, which are parked for it (in order) while
// the other consumer's keys flow.
func TestUnackedKeyShared(t *testing.T) {
	r := newRigWith(subKeyShared, Config{MaxUnackedMessagesPerConsumer: 4})
	a := r.consumer("a", 1000)
	b := r.consumer("b", 1000)
	k := r.keysOf(a, b)
	for range 6 {
		r.produce(k[0], 1) // entries 0..5
	}
	for range 3 {
		r.produce(k[1], 1) // 6..8
	}
	if ga, gb := got(t, a), got(t, b); !slices.Equal(ga, ids(0, 4)) || !slices.Equal(gb, ids(6, 9)) || !a.blocked {
		t.Fatalf("a %v (blocked %v), b %v", ga, a.blocked, gb)
	}
	r.ackEntries(0, 1) // a at half
	if got := got(t, a); !slices.Equal(got, []int64{4, 5}) {
		t.Fatalf("a got %v after acking to half, want its parked 4, 5", got)
	}
}

// TestKeySharedLookAhead: the number of entries parked for busy keys is
// min(2000 × consumers, 20000) by default
// (PersistentStickyKeyDispatcherMultipleConsumers.getEffectiveLookAheadLimit),
// and reading stops there.
func TestKeySharedLookAhead(t *testing.T) {
	for _, tc := range []struct {
		cfg       Config
		consumers int
		want      int
	}{
		{Config{}, 1, 2000},
		{Config{}, 5, 10000},
		{Config{}, 10, 20000},
		{Config{}, 30, 20000},
		{Config{KeySharedLookAheadPerConsumer: Unlimited}, 3, 20000},
		{Config{KeySharedLookAheadPerSubscription: Unlimited}, 30, 60000},
		{Config{KeySharedLookAheadPerConsumer: Unlimited, KeySharedLookAheadPerSubscription: Unlimited}, 3, 150000},
		{Config{KeySharedLookAheadPerConsumer: Unlimited, KeySharedLookAheadPerSubscription: Unlimited}, 5, 200000},
		{Config{KeySharedLookAheadPerConsumer: Unlimited, KeySharedLookAheadPerSubscription: Unlimited,
			MaxUnackedMessagesPerConsumer: Unlimited, MaxUnackedMessagesPerSubscription: Unlimited}, 5, math.MaxInt},
	} {
		r := newRigWith(subKeyShared, tc.cfg)
		for i := range tc.consumers {
			r.consumer(fmt.Sprint("c", i), 0)
		}
		if got := r.sub.lookAhead(); got != tc.want {
			t.Errorf("%+v with %d consumers: look-ahead %d, want %d", tc.cfg, tc.consumers, got, tc.want)
		}
	}
	// Two consumers, look-ahead 2 each: a has no permits, so 4 of its
	// entries are parked and b's entry behind them waits.
	r := newRigWith(subKeyShared, Config{KeySharedLookAheadPerConsumer: 2})
	a := r.consumer("a", 0)
	b := r.consumer("b", 1000)
	k := r.keysOf(a, b)
	for range 6 {
		r.produce(k[0], 1)
	}
	r.produce(k[1], 1)
	if gb := got(t, b); len(gb) != 0 || len(r.sub.replay) != 4 {
		t.Fatalf("b got %v, %d parked: want nothing past 4 parked", gb, len(r.sub.replay))
	}
	r.sub.flow(a, 1000)
	if ga, gb := got(t, a), got(t, b); !slices.Equal(ga, ids(0, 6)) || !slices.Equal(gb, []int64{6}) {
		t.Fatalf("after FLOW a got %v, b %v", ga, gb)
	}
}

// waitState polls the subscription's state until cond holds.
func waitState(t *testing.T, s *Server, topic, sub, what string, cond func(SubscriptionState) bool) SubscriptionState {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, ok := s.Subscription(topic, sub)
		if ok && cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %+v", what, st)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func blockedAt(n int64) func(SubscriptionState) bool {
	return func(st SubscriptionState) bool {
		return len(st.Consumers) == 1 && st.Consumers[0].Blocked && st.Consumers[0].UnackedMessages == n
	}
}

// TestUnackedClientShared: with the Go client, a Shared consumer that
// never acknowledges receives exactly the limit (100 here; 50,000 by
// default), then nothing; acknowledging to one above half changes
// nothing, to half lets exactly half the limit more through.
func TestUnackedClientShared(t *testing.T) {
	const limit = 100
	s := startBroker(t, Config{MaxUnackedMessagesPerConsumer: limit})
	client := newClient(t, s)
	topic := topicName(t)
	cons := subscribe(t, client, pulsar.ConsumerOptions{Topic: topic, SubscriptionName: "sub", Name: "go", Type: pulsar.Shared,
		AckGroupingOptions: &pulsar.AckGroupingOptions{MaxSize: 1}})
	produce(t, newProducer(t, client, pulsar.ProducerOptions{Topic: topic, DisableBatching: true}), 0, 3*limit, 0)

	var msgs []pulsar.Message
	take := func(n int) {
		for range n {
			m := receive(t, cons, 5*time.Second)
			if want := fmt.Sprintf("msg-%d", len(msgs)); string(m.Payload()) != want {
				t.Fatalf("message %d: %q, want %q", len(msgs), m.Payload(), want)
			}
			msgs = append(msgs, m)
		}
	}
	take(limit)
	waitState(t, s, topic, "sub", "the consumer blocked at the limit", blockedAt(limit))
	expectNone(t, cons, 200*time.Millisecond)
	st := s.Stats()
	if want := (BlockedState{Topic: topic, Subscription: "sub", Consumer: "go", UnackedMessages: limit, Limit: limit}); !slices.Equal(st.Blocked, []BlockedState{want}) || st.ConsumersBlocked != 1 {
		t.Fatalf("Stats.Blocked %+v (ConsumersBlocked %d), want %+v", st.Blocked, st.ConsumersBlocked, want)
	}

	for _, m := range msgs[:limit/2-1] {
		cons.Ack(m)
	}
	waitState(t, s, topic, "sub", "the acks", blockedAt(limit/2+1))
	expectNone(t, cons, 100*time.Millisecond)
	cons.Ack(msgs[limit/2-1])
	take(limit / 2)
	waitState(t, s, topic, "sub", "blocked again", blockedAt(limit))
	expectNone(t, cons, 100*time.Millisecond)
	if got := s.Stats().MessagesIn[topic]; got != 3*limit || len(msgs) != limit+limit/2 {
		t.Fatalf("received %d of %d", len(msgs), got)
	}
}

// TestUnackedFlexShared is TestUnackedClientShared with pulsar-flex 1.1.1
// (testdata/flex/consume.js) as the consumer: an independent client sees
// the same limit.
func TestUnackedFlexShared(t *testing.T) {
	t.Parallel() // mostly waiting on pulsar-flex's 1 s poll of an empty queue
	node, dir := flexDir(t)
	const limit = 100
	s := startBroker(t, Config{MaxUnackedMessagesPerConsumer: limit})
	topic := topicName(t)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "consume.js", s.Addr(), topic, "sub")
	cmd.Dir = dir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		io.WriteString(stdin, "quit\n")
		if err := cmd.Wait(); err != nil {
			t.Errorf("consume.js: %v\n%s", err, stderr.String())
		}
	}()
	lines := bufio.NewScanner(stdout)
	read := func() string {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("consume.js ended: %v\n%s", lines.Err(), stderr.String())
		}
		return lines.Text()
	}
	ask := func(q string) string {
		t.Helper()
		io.WriteString(stdin, q+"\n")
		return read()
	}
	waitCount := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, err := strconv.Atoi(ask("count"))
			if err != nil || got > n {
				t.Fatalf("pulsar-flex received %d (%v), want %d", got, err, n)
			}
			if got == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("pulsar-flex received %d, want %d", got, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if got := read(); got != "ready" {
		t.Fatalf("consume.js said %q\n%s", got, stderr.String())
	}
	client := newClient(t, s)
	produce(t, newProducer(t, client, pulsar.ProducerOptions{Topic: topic, DisableBatching: true}), 0, 3*limit, 0)

	waitCount(limit)
	waitState(t, s, topic, "sub", "pulsar-flex's consumer blocked at the limit", blockedAt(limit))
	if got := ask(fmt.Sprint("ack ", limit/2-1)); got != fmt.Sprint("acked ", limit/2-1) {
		t.Fatalf("consume.js: %q", got)
	}
	waitState(t, s, topic, "sub", "the acks", blockedAt(limit/2+1))
	if got := ask("count"); got != fmt.Sprint(limit) {
		t.Fatalf("pulsar-flex received %s above half, want %d", got, limit)
	}
	ask("ack 1")
	waitCount(limit + limit/2)
	waitState(t, s, topic, "sub", "blocked again", blockedAt(limit))
	if got := ask("count"); got != fmt.Sprint(limit+limit/2) {
		t.Fatalf("pulsar-flex received %s, want %d", got, limit+limit/2)
	}
}

// TestClientKeySharedLookAhead checks the look-ahead bound with the
// upstream client: two sticky Key_Shared consumers, "low" never reading
// (a receiver queue of 1), 40 messages of a key of low's then one of
// high's. With a look-ahead of 5 a consumer (10 for the two) the broker
// parks low's entries up to 10, stops reading, and high's message waits
// until low takes its own; with the default (2,000 a consumer) it passes
// at once (PersistentStickyKeyDispatcherMultipleConsumers.
// getEffectiveLookAheadLimit; issue 22 P7).
func TestClientKeySharedLookAhead(t *testing.T) {
	t.Parallel()
	var kLow, kHigh string
	for i := 0; kLow == "" || kHigh == ""; i++ {
		k := fmt.Sprint("key-", i)
		if murmur3.Sum31([]byte(k))%hashRangeSize <= 32767 {
			kLow = cmp.Or(kLow, k)
		} else {
			kHigh = cmp.Or(kHigh, k)
		}
	}
	for _, lookAhead := range []int{5, 0} {
		t.Run(fmt.Sprint("look-ahead=", lookAhead), func(t *testing.T) {
			s := startBroker(t, Config{KeySharedLookAheadPerConsumer: lookAhead})
			client := newClient(t, s)
			topic := topicName(t)
			lowPolicy, _ := pulsar.NewKeySharedPolicySticky([]int{0, 32767})
			highPolicy, _ := pulsar.NewKeySharedPolicySticky([]int{32768, 65535})
			low := subscribe(t, client, pulsar.ConsumerOptions{Topic: topic, SubscriptionName: "sub", Type: pulsar.KeyShared, Name: "low",
				KeySharedPolicy: lowPolicy, ReceiverQueueSize: 1})
			high := subscribe(t, client, pulsar.ConsumerOptions{Topic: topic, SubscriptionName: "sub", Type: pulsar.KeyShared, Name: "high",
				KeySharedPolicy: highPolicy})
			prod := newProducer(t, client, pulsar.ProducerOptions{Topic: topic, DisableBatching: true})
			for i := range 40 {
				if _, err := prod.Send(ctxT(t, 5*time.Second), &pulsar.ProducerMessage{Key: kLow, Payload: fmt.Appendf(nil, "low-%d", i)}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := prod.Send(ctxT(t, 5*time.Second), &pulsar.ProducerMessage{Key: kHigh, Payload: []byte("high")}); err != nil {
				t.Fatal(err)
			}
			// The broker dispatches as each SEND is stored: its state is
			// final for these 41 messages once they are all receipted.
			st, _ := s.Subscription(topic, "sub")
			var highGot int
			for _, c := range st.Consumers {
				if c.Name == "high" {
					highGot = c.Unacked
				}
			}
			if blocked := lookAhead > 0; (highGot == 0) != blocked {
				t.Fatalf("look-ahead %d: high was sent %d entries; want it held back: %v", lookAhead, highGot, blocked)
			}
			for i := range 40 {
				m := receive(t, low, 5*time.Second)
				if string(m.Payload()) != fmt.Sprint("low-", i) {
					t.Fatalf("low got %q, want low-%d", m.Payload(), i)
				}
				low.Ack(m)
			}
			if m := receive(t, high, 5*time.Second); string(m.Payload()) != "high" {
				t.Fatalf("high got %q", m.Payload())
			}
		})
	}
}
