package cassandra

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"sync"
	"sync/atomic"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/sink"
)

// Sink writes closed minutes to Cassandra. It implements sink.Writer:
// Write encodes rows and hands them to a sink.Queue keyed by partition, so
// every CQL batch is an unlogged batch of one partition; CloseMinute
// returns once the server acknowledged every row of the minute (at
// Config.Consistency); Close drains and closes the session.
type Sink struct {
	cfg    Config
	sess   *gocql.Session
	q      *sink.Queue[row, partKey]
	comp   *countingCompressor
	codec  string
	insert string
	logf   func(format string, args ...any)

	reg     prometheus.Registerer
	mx      []prometheus.Collector // every metric register registered
	codecMx prometheus.Collector
	stateMx []prometheus.Collector

	scratch sync.Pool // *bindScratch for send

	mu      sync.Mutex // Write's scratch, cur and staged
	items   []row
	enc     []byte // Write's encoded values, before the copy into an arena
	ends    []int  // end of each row's value in enc
	minutes atomic.Int64
	closed  atomic.Bool

	// Engine state and the minutes index (state.go).
	name         string // Config.StateName
	nf           int    // features per row of the definition
	st           stateStmts
	stateCons    gocql.Consistency
	chunkBytes   int
	now          func() time.Time
	cur          minuteIndex
	staged       *sink.State
	stagedMinute int64
	parts        []stagedPart // parts' state staged for partsMinute
	partsMinute  int64
	seq          int64 // the last checkpoint's sequence
	countsFrom   int64 // count records below it are deleted
	stateBytes   atomic.Int64
	stateRetries atomic.Int64

	lease *lease // the writer lease (lease.go); nil with lease=false
}

// partKey is a row's partition key; the queue's shard key.
type partKey struct {
	product encode.UUID
	minute  int64
	region  int64
}

// row is one queued row: 64 bytes plus its value (~65 bytes) in a
// Write's arena.
type row struct {
	key  partKey
	cell int64
	f    []byte
}

// Options are what Open needs besides Config.
type Options struct {
	// Registerer receives the metrics (package doc); nil: none.
	Registerer prometheus.Registerer
	// Logf receives the open line, the codec warning and drops. nil:
	// log.Printf.
	Logf func(format string, args ...any)
	// Now is the clock of the minutes' closed times and TTLs. nil:
	// time.Now.
	Now func() time.Time
}

