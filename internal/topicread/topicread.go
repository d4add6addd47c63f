// Package topicread reads a Pulsar topic from its start, for tests that
// check what was published to it (a dead-letter topic).
package topicread

import (
	"context"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	plog "github.com/apache/pulsar-client-go/pulsar/log"
)

// Read returns the first n messages of topic on the broker at url, failing
// t if they do not all arrive within timeout. With exact, it also fails t
// if one more arrives within 200 ms.
func Read(t testing.TB, url, topic string, n int, timeout time.Duration, exact bool) []pulsar.Message {
	t.Helper()
	client, err := pulsar.NewClient(pulsar.ClientOptions{URL: url, OperationTimeout: timeout, Logger: plog.DefaultNopLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := client.Subscribe(pulsar.ConsumerOptions{Topic: topic, SubscriptionName: "topicread", SubscriptionInitialPosition: pulsar.SubscriptionPositionEarliest})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []pulsar.Message
	for i := range n {
		m, err := c.Receive(ctx)
		if err != nil {
			t.Fatalf("%s: message %d of %d: %v", topic, i, n, err)
		}
		out = append(out, m)
	}
	if exact {
		rctx, rcancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer rcancel()
		if m, err := c.Receive(rctx); err == nil {
			t.Fatalf("%s: more than %d messages: %q", topic, n, m.Payload())
		}
	}
	return out
}
