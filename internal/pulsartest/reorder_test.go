package pulsartest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
)

// TestDispatchKeySharedReorder pins the injected reordering
// (Config.KeySharedReorderAfterReconnect) without the network: c1 takes
// entries 0..3 (key a) and leaves; for c2, entry 4 (key a, whose slot has
// entries waiting for replay) is parked behind them, entries 5 and 6 (key
// b) pass ahead of the replay, 7 comes after it. Off, the replay comes
// first and everything in id order.
func TestDispatchKeySharedReorder(t *testing.T) {
	for _, tc := range []struct {
		reorder int
		want    []int64
	}{
		{0, ids(0, 8)},
		{2, []int64{5, 6, 0, 1, 2, 3, 4, 7}},
		{100, []int64{5, 6, 7, 0, 1, 2, 3, 4}}, // to the end of the topic, then the replay
	} {
		t.Run(fmt.Sprint("reorder=", tc.reorder), func(t *testing.T) {
			r := newRig(subKeyShared)
			r.s.ksReorder = tc.reorder
			for _, k := range []string{"a", "a", "a", "a", "a", "b", "b", "b"} {
				r.produce(k, 1)
			}
			c1 := r.consumer("c1", 0)
			c1.permits = 4
			r.sub.dispatch()
			if g := got(t, c1); !slices.Equal(g, ids(0, 4)) {
				t.Fatalf("c1 got %v", g)
			}
			r.sub.removeConsumer(c1)
			c2 := r.consumer("c2", 0)
			c2.permits = 100
			r.sub.dispatch()
			if g := got(t, c2); !slices.Equal(g, tc.want) {
				t.Fatalf("c2 got %v, want %v", g, tc.want)
			}
			if want := int64(min(tc.reorder, 3)); r.s.stats.KeySharedPassedAhead != want {
				t.Errorf("KeySharedPassedAhead %d, want %d", r.s.stats.KeySharedPassedAhead, want)
			}
			if r.sub.reorder != 0 {
				t.Errorf("reorder left %d after the replay", r.sub.reorder)
			}
		})
	}
}

// TestClientKeySharedReorderAfterReconnect checks the injected Key_Shared
// reordering with the upstream client: messages 0..19 are keyed a,
// 20..39 keyed b. With a receiver queue of 10 the broker sends 0..19 (10
// permits, then 5 more at each 5 the client passes on); the application
// takes 0..2, and its channel holds 3..12 when the connection is closed.
// On the reconnect the client clears its receive queue (13..19,
// partitionConsumer.grabConn: clearReceiverQueue) before it subscribes
// again; the broker replays 0..19. With the fault on, b's newer messages
// 20..24 come before that replay, so 13..19, never handed to the
// application before, first arrive after 20: a newer message of one key
// before an older one of another (apache/pulsar#10762). Each key keeps
// its order and nothing is lost. With the fault off, a's messages all
// come first.
func TestClientKeySharedReorderAfterReconnect(t *testing.T) {
	for _, reorder := range []int{0, 5} {
		t.Run(fmt.Sprint("reorder=", reorder), func(t *testing.T) {
			firstAt := keySharedReconnect(t, reorder)
			lastA := slices.Max(firstAt[:20])
			if ahead := lastA > firstAt[20]; ahead != (reorder > 0) {
				t.Fatalf("reorder=%d: msg-20 first received at %d, the last of key a at %d", reorder, firstAt[20], lastA)
			}
		})
	}
}

// keySharedReconnect runs the scenario of
// TestClientKeySharedReorderAfterReconnect and returns, per message, the
// position of its first receipt after the disconnect (-1: before it).
func keySharedReconnect(t *testing.T, reorder int) []int {
	const n = 40
	s := startBroker(t, Config{KeySharedReorderAfterReconnect: reorder})
	client := newClient(t, s)
	topic := topicName(t)
	cons := subscribe(t, client, pulsar.ConsumerOptions{
		Topic: topic, SubscriptionName: "sub", Type: pulsar.KeyShared, Name: "c1", ReceiverQueueSize: 10,
	})
	prod := newProducer(t, client, pulsar.ProducerOptions{Topic: topic, DisableBatching: true})
	for i := range n {
		key := "a"
		if i >= 20 {
			key = "b"
		}
		if _, err := prod.Send(ctxT(t, 5*time.Second), &pulsar.ProducerMessage{Payload: fmt.Appendf(nil, "%d", i), Key: key}); err != nil {
			t.Fatal(err)
		}
	}
	firstAt := make([]int, n)
	for i := range firstAt {
		firstAt[i] = -2 // not received
	}
	var msgs []pulsar.Message
	take := func(pos int) int {
		m := receive(t, cons, 5*time.Second)
		var i int
		fmt.Sscan(string(m.Payload()), &i)
		if firstAt[i] == -2 {
			firstAt[i] = pos
		}
		msgs = append(msgs, m)
		return i
	}
	for range 3 {
		take(-1)
	}
	// Nothing is taken from here until the broker has dispatched after the
	// reconnect: the client's queue is cleared by then.
	waitStats(t, s, "20 messages dispatched", func(st Stats) bool { return st.Dispatched == 20 })
	if _, err := s.DisconnectConsumer(topic, "sub", "c1"); err != nil {
		t.Fatal(err)
	}
	waitStats(t, s, "the replay after the reconnect", func(st Stats) bool { return st.Redelivered > 0 })
	lastOf := map[bool]int{false: -1, true: -1} // per key (b?), the last first receipt
	for pos := 0; slices.Contains(firstAt, -2); pos++ {
		if i := take(pos); firstAt[i] == pos {
			if b := i >= 20; i < lastOf[b] {
				t.Fatalf("key order broken: %d after %d", i, lastOf[b])
			} else {
				lastOf[b] = i
			}
		}
	}
	if got := s.Stats().KeySharedPassedAhead; got != int64(reorder) {
		t.Errorf("KeySharedPassedAhead %d, want %d", got, reorder)
	}
	for _, m := range msgs {
		if err := cons.Ack(m); err != nil {
			t.Fatal(err)
		}
	}
	waitBacklog(t, s, topic, 0)
	return firstAt
}

// waitStats polls the server's Stats until cond holds.
func waitStats(t *testing.T, s *Server, what string, cond func(Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := s.Stats()
		if cond(st) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %+v", what, st)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitBacklog waits until topic's subscription "sub" has backlog entries
// left.
func waitBacklog(t *testing.T, s *Server, topic string, backlog int64) {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	for {
		st, _ := s.Subscription(topic, "sub")
		if st.Backlog == backlog {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("backlog %d, want %d", st.Backlog, backlog)
		case <-time.After(5 * time.Millisecond):
		}
	}
}
