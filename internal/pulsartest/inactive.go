package pulsartest

import "time"

// Inactive topic deletion, as a Pulsar broker does by default: every
// brokerDeleteInactiveTopicsFrequencySeconds (60) the broker's inactivity
// monitor (BrokerService.startInactivityMonitor, checkGC) calls
// PersistentTopic.checkGC on each topic:
//
//	if isActive(mode)                         lastActive = now
//	else if now - lastActive < maxInactive    keep
//	else                                      delete the topic (with its
//	                                          ledger: every message)
//
// isActive is true with a subscription (delete_when_no_subscriptions, the
// default) or with a subscription that has a backlog
// (delete_when_subscriptions_caught_up), and otherwise while the topic's
// usage count (producers plus consumers connected) is not zero. lastActive
// starts when the topic is loaded (AbstractTopic's constructor), and moves
// when a producer is removed (AbstractTopic.handleProducerRemoved), when a
// subscription is unsubscribed (PersistentTopic.unsubscribe) and at each
// check that finds the topic active. So a topic whose last client left is
// deleted one to two periods later, unless a durable subscription holds
// it; a reader's subscription is non-durable and is removed with its
// consumer (PersistentSubscription.removeConsumer), so readers do not
// keep a topic once they are gone. With the default retention (0) the
// deletion is not held back (shouldTopicBeRetained).
//
// A partitioned topic's partitions are deleted one by one; its partition
// count stays (brokerDeleteInactivePartitionedTopicMetadataEnabled=false),
// so a client that uses it again creates the partitions again, empty.
//
// What the double simplifies: a broker runs the check only on the topics
// it has loaded, and loads a topic again after a restart only when a
// client uses it; the double checks every topic, and a Start after Stop
// restarts every topic's inactivity clock (as if each had been loaded
// then). While stopped (Stop), it deletes nothing.

// removeProducer drops one of t's producers (AbstractTopic.
// handleProducerRemoved: the usage count goes down and lastActive moves)
// and frees its name.
func (t *topic) removeProducer(p *producer) {
	if t.names[p.name] == p {
		delete(t.names, p.name)
	}
	t.producers--
	t.lastActive = time.Now()
}

// activeLocked is PersistentTopic.isActive(mode).
func (t *topic) activeLocked(mode string) bool {
	switch mode {
	case DeleteWhenNoSubscriptions:
		if len(t.subs) > 0 {
			return true
		}
	case DeleteWhenCaughtUp:
		for _, sub := range t.subs {
			if sub.backlog() > 0 {
				return true
			}
		}
	}
	if t.producers > 0 {
		return true
	}
	for _, sub := range t.subs {
		if len(sub.consumers) > 0 {
			return true
		}
	}
	return false
}

// checkInactiveLocked is one run of the broker's check at now: it deletes
// every topic that has been inactive for the configured duration and
// returns how many it deleted.
func (s *Server) checkInactiveLocked(now time.Time) int {
	mode, maxInactive := s.cfg.DeleteInactiveTopicsMode, s.cfg.DeleteInactiveTopicsMaxInactive
	s.stats.InactiveTopicChecks++
	n := 0
	for name, t := range s.topics {
		if t.activeLocked(mode) {
			t.lastActive = now
			continue
		}
		if now.Sub(t.lastActive) < maxInactive {
			continue
		}
		// Nothing refers to t any more: no producer, no consumer, and its
		// subscriptions (none, or caught up ones) go with it.
		delete(s.topics, name)
		s.stats.TopicsDeleted++
		n++
		s.logf("topic %s deleted: inactive for %v (%d entries, %d subscriptions)", name, now.Sub(t.lastActive).Round(time.Millisecond), len(t.entries), len(t.subs))
	}
	return n
}

// monitor runs the inactive topic check every
// DeleteInactiveTopicsFrequency (unless disabled) and the retention check
// every RetentionCheckInterval (retention.go), until Close.
func (s *Server) monitor() {
	defer close(s.monitorDone)
	var inactive <-chan time.Time
	if !s.cfg.DeleteInactiveTopicsDisabled {
		tick := time.NewTicker(s.cfg.DeleteInactiveTopicsFrequency)
		defer tick.Stop()
		inactive = tick.C
	}
	retention := time.NewTicker(s.cfg.RetentionCheckInterval)
	defer retention.Stop()
	for {
		select {
		case <-s.monitorStop:
			return
		case <-inactive:
			s.mu.Lock()
			if s.running {
				s.checkInactiveLocked(time.Now())
			}
			s.mu.Unlock()
		case <-retention.C:
			s.mu.Lock()
			if s.running {
				s.retentionCheckLocked(time.Now())
			}
			s.mu.Unlock()
		}
	}
}

// restartInactivityLocked starts every topic's inactivity clock again, for
// a Start after Stop (a restarted broker loads its topics afresh).
func (s *Server) restartInactivityLocked() {
	now := time.Now()
	for _, t := range s.topics {
		t.lastActive = now
	}
}
