package pulsartest

import (
	"encoding/binary"
	"time"
)

// Retention and ledger trimming, as a Pulsar broker does by default
// (issue 22 P4). A topic's managed ledger is a sequence of BookKeeper
// ledgers; the current one takes the writes and is rolled over once it is
// full (ManagedLedgerImpl.currentLedgerIsFull: at least
// managedLedgerMaxEntriesPerLedger=50000 entries, or
// managedLedgerMaxSizePerLedgerMbytes=2048 MB, and open for at least
// managedLedgerMinLedgerRolloverTimeMinutes=10; or open for
// managedLedgerMaxLedgerRolloverTimeMinutes=240 with entries in it).
// After a rollover, when the slowest durable cursor moves, and every
// retentionCheckIntervalInSeconds=120, ManagedLedgerImpl.
// internalTrimLedgers deletes each closed ledger whose entries all lie
// before every durable subscription's mark-delete position (all closed
// ledgers when the topic has no durable subscription: a reader's cursor is
// non-durable and holds nothing) and that the retention policy does not
// keep: defaultRetentionTimeInMinutes=0 and defaultRetentionSizeInMB=0
// keep none, so acknowledged messages go with their ledger. A replay
// from "earliest" then starts at the first entry left, and nothing on the
// wire says what was trimmed, unless the broker adds broker entry
// metadata with an index (AppendIndexMetadataInterceptor in
// brokerEntryMetadataInterceptors, and exposingBrokerEntryMetadataToClient
// Enabled=true; both off by default): Config.ExposeEntryIndex.
//
// What the double simplifies: a topic keeps one ledger id for its message
// ids (a broker's ids change with each ledger), its "ledgers" are ranges
// of entry ids; the size bound of a ledger is not modelled (2 GB); the
// retention size counts stored bytes; and a trimmed entry keeps its
// bookkeeping (publish time, message count) with its bytes dropped.

// Defaults of the retention settings, from conf/broker.conf.
const (
	DefaultLedgerMaxEntries  = 50000            // managedLedgerMaxEntriesPerLedger
	DefaultLedgerMinRollover = 10 * time.Minute // managedLedgerMinLedgerRolloverTimeMinutes
	DefaultLedgerMaxRollover = 4 * time.Hour    // managedLedgerMaxLedgerRolloverTimeMinutes
	DefaultRetentionCheck    = 2 * time.Minute  // retentionCheckIntervalInSeconds
)

// ledgerSeg is one ledger of a topic: the entry id it starts at and when
// it was opened.
type ledgerSeg struct {
	start  int64
	opened time.Time
}

// rolloverLocked closes t's current ledger if it is full (after an add, as
// ManagedLedgerImpl.updateLedgersIdsComplete / ledgerClosed do) and then
// trims.
func (t *topic) rolloverLocked(now time.Time) {
	cfg := &t.srv.cfg
	cur := &t.ledgers[len(t.ledgers)-1]
	n := int64(len(t.entries)) - cur.start
	age := now.Sub(cur.opened)
	full := n >= int64(cfg.LedgerMaxEntries) && age >= cfg.LedgerMinRollover
	if !full && (n == 0 || age < cfg.LedgerMaxRollover) {
		return
	}
	t.ledgers = append(t.ledgers, ledgerSeg{start: int64(len(t.entries)), opened: now})
	t.srv.stats.LedgersRolled++
	t.trimLocked(now)
}

// trimLocked deletes the closed ledgers no durable cursor needs and the
// retention does not keep (ManagedLedgerImpl.internalTrimLedgers).
func (t *topic) trimLocked(now time.Time) {
	cfg := &t.srv.cfg
	if cfg.RetentionTime < 0 || cfg.RetentionSizeMB < 0 || len(t.ledgers) < 2 {
		return
	}
	slowest := int64(len(t.entries)) // no durable cursor: every closed ledger may go
	for _, sub := range t.subs {
		if sub.durable {
			slowest = min(slowest, sub.markDelete+1)
		}
	}
	// The retention keeps the newest ledgers within RetentionSizeMB and
	// those written to within RetentionTime (isLedgerRetentionOverSizeQuota,
	// hasLedgerRetentionExpired); 0 keeps none.
	keptBytes := t.bytes - t.trimmedBytes
	drop := 0
	for i := 0; i < len(t.ledgers)-1; i++ { // never the current one
		end := t.ledgers[i+1].start
		if end > slowest {
			break
		}
		size := int64(0)
		for e := t.ledgers[i].start; e < end; e++ {
			size += int64(len(t.entries[e].stored))
		}
		last := t.entries[end-1].publishTime
		if cfg.RetentionTime > 0 && now.Sub(time.UnixMilli(int64(last))) < cfg.RetentionTime {
			break
		}
		if cfg.RetentionSizeMB > 0 && keptBytes <= int64(cfg.RetentionSizeMB)<<20 {
			break
		}
		keptBytes -= size
		for e := t.ledgers[i].start; e < end; e++ {
			t.trimmedBytes += int64(len(t.entries[e].stored))
			t.srv.stats.EntriesTrimmed++
			t.srv.stats.MessagesTrimmed += int64(t.entries[e].numMessages)
			t.entries[e].stored = nil
		}
		t.first = end
		drop++
	}
	if drop > 0 {
		t.ledgers = append(t.ledgers[:0], t.ledgers[drop:]...)
		t.srv.stats.LedgersTrimmed += int64(drop)
		t.srv.logf("topic %s: %d ledgers trimmed, entries before %d gone", t.name, drop, t.first)
	}
}

// reloadLedgersLocked is a restarted broker loading its topics: each
// opens a new ledger (ManagedLedgerImpl.initialize), closing the one that
// took the writes before, which may then be trimmed.
func (s *Server) reloadLedgersLocked(now time.Time) {
	for _, t := range s.topics {
		if cur := t.ledgers[len(t.ledgers)-1]; int64(len(t.entries)) > cur.start {
			t.ledgers = append(t.ledgers, ledgerSeg{start: int64(len(t.entries)), opened: now})
			s.stats.LedgersRolled++
		}
		t.trimLocked(now)
	}
}

// retentionCheckLocked is the broker's periodic check on every topic: a
// ledger open past LedgerMaxRollover is rolled over, then trimmed.
func (s *Server) retentionCheckLocked(now time.Time) {
	for _, t := range s.topics {
		t.rolloverLocked(now)
		t.trimLocked(now)
	}
}

// brokerEntryMetadata is the BrokerEntryMetadata a broker with
// AppendIndexMetadataInterceptor (and AppendBrokerTimestampMetadata
// Interceptor) prepends to an entry and, with exposingBrokerEntryMetadata
// ToClientEnabled, sends: magic 0x0e02, a 4-byte size, then the message
// (broker_timestamp = 1, index = 2: the index of the entry's last message,
// counted from 0 over the topic's life; Commands.addBrokerEntryMetadata).
func brokerEntryMetadata(publishTime, index uint64) []byte {
	var pb []byte
	pb = putU64(pb, 1, publishTime)
	pb = putU64(pb, 2, index)
	b := binary.BigEndian.AppendUint16(nil, 0x0e02)
	b = binary.BigEndian.AppendUint32(b, uint32(len(pb)))
	return append(b, pb...)
}
