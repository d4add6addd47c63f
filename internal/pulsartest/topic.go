package pulsartest

import (
	"encoding/base64"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/demandpipe/demandpipe/internal/murmur3"
)

// topic is a non-partitioned topic (or one partition): an in-memory ledger
// of entries and its subscriptions. Each topic has one ledger for its whole
// life, so a position is just the entry id; message ids carry the ledger id
// so that ids from other topics can be told apart (a topic deleted for
// inactivity and created again gets a new ledger). The entries of a
// trimmed "ledger" (a range of entry ids, retention.go) keep their
// bookkeeping and lose their bytes; the rest stay until Close or the
// topic's deletion (inactive.go).
type topic struct {
	srv        *Server
	name       string
	ledger     int64
	partition  int // index if the topic is a partition, else -1
	entries    []*entry
	subs       map[string]*subscription
	bytes      int64
	producers  int                  // connected producers (the broker's usage count counts them and the consumers)
	names      map[string]*producer // connected producers by name (unique per topic, AbstractTopic.producers)
	lastActive time.Time            // AbstractTopic.lastActive: see inactive.go

	// Retention (retention.go): the ledgers, oldest first (the last takes
	// the writes); entries before first are trimmed (their bytes dropped,
	// trimmedBytes of them); nextIndex is the broker entry index of the
	// next message (AppendIndexMetadataInterceptor).
	ledgers      []ledgerSeg
	first        int64
	trimmedBytes int64
	nextIndex    uint64
}

// entry is one stored SEND: a single message or a whole batch, kept as the
// producer sent it (compressed, batched) with a checksum.
type entry struct {
	publishTime uint64
	numMessages int32
	batched     bool
	keySlot     int32  // Murmur3_32(sticky key) % 65536, for Key_Shared
	index       uint64 // broker entry index of its last message (retention.go)
	stored      []byte // nil once its ledger is trimmed
}

type producer struct {
	id   uint64
	name string
	t    *topic
}

// addProducer registers p, whose name the caller checked is free.
func (t *topic) addProducer(p *producer) {
	t.names[p.name] = p
	t.producers++
}

// append stores one SEND and returns its entry id.
func (t *topic) append(meta msgMeta, sendNum int32, stored []byte) int64 {
	n := sendNum
	if meta.haveNumMessages {
		n = meta.numMessages
	}
	if n < 1 {
		n = 1
	}
	e := &entry{
		publishTime: meta.publishTime,
		numMessages: n,
		batched:     meta.haveNumMessages,
		keySlot:     int32(murmur3.Sum31(stickyKey(meta)) % hashRangeSize),
		index:       t.nextIndex + uint64(n) - 1,
		stored:      stored,
	}
	t.nextIndex += uint64(n)
	t.entries = append(t.entries, e)
	t.bytes += int64(len(stored))
	t.rolloverLocked(time.Now())
	return int64(len(t.entries) - 1)
}

// stickyKey is the key Key_Shared routes by, chosen as the Pulsar broker
// does (Commands.peekStickyKey): the ordering key if set, else the
// partition key (base64-decoded when flagged), else the bytes "NONE_KEY".
func stickyKey(m msgMeta) []byte {
	if len(m.orderingKey) > 0 {
		return m.orderingKey
	}
	if m.partitionKey != "" {
		if m.partitionKeyB64 {
			if b, err := base64.StdEncoding.DecodeString(m.partitionKey); err == nil {
				return b
			}
		}
		return []byte(m.partitionKey)
	}
	return []byte("NONE_KEY")
}

// positionOf maps a client message id to an entry position on this topic.
// Ids from an older ledger (including the "earliest" sentinel -1) map to
// the start, from a newer one (including "latest", MaxInt64) to the end.
func (t *topic) positionOf(id msgID) int64 {
	end := int64(len(t.entries))
	switch {
	case id.ledger < t.ledger:
		return t.first
	case id.ledger > t.ledger || id.entry == math.MaxInt64:
		return end
	case id.entry < 0:
		return t.first
	case id.entry > end:
		return end
	}
	return max(id.entry, t.first) // a trimmed entry: the first one left
}

// positionAtTime returns the first entry published at or after ms (Unix
// milliseconds), or the end of the ledger.
func (t *topic) positionAtTime(ms uint64) int64 {
	return max(t.first, int64(sort.Search(len(t.entries), func(i int) bool {
		return t.entries[i].publishTime >= ms
	})))
}

// normalizeTopic turns "x", "tenant/ns/x" or "persistent://tenant/ns/x"
// into the full persistent name.
func normalizeTopic(name string) (string, error) {
	rest := name
	if i := strings.Index(name, "://"); i >= 0 {
		scheme := name[:i]
		if scheme != "persistent" && scheme != "non-persistent" {
			return "", fmt.Errorf("invalid topic domain in %q", name)
		}
		rest = name[i+3:]
		if strings.Count(rest, "/") < 2 {
			return "", fmt.Errorf("invalid topic name %q", name)
		}
		for _, part := range strings.SplitN(rest, "/", 3) {
			if part == "" {
				return "", fmt.Errorf("invalid topic name %q", name)
			}
		}
		return name, nil
	}
	switch strings.Count(rest, "/") {
	case 0:
		if rest == "" {
			return "", fmt.Errorf("empty topic name")
		}
		return "persistent://public/default/" + rest, nil
	case 2:
		for _, part := range strings.Split(rest, "/") {
			if part == "" {
				return "", fmt.Errorf("invalid topic name %q", name)
			}
		}
		return "persistent://" + rest, nil
	}
	return "", fmt.Errorf("invalid topic name %q", name)
}

const partitionSuffix = "-partition-"

// PartitionName returns the name of partition i of a partitioned topic.
func PartitionName(topic string, i int) string {
	return topic + partitionSuffix + strconv.Itoa(i)
}

// topicLocked returns the topic, creating it on first use as a broker with
// topic auto-creation does.
func (s *Server) topicLocked(name string) *topic {
	t := s.topics[name]
	if t == nil {
		t = &topic{srv: s, name: name, ledger: s.nextLedger, partition: -1, subs: make(map[string]*subscription), names: make(map[string]*producer), lastActive: time.Now()}
		t.ledgers = []ledgerSeg{{start: 0, opened: t.lastActive}}
		s.nextLedger++
		if i := strings.LastIndex(name, partitionSuffix); i >= 0 {
			if n, err := strconv.Atoi(name[i+len(partitionSuffix):]); err == nil && n >= 0 {
				t.partition = n
			}
		}
		s.topics[name] = t
	}
	return t
}

// CreatePartitionedTopic declares topic (short or full name) as
// partitioned with n partitions named "<topic>-partition-<i>". Clients
// learn the count from PARTITIONED_METADATA. Growing a topic's partition
// count is allowed; shrinking is not, as in Pulsar.
func (s *Server) CreatePartitionedTopic(name string, n int) error {
	full, err := normalizeTopic(name)
	if err != nil {
		return err
	}
	if n < 1 || n > 1024 {
		return fmt.Errorf("pulsartest: partitions %d out of range [1, 1024]", n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if old := s.partitioned[full]; n < old {
		return fmt.Errorf("pulsartest: topic %s has %d partitions, cannot shrink to %d", full, old, n)
	}
	if t := s.topics[full]; t != nil && len(t.entries) > 0 {
		return fmt.Errorf("pulsartest: topic %s already exists as a non-partitioned topic", full)
	}
	s.partitioned[full] = n
	for i := range n {
		s.topicLocked(PartitionName(full, i))
	}
	return nil
}