// Open connects, optionally creates the schema, checks the table and the
// negotiated compression, and starts the write queue.
func Open(ctx context.Context, cfg Config, opt Options) (*Sink, error) {
	if opt.Logf == nil {
		opt.Logf = log.Printf
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	sess, comp, err := connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s := &Sink{cfg: cfg, sess: sess, comp: comp, logf: opt.Logf, reg: opt.Registerer,
		insert: fmt.Sprintf("INSERT INTO %s.%s (product, minute, region, cell, f) VALUES (?, ?, ?, ?, ?)", cfg.Keyspace, cfg.Table),
		name:   cfg.StateName(), nf: cfg.Definition.NumFeatures(), st: newStateStmts(cfg),
		stateCons: stateConsistency(cfg.Consistency), chunkBytes: defaultChunkBytes, now: opt.Now}
	s.cur.reset(noMinute, time.Time{})
	fail := func(err error) (*Sink, error) {
		s.lease.close()
		sess.Close()
		return nil, err
	}
	if cfg.CreateSchema {
		for _, st := range SchemaStatements(cfg) {
			if err := openRetry(ctx, func() error { return sess.Query(st).ExecContext(ctx) }); err != nil {
				if !Permanent(err) {
					return fail(unanswered("create schema", err))
				}
				return fail(fmt.Errorf("sink cassandra: create schema: %w", err))
			}
		}
	}
	// Preparing the probe checks the table exists with our columns, its
	// round trip shows whether the codec was negotiated, and reading at the
	// rows' and the state's consistency whether the live replicas can meet
	// them (consistency.go).
	probe := fmt.Sprintf("SELECT cell, f FROM %s.%s WHERE product = ? AND minute = ? AND region = ? LIMIT 1", cfg.Keyspace, cfg.Table)
	if err := s.probeConsistency(ctx, probe); err != nil {
		return fail(err)
	}
	s.codec = "none"
	if comp != nil {
		if comp.compressed.Load() > 0 {
			s.codec = comp.Name()
		} else {
			s.logf("sink cassandra: WARNING: the server does not support compression=%s: frames are sent UNCOMPRESSED (set compression=lz4 or none to silence this)", cfg.Compression)
		}
	}
	// The lease before anything is written: a second run writes nothing,
	// not even the definition record.
	if cfg.Lease {
		if s.lease, err = acquireLease(ctx, s); err != nil {
			return fail(err)
		}
	}
	if err := s.openState(ctx); err != nil {
		return fail(err)
	}
	s.logf("sink cassandra: open: %s; compression negotiated: %s", cfg, s.codec)

	s.q, err = sink.NewQueue(cfg.Queue, sink.QueueHandler[row, partKey]{
		Send:      s.send,
		Key:       func(r row) partKey { return r.key },
		Permanent: Permanent,
		Logf:      s.logf,
	})
	if err != nil {
		return fail(err)
	}
	if err := s.register(opt.Registerer); err != nil {
		s.q.Close()
		return fail(err)
	}
	return s, nil
}

// connect builds the gocql session.
func connect(ctx context.Context, cfg Config) (*gocql.Session, *countingCompressor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	cl := gocql.NewCluster(cfg.Hosts...)
	cl.Port = cfg.Port
	cl.Consistency = gocql.ParseConsistency(cfg.Consistency)
	// Token-aware routing sends each batch (all rows of one partition) to a
	// replica of that partition, saving the coordinator's extra hop.
	// ShuffleReplicas spreads a partition's writes over its replicas rather
	// than always hitting the first: our partitions are hot for one minute
	// (a dense region's ~7 batches), and a fixed first replica would make
	// one node of three take every write of the hottest partitions.
	fallback := gocql.RoundRobinHostPolicy()
	if cfg.LocalDC != "" {
		fallback = gocql.DCAwareRoundRobinPolicy(cfg.LocalDC)
	}
	cl.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(fallback, gocql.ShuffleReplicas())
	// Retries are the queue's job (back-off with jitter, a per-attempt
	// timeout, a bound, counted in metrics). gocql's own policies retry
	// at once on the *next host* only (none with one node) and would
	// multiply the queue's bound; so the driver makes one attempt.
	cl.RetryPolicy = &gocql.SimpleRetryPolicy{NumRetries: 0}
	cl.Timeout = cfg.Queue.AttemptTimeout
	cl.WriteTimeout = cfg.Queue.AttemptTimeout
	cl.ConnectTimeout = cfg.ConnectTimeout
	cl.NumConns = cfg.NumConns
	cl.ReconnectInterval = cfg.ReconnectInterval
	var comp *countingCompressor
	if c := newCompressor(cfg.Compression); c != nil {
		comp = &countingCompressor{Compressor: c}
		cl.Compressor = comp
		if cfg.Compression == "snappy" {
			// Protocol v5 frames allow only lz4: pin v4 for snappy.
			cl.ProtoVersion = 4
		}
	}
	if cfg.Username != "" {
		cl.Authenticator = gocql.PasswordAuthenticator{Username: cfg.Username, Password: cfg.Password}
	}
	tc, err := cfg.TLSConfig()
	if err != nil {
		return nil, nil, err
	}
	if tc != nil {
		cl.SslOpts = &gocql.SslOptions{Config: tc, EnableHostVerification: !tc.InsecureSkipVerify}
	}
	type result struct {
		s   *gocql.Session
		err error
	}
	// CreateSession takes no context: honour ctx by abandoning (and
	// closing) a session that comes too late.
	done := make(chan result, 1)
	go func() {
		s, err := cl.CreateSession()
		done <- result{s, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, nil, fmt.Errorf("sink cassandra: connect to %v: %w", cfg.Hosts, r.err)
		}
		return r.s, comp, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.s != nil {
				r.s.Close()
			}
		}()
		return nil, nil, ctx.Err()
	}
}

// Codec is the frame compression the server negotiated: "snappy", "lz4"
// or "none" (also when the requested codec was refused).
func (s *Sink) Codec() string { return s.codec }

