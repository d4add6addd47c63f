// Package pulsartest is a Pulsar binary-protocol test double: an in-memory
// broker on real TCP that the Go client (github.com/apache/pulsar-client-go)
// and other Pulsar clients talk to as if it were a Pulsar cluster. No Go
// Pulsar broker exists (apache/pulsar-client-go#1166) and the real one
// needs a JVM, so tests of code that produces to or consumes from Pulsar
// run against this.
//
// It is a TEST DOUBLE, NOT A BROKER FOR PRODUCTION: messages live in memory
// only and are lost when the process exits; acknowledged messages are never
// trimmed, so memory grows with every message sent until a topic is
// deleted (StoredBytes reports it); authentication is a byte comparison of
// tokens (no JWT is verified) and there is no authorization, replication,
// retention or admin REST API.
//
// # Use from Go
//
//	srv, err := pulsartest.Start(pulsartest.Config{}) // 127.0.0.1, a free port
//	if err != nil { ... }
//	defer srv.Close()
//	srv.CreatePartitionedTopic("orders", 3)
//	client, err := pulsar.NewClient(pulsar.ClientOptions{URL: srv.URL()})
//
// # Use as a process
//
//	go run ./internal/pulsartest/cmd/pulsartestd -addr 127.0.0.1:6650 \
//	    -partitions orders=3 -control 127.0.0.1:8089
//	curl -XPOST 'http://127.0.0.1:8089/stall?for=2s'   # fault injection
//	curl http://127.0.0.1:8089/stats
//
// Like a broker with its default configuration, the double deletes a topic
// nobody uses (below): publish to a topic and consume it minutes later
// only with a subscription made first, or with
// -delete-inactive-topics=false.
//
// With TLS and token authentication (a client then needs pulsar+ssl://, a
// trust store holding the certificate's CA, and the token):
//
//	go run ./internal/pulsartest/cmd/pulsartestd -addr 127.0.0.1:6651 \
//	    -tls-cert server.pem -tls-key server-key.pem -token-file token.txt
//
// # Supported
//
//   - CONNECT/CONNECTED with protocol version negotiation (the lower of the
//     client's and Config.MaxProtocolVersion, default v20), PING/PONG.
//   - TLS (Config.TLS, -tls-cert/-tls-key): the listener serves TLS only;
//     URL is pulsar+ssl:// and LOOKUP answers in brokerServiceUrlTls. A
//     failed handshake closes the connection (Stats.TLSFailures). Client
//     certificates are checked only if Config.TLS asks (ClientAuth); they
//     are not an authentication method here.
//   - Token authentication (Config.Tokens, -token/-token-file): when set,
//     CONNECT must carry auth_method_name "token" and auth_data equal to
//     an accepted token; otherwise the double answers ERROR (request id
//     -1, AuthenticationError, "Failed to authenticate") and closes the
//     connection, as the broker's ServerCnx does (Stats.Rejected).
//     SetTokens revokes or rotates tokens for new connections. Tokens are
//     compared as bytes: no signature, expiry or role is checked, no
//     AUTH_CHALLENGE is ever sent (so no credential refresh), and any
//     authenticated client may do anything (no authorization).
//   - LOOKUP (always "connect here", authoritative) and PARTITIONED_METADATA.
//     Partitioned topics are created with CreatePartitionedTopic (or
//     Config.Partitions, or -partitions); partition i of "t" is
//     "t-partition-i". Non-partitioned topics are created on first use.
//   - PRODUCER/PRODUCER_SUCCESS, SEND/SEND_RECEIPT/SEND_ERROR. Producer
//     names are unique per topic while connected: a second producer with
//     a connected producer's name, from any connection, gets ERROR
//     ProducerBusy ("Producer with name '…' is already connected to
//     topic"), as from the broker's AbstractTopic#internalAddProducer; the
//     name is free again once that producer closes or its connection
//     drops. A repeated PRODUCER for a producer id the connection already
//     has is answered with success for that producer, changing nothing
//     (ServerCnx.handleProducer). Producers without a name get a unique
//     one. Batches and
//     compression are the client's business: an entry is stored as sent
//     (metadata + payload) and passed through to consumers; the broker reads
//     num_messages_in_batch to count messages and charge permits.
//   - The frame checksum (CRC32C over metadata size + metadata + payload) is
//     verified on SEND (a mismatch answers SEND_ERROR ChecksumError) and
//     present on every MESSAGE. Frames above MaxMessageSize + 10 KiB close
//     the connection.
//   - SUBSCRIBE with Exclusive, Shared (round robin over consumers with
//     permits), Failover (active consumer by name order, partition index
//     modulo consumers; ACTIVE_CONSUMER_CHANGE sent) and Key_Shared:
//     AUTO_SPLIT as Pulsar's HashRangeAutoSplitStickyKeyConsumerSelector and
//     STICKY with client-declared ranges (overlaps refused). The key hash is
//     Murmur3_32 (seed 0, & 0x7fffffff) of the ordering key, else the
//     partition key, else "NONE_KEY", modulo 65536, as in the Pulsar broker.
//     Initial position Latest or Earliest; non-durable subscriptions
//     (readers) start at start_message_id and vanish with their consumer.
//   - Unacknowledged-message limits on Shared and Key_Shared, with the
//     broker's defaults (conf/broker.conf: maxUnackedMessagesPerConsumer=
//     50000, maxUnackedMessagesPerSubscription=200000;
//     Config.MaxUnackedMessagesPer*, pulsartestd
//     -max-unacked-messages-per-consumer/-subscription, 0 = off as in the
//     broker): a consumer that reaches its limit gets nothing more until
//     acknowledgements bring it to half (Consumer.java:
//     blockedConsumerOnUnackedMsgs, unblocked at <= max/2); a
//     subscription that reaches its limit reads no new entries, though it
//     still redelivers, until it is below half
//     (PersistentDispatcherMultipleConsumers.addUnAckedMessages). Counted
//     in messages (a batch counts its size; an entry goes whole, so a
//     consumer may pass its limit by less than a batch, as with the
//     broker); a redelivered message counts again; a nack releases it and
//     unblocks the consumer, a consumer leaving takes its count with it;
//     durable subscriptions only for the consumer limit (as
//     Consumer.getMaxUnackedMessages). Exclusive and Failover have no
//     limit. Stats.Blocked lists who is blocked now, SubscriptionState
//     and ConsumerState show the counts (unacked_test.go checks it with
//     the Go client and with pulsar-flex).
//   - Key_Shared look-ahead: entries whose key's consumer cannot take them
//     (no permits, or blocked) are parked and the dispatcher reads on, up
//     to min(2000 × consumers, 20000) parked entries
//     (PersistentStickyKeyDispatcherMultipleConsumers.
//     getEffectiveLookAheadLimit; Config.KeySharedLookAhead*).
//   - FLOW permits, MESSAGE dispatch within permits (counted in messages,
//     a batch costs its size). The redelivery count of an entry goes up
//     only on REDELIVER_UNACKNOWLEDGED_MESSAGES (a negative ack or the
//     client's ack timeout), as the broker's InMemoryRedeliveryTracker
//     counts; messages a consumer held when it closed or disconnected are
//     dispatched again with their count unchanged (Stats.Redelivered
//     counts both kinds of re-dispatch).
//   - ACK individual and cumulative, with ACK_RESPONSE when the client asks
//     (AckWithResponse); REDELIVER_UNACKNOWLEDGED_MESSAGES (all or listed);
//     SEEK by message id and by publish time (cursor reset, then
//     CLOSE_CONSUMER so clients resubscribe, as Pulsar does); CLOSE_PRODUCER,
//     CLOSE_CONSUMER, UNSUBSCRIBE, GET_LAST_MESSAGE_ID,
//     GET_TOPICS_OF_NAMESPACE.
//   - Per topic, a ledger of entries (one ledger id per topic, entry ids
//     from 0) kept in memory for replay and seek; per subscription a cursor
//     (mark-delete position + individually acked entries) that survives
//     consumer reconnects, connection drops and Restart.
//   - Retention with the broker's defaults (retention.go): a ledger rolls
//     over after managedLedgerMaxEntriesPerLedger=50000 entries once open
//     for managedLedgerMinLedgerRolloverTimeMinutes=10 (or after
//     managedLedgerMaxLedgerRolloverTimeMinutes=240, and at a Restart);
//     closed ledgers before every durable cursor are deleted, since
//     defaultRetentionTimeInMinutes=0 and defaultRetentionSizeInMB=0 keep
//     none (ManagedLedgerImpl.internalTrimLedgers), after a rollover, an
//     acknowledgement that moves a cursor past a ledger, and every
//     retentionCheckIntervalInSeconds=120 (Config.Ledger*, Retention*,
//     pulsartestd -ledger-*, -retention-*; Stats.LedgersTrimmed,
//     EntriesTrimmed). Config.ExposeEntryIndex sends broker entry metadata
//     with each message's index (AppendIndexMetadataInterceptor with
//     exposingBrokerEntryMetadataToClientEnabled; off by default).
//   - Inactive topic deletion with the broker's defaults
//     (brokerDeleteInactiveTopicsEnabled=true, checked every
//     brokerDeleteInactiveTopicsFrequencySeconds=60, mode
//     delete_when_no_subscriptions, max inactive duration = the frequency;
//     Config.DeleteInactiveTopics*, pulsartestd -delete-inactive-topics*):
//     a topic with no producer, no consumer and (in that mode) no
//     subscription for the inactive duration is deleted with its messages
//     and created again, empty, with a new ledger, on its next use, as
//     PersistentTopic.checkGC does. Durable subscriptions persist without
//     consumers and keep their topic; non-durable ones (readers) vanish
//     with their consumer and keep nothing. A partitioned topic loses its
//     partitions one by one and keeps its partition count
//     (brokerDeleteInactivePartitionedTopicMetadataEnabled=false).
//     delete_when_subscriptions_caught_up is supported too. Stats counts
//     the checks and the topics deleted (inactive.go).
//   - Fault injection: DropConnections, DisconnectConsumer, StallDispatch,
//     Stop/Start/Restart on the same address keeping messages and cursors,
//     and ReorderKeySharedReplays: after a Key_Shared consumer leaves with
//     messages pending, up to N new entries of keys with nothing waiting
//     for replay are dispatched ahead of the replay, as a broker may after
//     a reconnect (apache/pulsar#10762; PersistentStickyKeyDispatcher
//     MultipleConsumers reads past replays it is stuck on and holds back
//     only the keys that have one; Config.KeySharedReorderAfterReconnect,
//     pulsartestd -key-shared-reorder-after-reconnect, off by default;
//     Stats.KeySharedPassedAhead counts them; reorder_test.go checks it
//     with the Go client). Over HTTP via ControlHandler (pulsartestd
//     -control).
//   - Stats (messages in per topic, dispatched, redelivered, acked,
//     connections, refused connections) and Subscription state for
//     assertions.
//
// # Not supported (or simplified)
//
//   - Acks are per entry. A batch-index ack (ack_set with messages still
//     unacked, sent only with EnableBatchIndexAcknowledgment) is ignored: the
//     entry stays unacked until acked whole, so its messages may be
//     redelivered; the client's default whole-batch acks are exact.
//   - Ledgers are ranges of entry ids under one ledger id per topic (a
//     broker's message ids change ledger at each rollover); retention
//     and trimming follow the broker's defaults (retention.go), the 2 GB
//     ledger size bound aside. Inactive topic deletion checks every topic (a broker, only
//     those it has loaded), restarts every topic's inactivity clock on a
//     Start after Stop, and deletes nothing while stopped; namespace and
//     topic policies that override it do not exist.
//   - A producer name held by a connection the double still sees as open
//     stays busy: the broker probes the old connection
//     (checkConnectionLiveness) and frees the name if it is dead; the
//     double frees it only when the connection closes or fails.
//   - Key_Shared does not hold back keys for newly joined consumers
//     (Pulsar's ordering guarantee across consumer changes); per-key order
//     holds while the consumer set is stable.
//   - The unacked limits are the broker-wide settings only: namespace and
//     topic policies that override them (pulsar-admin namespaces
//     set-max-unacked-messages-per-consumer) do not exist, nor does the
//     broker-wide maxUnackedMessagesPerBroker (off by default). The
//     dispatcher checks a consumer before each entry; the broker sends a
//     read batch at a time, capped at the room left under the limit, which
//     gives the same count for single messages and passes the limit by
//     less than a batch either way. Acknowledgements at the batch-index
//     level (ignored, below) release nothing.
//   - Chunked messages, transactions, schemas (GET_SCHEMA and
//     GET_OR_CREATE_SCHEMA answer an error), producer access modes,
//     deduplication (last_sequence_id is always -1), delayed delivery,
//     message TTL, dead-letter handling on the broker, topic watchers,
//     CONSUMER_STATS, non-persistent semantics (non-persistent:// topics
//     behave like persistent ones) and broker entry metadata.
//
// The wire format and field numbers are those of PulsarApi.proto; messages
// are encoded by hand with protowire (proto.go), only the fields used.
package pulsartest
