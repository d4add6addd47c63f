package cassandra

import (
	"context"
	"fmt"
	"hash/crc32"

	"github.com/apache/cassandra-gocql-driver/v2"
)

// kindRegistry is the state table's record of a deployment's feature
// definitions and which is active (package definitions' File, as JSON),
// kept under the first definition's state name (issue 23). One record,
// one chunk: a write of it is one row, atomic, so a promotion is seen
// whole or not at all.
const kindRegistry = "definitions"

// maxRegistry bounds the record (a few hundred bytes in practice).
const maxRegistry = 64 << 10

// ReadRegistry reads the definitions record of the pipeline cfg names
// (its state name); false when there is none.
func ReadRegistry(ctx context.Context, sess *gocql.Session, cfg Config) ([]byte, bool, error) {
	return readRecord(ctx, sess, newStateStmts(cfg), stateConsistency(cfg.Consistency), cfg.StateName(), kindRegistry, 0)
}

// WriteRegistry replaces that record.
func WriteRegistry(ctx context.Context, sess *gocql.Session, cfg Config, data []byte) error {
	if len(data) > maxRegistry {
		return fmt.Errorf("sink cassandra: definitions record of %d bytes, at most %d", len(data), maxRegistry)
	}
	crc := int32(crc32.Checksum(data, castagnoli))
	q := sess.Query(newStateStmts(cfg).putHead, cfg.StateName(), kindRegistry, int64(0), data, 1, len(data), crc).
		Consistency(stateConsistency(cfg.Consistency)).Idempotent(true)
	if err := q.ExecContext(ctx); err != nil {
		return fmt.Errorf("sink cassandra: write the definitions record: %w", err)
	}
	return nil
}

// Connect opens a session on cfg's cluster (for readers of several
// tables, which share it: NewStore).
func Connect(ctx context.Context, cfg Config) (*gocql.Session, error) {
	sess, _, err := connect(ctx, cfg)
	return sess, err
}