// Session is the sink's gocql session (for a Reader over the same
// connections).
func (s *Sink) Session() *gocql.Session { return s.sess }

// Config is the sink's configuration (credentials included: never log it
// with %#v; String redacts them).
func (s *Sink) Config() Config { return s.cfg }

// Write encodes b's rows (encode.AppendRowValue) and queues them, blocking
// while the queue is full.
func (s *Sink) Write(ctx context.Context, b *encode.Batch) error {
	n := b.Len()
	if n == 0 {
		return nil
	}
	if s.nf > 0 && b.NumFeatures != s.nf {
		return fmt.Errorf("sink cassandra: batch rows have %d features, the definition %q has %d (set Config.Definition from the engine's)", b.NumFeatures, s.cfg.Definition, s.nf)
	}
	if err := s.lease.check(); err != nil {
		return fmt.Errorf("sink cassandra: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur.minute != b.Minute {
		s.cur.reset(b.Minute, s.now())
	}
	// Values are encoded into a reused buffer, then copied into one arena
	// of exactly their size per Write (rows stay queued after Write
	// returns): a copy allocates without zeroing, where an arena sized for
	// the worst case (2 bytes a feature) held ~40% slack, zeroed.
	enc := s.enc[:0]
	ends := s.ends[:0]
	for i := range n {
		enc = encode.AppendRowValue(enc, b.Row(i))
		ends = append(ends, len(enc))
	}
	arena := bytes.Clone(enc)
	s.enc, s.ends = enc, ends
	items := s.items[:0]
	res := s.cfg.RegionResolution
	start := 0
	for i := range n {
		cell := b.Cells[i]
		u, reg := b.UUID(i), int64(region(cell, res))
		s.cur.add(u, reg)
		end := ends[i]
		items = append(items, row{
			key:  partKey{product: u, minute: b.Minute, region: reg},
			cell: int64(cell),
			f:    arena[start:end:end],
		})
		start = end
	}
	err := s.q.Enqueue(ctx, items...)
	clear(items) // the queue has copies; let the arena go with them
	s.items = items[:0]
	if err != nil {
		return fmt.Errorf("sink cassandra: %w", err)
	}
	return nil
}

// CloseMinute returns once every row written so far is acknowledged by the
// server, then writes the minute's minutes row and the state staged for
// it (state.go), in that order; or returns the error that dropped some.
func (s *Sink) CloseMinute(ctx context.Context, m int64) error {
	if err := s.q.Flush(ctx); err != nil {
		return fmt.Errorf("sink cassandra: minute %s: %w", encode.MinuteStart(m).Format(time.RFC3339), err)
	}
	// Nothing is committed (minutes row, checkpoint) without the lease.
	if err := s.lease.check(); err != nil {
		return fmt.Errorf("sink cassandra: minute %s: %w", encode.MinuteStart(m).Format(time.RFC3339), err)
	}
	if err := s.commitMinute(ctx, m); err != nil {
		return fmt.Errorf("sink cassandra: minute %s: %w", encode.MinuteStart(m).Format(time.RFC3339), err)
	}
	s.minutes.Add(1)
	return nil
}

// sessionCloseTimeout bounds Session.Close: gocql v2.1.2 can block in it
// for good after connections were dropped under it (its ring refresher
// stuck in a refresh that stop waits for; seen once in CI, 9 minutes, in
// TestFaults/down). Everything this sink wrote is acknowledged by then.
const sessionCloseTimeout = 10 * time.Second

// closeSession closes sess, giving up after sessionCloseTimeout (the
// closing goroutine is then left behind, and said so).
func closeSession(sess *gocql.Session, logf func(string, ...any)) {
	done := make(chan struct{})
	go func() {
		sess.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(sessionCloseTimeout):
		logf("sink cassandra: the driver's session did not close within %s (a gocql hang after dropped connections); going on without it: every row was acknowledged before", sessionCloseTimeout)
	}
}

// Close drains the queue (up to Queue.DrainTimeout), gives the writer
// lease back, closes the session and unregisters the metrics. It returns
// the queue's error, or the lease's if it was lost.
func (s *Sink) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	err := s.q.Close()
	leaseErr := s.lease.close()
	closeSession(s.sess, s.logf)
	s.unregister()
	if err == nil {
		err = leaseErr
	}
	if err != nil {
		return fmt.Errorf("sink cassandra: %w", err)
	}
	return nil
}

