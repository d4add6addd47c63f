package pulsartest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	"github.com/apache/pulsar-client-go/pulsar/backoff"
	"github.com/apache/pulsar-client-go/pulsar/log"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/internal/murmur3"
)

// Tests against the real Go client (github.com/apache/pulsar-client-go).

// fastBackoff makes the client retry every 50 ms instead of the default
// 100 ms doubling to 60 s, so fault tests recover within a second.
type fastBackoff struct{}

func (fastBackoff) Next() time.Duration       { return 50 * time.Millisecond }
func (fastBackoff) IsMaxBackoffReached() bool { return false }
func (fastBackoff) Reset()                    {}

func newFastBackoff() backoff.Policy { return fastBackoff{} }

func startBroker(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newClient(t testing.TB, s *Server) pulsar.Client {
	t.Helper()
	c, err := pulsar.NewClient(pulsar.ClientOptions{
		URL:               s.URL(),
		OperationTimeout:  5 * time.Second,
		ConnectionTimeout: 2 * time.Second,
		Logger:            log.DefaultNopLogger(),
		MetricsRegisterer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func topicName(t testing.TB) string {
	return fmt.Sprintf("persistent://public/default/%s-%d", sanitize(t.Name()), time.Now().UnixNano())
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			b[i] = '-'
		}
	}
	return string(b)
}

// produce sends n messages with keys key-(i%keys) and payloads msg-i,
// asynchronously, and waits for every receipt.
func produce(t testing.TB, p pulsar.Producer, from, n, keys int) []pulsar.MessageID {
	t.Helper()
	ids := make([]pulsar.MessageID, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := range n {
		wg.Add(1)
		msg := &pulsar.ProducerMessage{Payload: []byte(fmt.Sprintf("msg-%d", from+i))}
		if keys > 0 {
			msg.Key = fmt.Sprintf("key-%d", (from+i)%keys)
		}
		p.SendAsync(context.Background(), msg, func(id pulsar.MessageID, _ *pulsar.ProducerMessage, err error) {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			ids[i] = id
		})
	}
	p.Flush()
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("send: %v", firstErr)
	}
	return ids
}

func receive(t testing.TB, c pulsar.Consumer, d time.Duration) pulsar.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	m, err := c.Receive(ctx)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return m
}

// expectNone fails if c receives anything within d.
func expectNone(t testing.TB, c pulsar.Consumer, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if m, err := c.Receive(ctx); err == nil {
		t.Fatalf("unexpected message %q (id %v)", m.Payload(), m.ID())
	}
}

func TestClientExclusiveInOrder(t *testing.T) {
	s := startBroker(t, Config{})
	client := newClient(t, s)
	cases := []struct {
		name        string
		batching    bool
		compression pulsar.CompressionType
	}{
		{"unbatched", false, pulsar.NoCompression},
		{"batched", true, pulsar.NoCompression},
		{"batched-lz4", true, pulsar.LZ4},
		{"batched-zstd", true, pulsar.ZSTD},
		{"unbatched-lz4", false, pulsar.LZ4},
	}
	const n = 300
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			topic := topicName(t)
			cons, err := client.Subscribe(pulsar.ConsumerOptions{
				Topic: topic, SubscriptionName: "sub", Type: pulsar.Exclusive,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer cons.Close()
			prod, err := client.CreateProducer(pulsar.ProducerOptions{
				Topic:                   topic,
				DisableBatching:         !tc.batching,
				BatchingMaxPublishDelay: 5 * time.Millisecond,
				BatchingMaxMessages:     50,
				CompressionType:         tc.compression,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer prod.Close()
			produce(t, prod, 0, n, 7)
			for i := range n {
				m := receive(t, cons, 5*time.Second)
				if want := fmt.Sprintf("msg-%d", i); string(m.Payload()) != want {
					t.Fatalf("message %d: payload %q, want %q", i, m.Payload(), want)
				}
				if want := fmt.Sprintf("key-%d", i%7); m.Key() != want {
					t.Fatalf("message %d: key %q, want %q", i, m.Key(), want)
				}
				if err := cons.Ack(m); err != nil {
					t.Fatal(err)
				}
			}
			entries := s.TopicEntries(topic)
			if tc.batching && entries >= n {
				t.Errorf("batched producer stored %d entries for %d messages", entries, n)
			}
			if !tc.batching && entries != n {
				t.Errorf("unbatched producer stored %d entries, want %d", entries, n)
			}
			if got := s.Stats().MessagesIn[topic]; got != n {
				t.Errorf("MessagesIn = %d, want %d", got, n)
			}
		})
	}
}

func subscribe(t testing.TB, client pulsar.Client, opts pulsar.ConsumerOptions) pulsar.Consumer {
	t.Helper()
	if opts.BackOffPolicyFunc == nil {
		opts.BackOffPolicyFunc = newFastBackoff
	}
	c, err := client.Subscribe(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func newProducer(t testing.TB, client pulsar.Client, opts pulsar.ProducerOptions) pulsar.Producer {
	t.Helper()
	if opts.BackOffPolicyFunc == nil {
		opts.BackOffPolicyFunc = newFastBackoff
	}
	if opts.BatchingMaxPublishDelay == 0 {
		opts.BatchingMaxPublishDelay = 5 * time.Millisecond
	}
	p, err := client.CreateProducer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func TestClientAckThenReconnectRedeliversOnlyUnacked(t *testing.T) {
	s := startBroker(t, Config{})
	client := newClient(t, s)
	topic := topicName(t)
	opts := pulsar.ConsumerOptions{Topic: topic, SubscriptionName: "sub", Type: pulsar.Exclusive, AckWithResponse: true}
	c1 := subscribe(t, client, opts)
	prod := newProducer(t, client, pulsar.ProducerOptions{Topic: topic, DisableBatching: true})
	const n = 20
	produce(t, prod, 0, n, 0)
	for i := range n {
		m := receive(t, c1, 5*time.Second)
		if i%2 == 0 {
			if err := c1.Ack(m); err != nil {
				t.Fatal(err)
			}
		}
	}
	c1.Close()
	if st, _ := s.Subscription(topic, "sub"); st.Backlog != n/2 || st.MarkDelete != 0 {
		t.Fatalf("after acks: %+v, want backlog %d, mark-delete 0", st, n/2)
	}
	c2 := subscribe(t, client, opts)
	for i := 1; i < n; i += 2 {
		m := receive(t, c2, 5*time.Second)
		if want := fmt.Sprintf("msg-%d", i); string(m.Payload()) != want {
			t.Fatalf("redelivered %q, want %q", m.Payload(), want)
		}
		if m.RedeliveryCount() != 0 { // a disconnect does not count, as in the broker
			t.Errorf("%s: redelivery count %d after a reconnect, want 0", m.Payload(), m.RedeliveryCount())
		}
		if err := c2.Ack(m); err != nil {
			t.Fatal(err)
		}
	}
	expectNone(t, c2, 200*time.Millisecond)
	if st, _ := s.Subscription(topic, "sub"); st.Backlog != 0 || st.MarkDelete != n-1 {
		t.Fatalf("after all acks: %+v", st)
	}
	if st := s.Stats(); st.Redelivered != n/2 || st.Acked != n {
		t.Errorf("stats: redelivered %d acked %d, want %d %d", st.Redelivered, st.Acked, n/2, n)
	}
}

func TestClientSharedSplits(t *testing.T) {
	s := startBroker(t, Config{})
	client := newClient(t, s)
	topic := topicName(t)
	opts := pulsar.ConsumerOptions{Topic: topic, SubscriptionName: "sub", Type: pulsar.Shared, ReceiverQueueSize: 10}
	c1 := subscribe(t, client, opts)
	c2 := subscribe(t, client, opts)
	prod := newProducer(t, client, pulsar.ProducerOptions{Topic: topic, DisableBatching: true})
	const n = 200
	produce(t, prod, 0, n, 0)
	seen := make(map[string]int)
	counts := collect(t, []pulsar.Consumer{c1, c2}, n, func(_ int, m pulsar.Message) { seen[string(m.Payload())]++ })
	if counts[0] == 0 || counts[1] == 0 {
		t.Fatalf("shared consumers got %v: not split", counts)
	}
	for i := range n {
		if k := seen[fmt.Sprintf("msg-%d", i)]; k != 1 {
			t.Fatalf("msg-%d seen %d times", i, k)
		}
	}
}

// collect receives n messages from the consumers together, acking each,
// and returns how many each consumer got. fn runs in one goroutine.
func collect(t testing.TB, cs []pulsar.Consumer, n int, fn func(i int, m pulsar.Message)) []int {
	t.Helper()
	type got struct {
		i int
		m pulsar.Message
	}
	ch := make(chan got)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := c.Receive(ctx)
				if err != nil {
					return
				}
				c.Ack(m)
				select {
				case ch <- got{i, m}:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	defer wg.Wait()
	defer cancel()
	counts := make([]int, len(cs))
	timeout := time.After(15 * time.Second)
	for range n {
		select {
		case g := <-ch:
			counts[g.i]++
			fn(g.i, g.m)
		case <-timeout:
			t.Fatalf("timed out after %v messages", counts)
		}
	}
	return counts
}

func TestClientKeySharedAutoSplit(t *testing.T) {
	s := startBroker(t, Config{})
	client := newClient(t, s)
	topic := topicName(t)
	opts := pulsar.ConsumerOptions{Topic: topic, SubscriptionName: "sub", Type: pulsar.KeyShared, ReceiverQueueSize: 50}
	opts.Name = "c1"
	c1 := subscribe(t, client, opts)
	opts.Name = "c2"
	c2 := subscribe(t, client, opts)
	st, _ := s.Subscription(topic, "sub")
	if len(st.Consumers) != 2 || st.Consumers[1].HashRanges[0] != [2]int32{0, 32768} ||
		st.Consumers[0].HashRanges[0] != [2]int32{32769, 65535} {
		t.Fatalf("auto-split ranges: %+v", st.Consumers)
	}
	prod := newProducer(t, client, pulsar.ProducerOptions{
		Topic: topic, BatcherBuilderType: pulsar.KeyBasedBatchBuilder, BatchingMaxMessages: 20,
	})
	const n, keys = 600, 40
	produce(t, prod, 0, n, keys)
	owner := map[string]int{}
	last := map[string]int{}
	counts := collect(t, []pulsar.Consumer{c1, c2}, n, func(i int, m pulsar.Message) {
		if o, ok := owner[m.Key()]; ok && o != i {
			t.Errorf("key %s delivered to consumers %d and %d", m.Key(), o, i)
		}
		owner[m.Key()] = i
		var k int
		fmt.Sscanf(string(m.Payload()), "msg-%d", &k)
		if prev, ok := last[m.Key()]; ok && k <= prev {
			t.Errorf("key %s: msg-%d after msg-%d", m.Key(), k, prev)
		}
		last[m.Key()] = k
		// The owner must be the one whose range holds the key's slot.
		slot := int32(murmur3.Sum31([]byte(m.Key())) % hashRangeSize)
		want := 1 // c2 took [0, 32768]
		if slot > 32768 {
			want = 0
		}
		if i != want {
			t.Errorf("key %s (slot %d) went to consumer %d", m.Key(), slot, i)
		}
	})
	if counts[0] == 0 || counts[1] == 0 {
		t.Fatalf("key_shared consumers got %v", counts)
	}
}

func TestClientKeySharedSticky(t *testing.T) {
	s := startBroker(t, Config{})
	client := newClient(t, s)
	topic := topicName(t)
	low, _ := pulsar.NewKeySharedPolicySticky([]int{0, 20000})
	high, _ := pulsar.NewKeySharedPolicySticky([]int{20001, 65535})
	c1 := subscribe(t, client, pulsar.ConsumerOptions{Topic: topic, SubscriptionName: "sub", Type: pulsar.KeyShared, KeySharedPolicy: low})
	c2 := subscribe(t, client, pulsar.ConsumerOptions{Topic: topic, SubscriptionName: "sub", Type: pulsar.KeyShared, KeySharedPolicy: high})
	overlap, _ := pulsar.NewKeySharedPolicySticky([]int{100, 200})
	if c, err := client.Subscribe(pulsar.ConsumerOptions{Topic: topic, SubscriptionName: "sub", Type: pulsar.KeyShared,
		KeySharedPolicy: overlap, MaxReconnectToBroker: new(uint)}); err == nil {
		c.Close()
		t.Fatal("overlapping sticky range accepted")
	}
	prod := newProducer(t, client, pulsar.ProducerOptions{Topic: topic, DisableBatching: true})
	const n, keys = 200, 30
	produce(t, prod, 0, n, keys)
	collect(t, []pulsar.Consumer{c1, c2}, n, func(i int, m pulsar.Message) {
		slot := murmur3.Sum31([]byte(m.Key())) % hashRangeSize
		if want := map[bool]int{true: 0, false: 1}[slot <= 20000]; i != want {
			t.Errorf("key %s (slot %d) went to consumer %d", m.Key(), slot, i)
		}
	})
}

func TestClientPartitionedTopic(t *testing.T) {
	s := startBroker(t, Config{})
	topic := topicName(t)
	if err := s.CreatePartitionedTopic(topic, 3); err != nil {
		t.Fatal(err)
	}
	client := newClient(t, s)
	if parts, err := client.TopicPartitions(topic); err != nil || len(parts) != 3 {
		t.Fatalf("partitions %v %v", parts, err)
	}
	cons := subscribe(t, client, pulsar.ConsumerOptions{Topic: topic, SubscriptionName: "sub", Type: pulsar.Exclusive})
	prod := newProducer(t, client, pulsar.ProducerOptions{Topic: topic, BatcherBuilderType: pulsar.KeyBasedBatchBuilder})
	const n = 300
	produce(t, prod, 0, n, 30)
	seen := map[string]bool{}
	collect(t, []pulsar.Consumer{cons}, n, func(_ int, m pulsar.Message) { seen[string(m.Payload())] = true })
	if len(seen) != n {
		t.Fatalf("saw %d distinct messages, want %d", len(seen), n)
	}
	in := s.Stats().MessagesIn
	total := int64(0)
	for i := range 3 {
		k := in[PartitionName(topic, i)]
		if k == 0 {
			t.Errorf("partition %d got no messages", i)
		}
		total += k
	}
	if total != n {
		t.Errorf("partitions hold %d messages, want %d", total, n)
	}
}

func TestClientSeek(t *testing.T) {
	s := startBroker(t, Config{})
	client := newClient(t, s)
	topic := topicName(t)
	cons := subscribe(t, client, pulsar.ConsumerOptions{Topic: topic, SubscriptionName: "sub", Type: pulsar.Exclusive, AckWithResponse: true})
	prod := newProducer(t, client, pulsar.ProducerOptions{Topic: topic, DisableBatching: true})
	const n = 30
	var ids []pulsar.MessageID
	var times []time.Time
	for i := range n {
		ids = append(ids, produce(t, prod, i, 1, 0)...)
		if i == 14 {
			time.Sleep(20 * time.Millisecond) // a clear publish-time boundary before msg-15
		}
	}
	for range n {
		m := receive(t, cons, 5*time.Second)
		times = append(times, m.PublishTime())
		cons.Ack(m)
	}
	// Seek by id: the broker resets to the entry; the Go client then drops
	// the sought message itself (its start id is exclusive), so delivery
	// resumes at msg-10 or msg-11.
	if err := cons.Seek(ids[10]); err != nil {
		t.Fatal(err)
	}
	first := receive(t, cons, 5*time.Second)
	var k int
	fmt.Sscanf(string(first.Payload()), "msg-%d", &k)
	if k != 10 && k != 11 {
		t.Fatalf("after seek to msg-10, got %s", first.Payload())
	}
	for i := k + 1; i < n; i++ {
		m := receive(t, cons, 5*time.Second)
		if want := fmt.Sprintf("msg-%d", i); string(m.Payload()) != want {
			t.Fatalf("after seek: %q, want %q", m.Payload(), want)
		}
		cons.Ack(m)
	}
	if err := cons.SeekByTime(times[15]); err != nil {
		t.Fatal(err)
	}
	for i := 15; i < n; i++ {
		m := receive(t, cons, 5*time.Second)
		if want := fmt.Sprintf("msg-%d", i); string(m.Payload()) != want {
			t.Fatalf("after seek by time: %q, want %q", m.Payload(), want)
		}
		cons.Ack(m)
	}
	expectNone(t, cons, 200*time.Millisecond)
}

func TestClientCumulativeAck(t *testing.T) {
	s := startBroker(t, Config{})
	client := newClient(t, s)
	topic := topicName(t)
	opts := pulsar.ConsumerOptions{Topic: topic, SubscriptionName: "sub", Type: pulsar.Exclusive, AckWithResponse: true}
	cons := subscribe(t, client, opts)
	prod := newProducer(t, client, pulsar.ProducerOptions{Topic: topic, DisableBatching: true})
	const n = 30
	produce(t, prod, 0, n, 0)
	var msgs []pulsar.Message
	for range n {
		msgs = append(msgs, receive(t, cons, 5*time.Second))
	}
	if err := cons.AckCumulative(msgs[19]); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Subscription(topic, "sub"); st.MarkDelete != 19 || st.Backlog != 10 {
		t.Fatalf("after cumulative ack: %+v", st)
	}
	cons.Close()
	cons = subscribe(t, client, opts)
	for i := 20; i < n; i++ {
		m := receive(t, cons, 5*time.Second)
		if want := fmt.Sprintf("msg-%d", i); string(m.Payload()) != want {
			t.Fatalf("got %q, want %q", m.Payload(), want)
		}
	}
}
