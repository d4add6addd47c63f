package pulsartest

import (
	"fmt"
	"time"
)

// Fault injection. Each fault mirrors something a real cluster does to
// clients: connections reset (DropConnections, DisconnectConsumer), a
// broker that stops delivering for a while (StallDispatch), and a broker
// restart (Stop / Restart) that keeps the topic's data and cursors, as
// BookKeeper and the metadata store would.

// DropConnections closes every client connection at once. Clients see a
// reset and reconnect; unacknowledged messages are redelivered. It returns
// the number of connections closed.
func (s *Server) DropConnections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.conns {
		c.shutdownLocked()
		n++
	}
	s.stats.Dropped += int64(n)
	return n
}

// DisconnectConsumer closes the connection carrying the consumers of
// topic's subscription sub named consumerName (all of the subscription's
// consumers when consumerName is empty). Other producers and consumers on
// that connection are disconnected too, as with a real network failure.
func (s *Server) DisconnectConsumer(topicName, sub, consumerName string) (int, error) {
	name, err := normalizeTopic(topicName)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.topics[name]
	if t == nil || t.subs[sub] == nil {
		return 0, fmt.Errorf("pulsartest: no subscription %q on %s", sub, name)
	}
	var conns []*conn
	for _, c := range t.subs[sub].consumers {
		if consumerName == "" || c.name == consumerName {
			conns = append(conns, c.c)
		}
	}
	n := 0
	for _, c := range conns {
		if !c.closed {
			c.shutdownLocked()
			n++
		}
	}
	s.stats.Dropped += int64(n)
	return n, nil
}

// StallDispatch stops delivering messages to every consumer for d;
// producing, acks and everything else go on. Delivery resumes by itself
// when d has passed. A later call replaces the deadline.
func (s *Server) StallDispatch(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.stallUntil = time.Now().Add(d)
	if s.stallTimer != nil {
		s.stallTimer.Stop()
	}
	s.stallTimer = time.AfterFunc(d, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.stallUntil = time.Time{}
		s.stallTimer = nil
		s.dispatchAllLocked()
	})
}

// ReorderKeySharedReplays sets Config.KeySharedReorderAfterReconnect at
// run time: after a consumer leaves a Key_Shared subscription with
// entries pending, up to n new entries of keys with no pending replay are
// dispatched before the replay, as a broker may (apache/pulsar#10762).
// 0 turns it off. It applies to consumers that leave from now on.
func (s *Server) ReorderKeySharedReplays(n int) error {
	if n < 0 || n > 1<<24 {
		return fmt.Errorf("pulsartest: reorder %d out of range [0, 16777216]", n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ksReorder = n
	return nil
}

func (s *Server) stalledLocked() bool {
	return !s.stallUntil.IsZero() && time.Now().Before(s.stallUntil)
}

func (s *Server) dispatchAllLocked() {
	for _, t := range s.topics {
		for _, sub := range t.subs {
			sub.dispatch()
		}
	}
}

// Stop closes the listener and all connections, keeping every topic,
// message and cursor in memory, like a broker process going down. Clients
// retry until Start is called.
func (s *Server) Stop() { s.stop() }

// Start listens again on the same address after Stop.
func (s *Server) Start() error { return s.listen() }

// Restart is Stop followed by Start.
func (s *Server) Restart() error {
	s.stop()
	return s.listen()
}