// Stats reports rows acknowledged, minutes closed and frame bytes
// written after compression.
func (s *Sink) Stats() sink.Stats {
	st := sink.Stats{Rows: s.q.Stats().SentItems, Minutes: s.minutes.Load()}
	if s.comp != nil {
		st.Bytes = s.comp.bytesOut.Load()
	}
	return st
}

// QueueStats are the write queue's counters.
func (s *Sink) QueueStats() sink.QueueStats { return s.q.Stats() }

// send writes one partition's rows: one INSERT for a single row, else an
// unlogged batch. Entries are idempotent BatchEntry values (Batch.Query
// marks them non-idempotent) bound to values encoded once per batch
// (bind.go); a batch is routed by its first entry's partition key, which
// is every entry's.
func (s *Sink) send(ctx context.Context, rows []row) error {
	sc, _ := s.scratch.Get().(*bindScratch)
	if sc == nil {
		sc = new(bindScratch)
	}
	defer func() {
		// gocql holds nothing of sc once Exec returned: it executes on
		// this goroutine (no speculative execution) and copies the values
		// into its frame before writing it.
		sc.release()
		s.scratch.Put(sc)
	}()
	sc.bind(s.insert, rows)
	var err error
	if len(rows) == 1 {
		err = s.sess.Query(s.insert, sc.args...).Idempotent(true).ExecContext(ctx)
	} else {
		// The keyspace is what routes a batch to all of its partition's
		// replicas: gocql's token-aware policy looks the replicas up by
		// the batch's Keyspace() (policies.go, tokenAwareHostPolicy.Pick),
		// which a batch takes from the session's keyspace (none here: the
		// sink may create it), not from its statements as a query does.
		// Without it every batch went to the partition's primary replica
		// only (ShuffleReplicas shuffled one host; issue 22 C8). v5 also
		// sends it in the frame.
		b := s.sess.Batch(gocql.UnloggedBatch).SetKeyspace(s.cfg.Keyspace)
		b.Entries = sc.entries
		err = b.ExecContext(ctx)
	}
	if err != nil {
		return s.explainUnavailable(err)
	}
	return nil
}

// openRetryFor bounds the retries of Open's statements (schema, probe): a
// coordinator that is overloaded or timing out for a few seconds (a node
// restarting, a schema agreement under way) does not fail the run, while a
// cluster that stays down fails it within seconds, not after the write
// path's minutes of backoff.
var openRetryFor = 10 * time.Second

// unanswered is Open's error for a statement still failing transiently
// when openRetry gives up: the cluster is the problem, not the schema.
func unanswered(what string, err error) error {
	return fmt.Errorf("sink cassandra: %s: the cluster did not answer within %v of retries: %w (overloaded, or nodes down: check the cluster's health)", what, openRetryFor, err)
}

// openRetry runs fn until it succeeds, fails with an error Permanent
// calls permanent or with UNAVAILABLE (probeConsistency says why), or
// openRetryFor has passed, backing off 100 ms, 200 ms, ... up to 2 s.
func openRetry(ctx context.Context, fn func() error) error {
	deadline := time.Now().Add(openRetryFor)
	wait := 100 * time.Millisecond
	for {
		err := fn()
		if err == nil || Permanent(err) || asUnavailable(err) != nil || time.Now().Add(wait).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// Permanent reports errors a retry cannot fix: the server refused the
// statement itself (syntax, an unknown table, a type mismatch,
// credentials, permissions). Everything else (timeouts, overload,
// unavailable replicas, lost connections) is retried by the queue.
func Permanent(err error) bool {
	var re gocql.RequestError
	if errors.As(err, &re) {
		switch re.Code() {
		case gocql.ErrCodeSyntax, gocql.ErrCodeInvalid, gocql.ErrCodeUnauthorized,
			gocql.ErrCodeCredentials, gocql.ErrCodeConfig, gocql.ErrCodeAlreadyExists, gocql.ErrCodeProtocol:
			return true
		}
		return false
	}
	var me gocql.MarshalError
	return errors.As(err, &me)
}

var _ sink.Writer = (*Sink)(nil)
