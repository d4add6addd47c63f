package pulsartest

import (
	"cmp"
	"maps"
	"slices"
)

// Stats are counters the double keeps for tests. Message counts count the
// messages inside batches, not entries.
type Stats struct {
	// MessagesIn is the number of messages stored per topic (full name;
	// partitions by their partition names).
	MessagesIn map[string]int64
	// EntriesIn counts SENDs stored (a batch is one entry).
	EntriesIn int64
	// Dispatched counts messages sent in MESSAGE frames, redeliveries
	// included.
	Dispatched int64
	// Redelivered counts messages dispatched again after a consumer
	// disconnected or asked for redelivery (only the latter raises the
	// redelivery count a consumer sees, as in the broker).
	Redelivered int64
	// Acked counts messages acknowledged (each entry once per
	// subscription).
	Acked int64
	// Connections counts TCP connections accepted since Start.
	Connections int64
	// ActiveConnections is the number of connections open now.
	ActiveConnections int
	// Dropped counts connections closed by fault injection.
	Dropped int64
	// Rejected counts connections refused at CONNECT for a missing or
	// wrong token (Config.Tokens).
	Rejected int64
	// TLSFailures counts connections whose TLS handshake failed
	// (Config.TLS): a client without TLS, or one that does not trust the
	// certificate.
	TLSFailures int64
	// InactiveTopicChecks counts runs of the inactive topic check (one
	// every Config.DeleteInactiveTopicsFrequency while the server runs).
	InactiveTopicChecks int64
	// TopicsDeleted counts topics (partitions of a partitioned topic one
	// by one) deleted with their messages for being inactive.
	TopicsDeleted int64
	// ConsumersBlocked counts the times a Shared or Key_Shared consumer
	// reached Config.MaxUnackedMessagesPerConsumer and was blocked;
	// SubscriptionsBlocked the times a subscription reached
	// Config.MaxUnackedMessagesPerSubscription.
	ConsumersBlocked     int64
	SubscriptionsBlocked int64
	// KeySharedPassedAhead counts the entries dispatched ahead of a
	// Key_Shared replay by the injected reordering
	// (Config.KeySharedReorderAfterReconnect).
	KeySharedPassedAhead int64
	// LedgersRolled counts ledger rollovers; LedgersTrimmed the ledgers
	// deleted by the retention (retention.go), with EntriesTrimmed entries
	// and MessagesTrimmed messages in them.
	LedgersRolled, LedgersTrimmed   int64
	EntriesTrimmed, MessagesTrimmed int64
	// Blocked lists the consumers and subscriptions blocked on
	// unacknowledged messages now (the broker's topic stats show them as
	// blockedConsumerOnUnackedMsgs and blockedSubscriptionOnUnackedMsgs),
	// sorted by topic, subscription and consumer.
	Blocked []BlockedState
}

// BlockedState is a consumer, or a whole subscription (Consumer empty),
// that gets no new messages until acknowledgements bring UnackedMessages
// down to half of Limit.
type BlockedState struct {
	Topic           string
	Subscription    string
	Consumer        string
	UnackedMessages int64
	Limit           int64
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.MessagesIn = maps.Clone(s.stats.MessagesIn)
	st.ActiveConnections = len(s.conns)
	for _, t := range s.topics {
		for _, sb := range t.subs {
			if sb.blocked {
				st.Blocked = append(st.Blocked, BlockedState{Topic: t.name, Subscription: sb.name, UnackedMessages: sb.unacked, Limit: sb.subscriptionLimit()})
			}
			for _, c := range sb.consumers {
				if c.blocked {
					st.Blocked = append(st.Blocked, BlockedState{Topic: t.name, Subscription: sb.name, Consumer: c.name, UnackedMessages: c.unacked, Limit: sb.consumerLimit()})
				}
			}
		}
	}
	slices.SortFunc(st.Blocked, func(a, b BlockedState) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Subscription, b.Subscription), cmp.Compare(a.Consumer, b.Consumer))
	})
	return st
}

// Config returns the server's configuration with every default applied
// (the limits a broker's conf/broker.conf would hold).
func (s *Server) Config() Config {
	cfg := s.cfg
	cfg.Partitions = maps.Clone(cfg.Partitions)
	cfg.Tokens = slices.Clone(cfg.Tokens)
	return cfg
}

// SubscriptionState describes a subscription's cursor, for tests.
type SubscriptionState struct {
	Type       string // Exclusive, Shared, Failover, Key_Shared
	MarkDelete int64  // entry id of the mark-delete position (-1: nothing acked)
	Backlog    int64  // entries not acknowledged
	// Shared and Key_Shared: messages dispatched and not acknowledged, and
	// whether that reached Config.MaxUnackedMessagesPerSubscription.
	UnackedMessages int64
	Blocked         bool
	Consumers       []ConsumerState
}

// ConsumerState describes one connected consumer.
type ConsumerState struct {
	Name    string
	Permits int64
	Unacked int // entries dispatched and not acknowledged
	// Shared and Key_Shared: messages dispatched and not acknowledged (a
	// batch counts its size), and whether that reached
	// Config.MaxUnackedMessagesPerConsumer.
	UnackedMessages int64
	Blocked         bool
	HashRanges      [][2]int32 // Key_Shared: inclusive slot ranges owned
}

// Subscription returns the state of topic's subscription sub, or false if
// it does not exist.
func (s *Server) Subscription(topicName, sub string) (SubscriptionState, bool) {
	name, err := normalizeTopic(topicName)
	if err != nil {
		return SubscriptionState{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.topics[name]
	if t == nil || t.subs[sub] == nil {
		return SubscriptionState{}, false
	}
	sb := t.subs[sub]
	st := SubscriptionState{Type: sb.typ.String(), MarkDelete: sb.markDelete, Backlog: sb.backlog(), UnackedMessages: sb.unacked, Blocked: sb.blocked}
	for _, c := range sb.consumers {
		cs := ConsumerState{Name: c.name, Permits: c.permits, Unacked: len(c.pending), UnackedMessages: c.unacked, Blocked: c.blocked}
		if sb.typ == subKeyShared {
			for _, r := range c.ranges {
				cs.HashRanges = append(cs.HashRanges, [2]int32{r.start, r.end})
			}
		}
		st.Consumers = append(st.Consumers, cs)
	}
	return st, true
}

// TopicEntries returns the number of entries (SENDs) stored on a topic.
func (s *Server) TopicEntries(topicName string) int {
	name, err := normalizeTopic(topicName)
	if err != nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.topics[name]; t != nil {
		return len(t.entries)
	}
	return 0
}

// StoredBytes is the memory held by message payloads across all topics,
// those of trimmed ledgers not counted (retention.go).
func (s *Server) StoredBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, t := range s.topics {
		n += t.bytes - t.trimmedBytes
	}
	return n
}

// Producers returns the number of producers connected to a topic (full or
// short name; a partition by its partition name).
func (s *Server) Producers(topicName string) int {
	name, err := normalizeTopic(topicName)
	if err != nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.conns {
		for _, p := range c.producers {
			if p.t.name == name {
				n++
			}
		}
	}
	return n
}
