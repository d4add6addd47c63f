package pulsartest

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that nothing leaks across the whole package: the
// server's goroutines and the Go client's, since every test closes its
// clients. Two kinds of client goroutines are exempt, because the Go
// client v0.21.0 lets them outlive Close for a bounded time: each
// producer's failTimeoutMessages loop only notices the producer closed when
// its SendTimeout timer (30 s by default) fires, and a reconnect that was
// in flight when the producer or consumer closed runs its lookup retries
// until OperationTimeout.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, clientLingerers...)
}

var clientLingerers = []goleak.Option{
	goleak.IgnoreTopFunction("github.com/apache/pulsar-client-go/pulsar.(*partitionProducer).failTimeoutMessages"),
	goleak.IgnoreAnyFunction("github.com/apache/pulsar-client-go/pulsar.(*partitionProducer).reconnectToBroker"),
	goleak.IgnoreAnyFunction("github.com/apache/pulsar-client-go/pulsar.(*partitionConsumer).reconnectToBroker"),
}
