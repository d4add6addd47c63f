// Package leakcheck holds goroutine-leak options shared by the test
// packages that use the Pulsar Go client (go.uber.org/goleak).
package leakcheck

import "go.uber.org/goleak"

// PulsarClient exempts the goroutines the Go client v0.21.0 lets outlive
// Close for a bounded time: each producer's failTimeoutMessages loop only
// notices the producer closed when its SendTimeout timer (30 s by default)
// fires, and a reconnect that was in flight when the producer or consumer
// closed runs its lookup retries until OperationTimeout.
var PulsarClient = []goleak.Option{
	goleak.IgnoreTopFunction("github.com/apache/pulsar-client-go/pulsar.(*partitionProducer).failTimeoutMessages"),
	goleak.IgnoreAnyFunction("github.com/apache/pulsar-client-go/pulsar.(*partitionProducer).reconnectToBroker"),
	goleak.IgnoreAnyFunction("github.com/apache/pulsar-client-go/pulsar.(*partitionConsumer).reconnectToBroker"),
}
