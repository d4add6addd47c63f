package cassandra

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"sync/atomic"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/demandpipe/demandpipe/definitions"
	"github.com/demandpipe/demandpipe/read"
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

// Registry is a Cassandra deployment's definitions record, kept under
// its first definition's table (ReadRegistry), as package definitions'
// File.
type Registry struct {
	Session *gocql.Session
	Config  Config
}

// Load reads the record; ok is false when there is none.
func (r Registry) Load(ctx context.Context) (definitions.File, bool, error) {
	b, ok, err := ReadRegistry(ctx, r.Session, r.Config)
	if err != nil || !ok {
		return definitions.File{}, ok, err
	}
	f, err := definitions.Parse(b)
	return f, true, err
}

// Save writes the record.
func (r Registry) Save(ctx context.Context, f definitions.File) error {
	b, err := f.Marshal()
	if err != nil {
		return err
	}
	return WriteRegistry(ctx, r.Session, r.Config, b)
}

// Register is definitions.Register for Cassandra.
func (r Registry) Register(ctx context.Context, names []string) (definitions.File, error) {
	f, _, err := r.Load(ctx)
	if err != nil {
		return f, err
	}
	f, changed, err := f.With(r.Config.Keyspace+"."+r.Config.Table, names)
	if err == nil && changed {
		err = r.Save(ctx, f)
	}
	return f, err
}

// ActiveEvery is how often a server from Cassandra reads the definitions
// record: a promotion reaches it within this (a read per request would be
// a round trip to the cluster on every answer).
const ActiveEvery = time.Second

// Follow returns the active definition, re-read every ActiveEvery (a
// failed read keeps the last good answer, logged once), and its stop.
func (r Registry) Follow(f definitions.File, warn func(error)) (active func() string, stop func()) {
	var cur atomic.Value
	cur.Store(f.Active)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(ActiveEvery)
		defer t.Stop()
		warned := false
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			g, ok, err := r.Load(ctx)
			cancel()
			switch {
			case err == nil && ok:
				cur.Store(g.Active)
				warned = false
			case !warned:
				if err == nil {
					err = errors.New("no definitions record")
				}
				warn(fmt.Errorf("the definitions record: %w", err))
				warned = true
			}
		}
	}()
	return func() string { return cur.Load().(string) }, func() { close(done) }
}

// KeepDefinitions records a run's definitions in the definitions record
// and follows its active definition (sink.DefinitionsKeeper).
func (s *Sink) KeepDefinitions(ctx context.Context, names []string, warn func(error)) (active func() string, stop func(), err error) {
	r := Registry{Session: s.sess, Config: s.cfg}
	f, err := r.Register(ctx, names)
	if err != nil {
		return nil, nil, err
	}
	active, stop = r.Follow(f, warn)
	return active, stop, nil
}

// Reader reads the sink's table on its own session (sink.Readable).
func (s *Sink) Reader(ctx context.Context) (read.Reader, error) {
	return NewStore(ctx, s.sess, s.cfg, StoreOptions{})
}

// Embedded is false: a run serves a Cassandra sink's rows only when -serve
// is given (each read is a query to the cluster).
func (s *Sink) Embedded() bool { return false }
